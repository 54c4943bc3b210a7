//! Tool calling: which call format a model's template speaks (detected from the
//! template, never from the model's name), and parsing the model's output into OpenAI
//! `tool_calls`, whole or as it streams. Pure logic.
//!
//! Formats: Hermes JSON in `<tool_call>` tags (Qwen 3, 2507), Qwen3-Coder's XML
//! parameters, and Llama's pythonic `[f(a=1)]` (Llama 4, also in
//! `<|python_start|>…<|python_end|>`) or JSON `{"name", "parameters"}` (Llama 3,
//! Llama 4's JSON variant). Output that does not parse as a call stays content.

pub mod grammar;
mod parse;
mod pythonic;
mod spec;

pub use parse::{parse_calls, CallEvent, CallParser, ParsedCalls, ToolCall};
pub use spec::{find_tool, hermes_preamble, ToolFormat, ToolSpec};

/// One piece of a reply, as the client sees it.
#[derive(Debug, Clone, PartialEq)]
pub enum ReplyEvent {
    Reasoning(String),
    Content(String),
    Call(ToolCall),
}

/// A whole reply, split.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Reply {
    pub reasoning: String,
    pub content: String,
    pub calls: Vec<ToolCall>,
}

/// Splits a model's output, as it streams, into reasoning (`<think>…</think>`, never
/// parsed for calls), content, and tool calls when tools were offered.
pub struct ReplyParser {
    think: Option<crate::thinking::ThinkParser>,
    calls: Option<CallParser>,
}

impl ReplyParser {
    /// `think`: the model may think (and the prompt may already have opened `<think>`);
    /// `tools`: the format and tools when the request offered any.
    pub fn new(think: Option<bool>, tools: Option<(ToolFormat, &[ToolSpec])>) -> ReplyParser {
        ReplyParser {
            think: think.map(crate::thinking::ThinkParser::new),
            calls: tools.map(|(f, t)| CallParser::new(f, t)),
        }
    }

    fn answer(&mut self, text: String, out: &mut Vec<ReplyEvent>) {
        match &mut self.calls {
            Some(p) => out.extend(p.push(&text).into_iter().map(ReplyEvent::from)),
            None if text.is_empty() => {}
            None => out.push(ReplyEvent::Content(text)),
        }
    }

    fn segments(&mut self, segs: Vec<crate::thinking::Segment>, out: &mut Vec<ReplyEvent>) {
        for s in segs {
            match s {
                crate::thinking::Segment::Reasoning(r) => out.push(ReplyEvent::Reasoning(r)),
                crate::thinking::Segment::Answer(a) => self.answer(a, out),
            }
        }
    }

    pub fn push(&mut self, text: &str) -> Vec<ReplyEvent> {
        let mut out = Vec::new();
        match &mut self.think {
            Some(t) => {
                let segs = t.push(text);
                self.segments(segs, &mut out);
            }
            None => self.answer(text.to_string(), &mut out),
        }
        out
    }

    pub fn finish(&mut self) -> Vec<ReplyEvent> {
        let mut out = Vec::new();
        if let Some(t) = &mut self.think {
            let segs = t.finish();
            self.segments(segs, &mut out);
        }
        if let Some(p) = &mut self.calls {
            out.extend(p.finish().into_iter().map(ReplyEvent::from));
        }
        out
    }

    /// Parses a whole reply.
    pub fn parse_all(mut self, text: &str) -> Reply {
        let mut events = self.push(text);
        events.extend(self.finish());
        Reply::from_events(events)
    }
}

impl Reply {
    pub fn from_events(events: Vec<ReplyEvent>) -> Reply {
        let mut r = Reply::default();
        for e in events {
            match e {
                ReplyEvent::Reasoning(s) => r.reasoning.push_str(&s),
                ReplyEvent::Content(s) => r.content.push_str(&s),
                ReplyEvent::Call(c) => r.calls.push(c),
            }
        }
        r
    }
}

impl From<parse::CallEvent> for ReplyEvent {
    fn from(e: parse::CallEvent) -> Self {
        match e {
            parse::CallEvent::Content(c) => ReplyEvent::Content(c),
            parse::CallEvent::Call(c) => ReplyEvent::Call(c),
        }
    }
}
