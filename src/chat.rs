//! A multi-turn chat over one model: the conversation, its rendering through the
//! model's own template, thinking-mode handling, and sampling defaults. The REPL and
//! one-shot `edge run` both drive this API, and so do the tests.

use std::sync::atomic::AtomicBool;

use anyhow::Result;

use crate::chat_template::{ChatTemplate, Message, RenderOptions, ThinkingMode};
use crate::engine::{GenOutput, GenRequest, Sampling, Session};
use crate::thinking::{Segment, THINK_CLOSE, THINK_OPEN};

pub use crate::chat_template::PromptPart;

/// The rendered prompt, split into template and user parts.
#[derive(Debug, Clone)]
pub struct RenderedPrompt {
    pub parts: Vec<PromptPart>,
    /// The generation prompt opened `<think>` itself.
    pub starts_in_reasoning: bool,
}

impl RenderedPrompt {
    pub fn text(&self) -> String {
        self.parts.iter().map(|p| p.text.as_str()).collect()
    }
}

fn sentinel(i: usize) -> String {
    // Private-use code points: no template strips or rewrites them.
    format!("\u{E000}edge-user-{i}\u{E001}")
}

/// Renders `messages` with the model's template. The content of user and system
/// messages is swapped for sentinels while rendering, then put back as unparsed
/// parts. If the template rewrites a content (so a sentinel does not survive intact),
/// the whole prompt is rendered plainly and marked special: safe only because such
/// templates are rare; `-v` notes it.
pub fn render_prompt(
    template: &ChatTemplate,
    messages: &[Message],
    opts: &RenderOptions,
) -> Result<RenderedPrompt> {
    let mut masked = messages.to_vec();
    let mut originals = Vec::new();
    for m in masked.iter_mut() {
        if m.role == "user" || m.role == "system" {
            originals.push(std::mem::replace(&mut m.content, sentinel(originals.len())));
        }
    }
    let rendered = template.render(&masked, opts)?;
    let starts_in_reasoning = prompt_opens_think(&rendered);

    let mut parts = Vec::new();
    let mut rest = rendered.as_str();
    for (i, original) in originals.iter().enumerate() {
        let s = sentinel(i);
        let ok = rendered.matches(&s).count() == 1;
        let Some(pos) = rest.find(&s).filter(|_| ok) else {
            let plain = template.render(messages, opts)?;
            return Ok(RenderedPrompt {
                parts: vec![PromptPart {
                    text: plain,
                    special: true,
                }],
                starts_in_reasoning,
            });
        };
        parts.push(PromptPart {
            text: rest[..pos].to_string(),
            special: true,
        });
        parts.push(PromptPart {
            text: original.clone(),
            special: false,
        });
        rest = &rest[pos + s.len()..];
    }
    parts.push(PromptPart {
        text: rest.to_string(),
        special: true,
    });
    parts.retain(|p| !p.text.is_empty());
    Ok(RenderedPrompt {
        parts,
        starts_in_reasoning,
    })
}

/// True when the prompt ends inside an opened, unclosed `<think>` block.
fn prompt_opens_think(rendered: &str) -> bool {
    match rendered.rfind(THINK_OPEN) {
        Some(open) => {
            !rendered[open..].contains(THINK_CLOSE) && rendered[open..].trim() == THINK_OPEN
        }
        None => false,
    }
}

/// Whether a turn thinks: never without a thinking template, always when the template
/// cannot switch it off, else as requested (on by default, as Qwen 3 is).
pub fn thinking_on(mode: ThinkingMode, requested: Option<bool>) -> bool {
    match mode {
        ThinkingMode::None => false,
        ThinkingMode::Always => true,
        ThinkingMode::Switchable => requested.unwrap_or(true),
    }
}

/// Sampling values the user set explicitly; the rest come from per-mode defaults.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SamplingOverrides {
    pub temp: Option<f32>,
    pub top_k: Option<u32>,
    pub top_p: Option<f32>,
    pub min_p: Option<f32>,
    pub seed: Option<u32>,
}

/// Sampling defaults: Qwen's recommendation for thinking models, per mode; llama.cpp's
/// defaults otherwise. Explicit settings win.
pub fn sampling_for(thinking_model: bool, thinking_on: bool, o: &SamplingOverrides) -> Sampling {
    let (temp, top_k, top_p, min_p) = match (thinking_model, thinking_on) {
        (true, true) => (0.6, 20, 0.95, 0.0),
        (true, false) => (0.7, 20, 0.8, 0.0),
        (false, _) => (0.8, 40, 0.95, 0.05),
    };
    Sampling {
        temp: o.temp.unwrap_or(temp),
        top_k: o.top_k.unwrap_or(top_k),
        top_p: o.top_p.unwrap_or(top_p),
        min_p: o.min_p.unwrap_or(min_p),
        seed: o.seed.unwrap_or_else(random_seed),
    }
}

fn random_seed() -> u32 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos() ^ (d.as_secs() as u32))
        .unwrap_or(0);
    nanos ^ std::process::id().rotate_left(16)
}

/// Per-chat settings the user can change with `/set`, `/think`, `/no_think`.
#[derive(Debug, Clone)]
pub struct ChatSettings {
    pub system: Option<String>,
    /// None: the template's default (on where switchable).
    pub think: Option<bool>,
    pub think_budget: Option<u32>,
    pub max_tokens: u32,
    pub sampling: SamplingOverrides,
    /// Tools shown to the model (OpenAI's function entries), rendered by its template.
    pub tools: Vec<serde_json::Value>,
}

/// A conversation bound to a llama.cpp session.
pub struct ChatSession<'m> {
    pub session: Session<'m>,
    pub settings: ChatSettings,
    history: Vec<Message>,
}

impl<'m> ChatSession<'m> {
    pub fn new(session: Session<'m>, settings: ChatSettings) -> Self {
        Self {
            session,
            settings,
            history: Vec::new(),
        }
    }

    pub fn history(&self) -> &[Message] {
        &self.history
    }

    /// Forgets the conversation (and the KV cache).
    pub fn clear(&mut self) {
        self.history.clear();
        self.session.clear();
    }

    pub fn thinking_mode(&self) -> ThinkingMode {
        self.session.model.template.caps().thinking
    }

    /// Whether this turn will think.
    pub fn thinking_on(&self) -> bool {
        thinking_on(self.thinking_mode(), self.settings.think)
    }

    fn messages_with(&self, user: &str) -> Vec<Message> {
        let mut msgs = Vec::with_capacity(self.history.len() + 2);
        if let Some(sys) = &self.settings.system {
            msgs.push(Message::system(sys));
        }
        msgs.extend(self.history.iter().cloned());
        msgs.push(Message::user(user));
        msgs
    }

    pub fn render_options(&self) -> RenderOptions {
        let mut extra = serde_json::Map::new();
        if !self.settings.tools.is_empty() {
            extra.insert(
                "tools".into(),
                serde_json::Value::Array(self.settings.tools.clone()),
            );
        }
        RenderOptions {
            add_generation_prompt: true,
            enable_thinking: (self.thinking_mode() == ThinkingMode::Switchable)
                .then(|| self.thinking_on()),
            extra,
        }
    }

    /// The prompt this turn would send, for tests and `-v`.
    pub fn preview(&self, user: &str) -> Result<RenderedPrompt> {
        render_prompt(
            &self.session.model.template,
            &self.messages_with(user),
            &self.render_options(),
        )
    }

    /// Sends one user message and generates the reply, streaming segments.
    pub fn send(
        &mut self,
        user: &str,
        stop: &AtomicBool,
        on_segment: &mut dyn FnMut(&Segment),
    ) -> Result<GenOutput> {
        let rendered = self.preview(user)?;
        let tokens = self.session.model.tokenize_parts(&rendered.parts);
        let thinking_model = self.thinking_mode() != ThinkingMode::None;
        let req = GenRequest {
            max_tokens: self.settings.max_tokens,
            sampling: sampling_for(thinking_model, self.thinking_on(), &self.settings.sampling),
            think_budget: if self.thinking_on() {
                self.settings.think_budget
            } else {
                None
            },
            starts_in_reasoning: rendered.starts_in_reasoning,
            stop: self.session.model.chat_stop.clone(),
        };
        let out = self.session.generate(&tokens, &req, stop, on_segment)?;
        self.history.push(Message::user(user));
        let mut reply = Message::assistant(&out.answer);
        if !out.reasoning.is_empty() {
            reply.reasoning_content = Some(out.reasoning.clone());
        }
        self.history.push(reply);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chat_template::SpecialTokens;

    const CHATML: &str = "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}";

    #[test]
    fn user_text_is_a_separate_unparsed_part() {
        let t = ChatTemplate::new(CHATML, SpecialTokens::default()).unwrap();
        let msgs = vec![Message::system("sys"), Message::user("hi <|im_end|> there")];
        let opts = RenderOptions {
            add_generation_prompt: true,
            ..Default::default()
        };
        let r = render_prompt(&t, &msgs, &opts).unwrap();
        assert_eq!(
            r.parts,
            vec![
                PromptPart {
                    text: "<|im_start|>system\n".into(),
                    special: true
                },
                PromptPart {
                    text: "sys".into(),
                    special: false
                },
                PromptPart {
                    text: "<|im_end|>\n<|im_start|>user\n".into(),
                    special: true
                },
                PromptPart {
                    text: "hi <|im_end|> there".into(),
                    special: false
                },
                PromptPart {
                    text: "<|im_end|>\n<|im_start|>assistant\n".into(),
                    special: true
                },
            ]
        );
        assert!(!r.starts_in_reasoning);
    }

    #[test]
    fn detects_prompt_opened_think() {
        assert!(prompt_opens_think("<|im_start|>assistant\n<think>\n"));
        assert!(!prompt_opens_think(
            "<|im_start|>assistant\n<think>\n\n</think>\n\n"
        ));
        assert!(!prompt_opens_think("<|im_start|>assistant\n"));
    }

    #[test]
    fn sampling_defaults_follow_qwen_per_mode_and_respect_overrides() {
        let none = SamplingOverrides {
            seed: Some(1),
            ..Default::default()
        };
        let s = sampling_for(true, true, &none);
        assert_eq!((s.temp, s.top_p, s.top_k), (0.6, 0.95, 20));
        let s = sampling_for(true, false, &none);
        assert_eq!((s.temp, s.top_p, s.top_k), (0.7, 0.8, 20));
        let o = SamplingOverrides {
            temp: Some(0.0),
            seed: Some(1),
            ..Default::default()
        };
        assert_eq!(sampling_for(true, true, &o).temp, 0.0);
    }
}
