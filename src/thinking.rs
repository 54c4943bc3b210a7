//! Splits a model's streamed output into reasoning (`<think>…</think>`) and answer.
//!
//! Works on text, not token ids, so it also handles models whose think markers are
//! several tokens. A marker split across two chunks is held back until it is known
//! whether it completes. Templates that open `<think>` in the generation prompt
//! (Qwen3 Thinking-2507) start the parser inside the reasoning block.

pub const THINK_OPEN: &str = "<think>";
pub const THINK_CLOSE: &str = "</think>";

/// One piece of parsed output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    Reasoning(String),
    Answer(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Nothing but whitespace seen yet: a `<think>` here opens reasoning.
    Start,
    Reasoning,
    Answer,
}

#[derive(Debug, Clone)]
pub struct ThinkParser {
    state: State,
    pending: String,
    /// Leading newlines after a marker are layout, not content.
    trim_next: bool,
}

impl ThinkParser {
    /// `starts_in_reasoning`: the prompt already opened `<think>`.
    pub fn new(starts_in_reasoning: bool) -> Self {
        Self {
            state: if starts_in_reasoning {
                State::Reasoning
            } else {
                State::Start
            },
            pending: String::new(),
            trim_next: starts_in_reasoning,
        }
    }

    pub fn in_reasoning(&self) -> bool {
        self.state == State::Reasoning
    }

    /// Feeds a chunk of decoded text; returns the segments that are now certain.
    pub fn push(&mut self, chunk: &str) -> Vec<Segment> {
        self.pending.push_str(chunk);
        let mut out = Vec::new();
        loop {
            match self.state {
                State::Start => {
                    let trimmed = self.pending.trim_start();
                    if trimmed.is_empty() {
                        return out;
                    }
                    if let Some(rest) = trimmed.strip_prefix(THINK_OPEN) {
                        self.pending = rest.to_string();
                        self.state = State::Reasoning;
                        self.trim_next = true;
                        continue;
                    }
                    if THINK_OPEN.starts_with(trimmed) {
                        return out; // could still become "<think>"
                    }
                    self.state = State::Answer;
                    self.pending = trimmed.to_string();
                }
                State::Reasoning => {
                    if !self.take_layout_newlines() {
                        return out;
                    }
                    if let Some(pos) = self.pending.find(THINK_CLOSE) {
                        let text = self.pending[..pos].trim_end_matches('\n').to_string();
                        emit(&mut out, Segment::Reasoning(text));
                        self.pending = self.pending[pos + THINK_CLOSE.len()..].to_string();
                        self.state = State::Answer;
                        self.trim_next = true;
                        continue;
                    }
                    let keep = partial_suffix(&self.pending, THINK_CLOSE);
                    // Trailing newlines may precede </think>; hold them back too.
                    let body = &self.pending[..self.pending.len() - keep];
                    let body_trimmed = body.trim_end_matches('\n');
                    let ready = body_trimmed.len();
                    emit(
                        &mut out,
                        Segment::Reasoning(self.pending[..ready].to_string()),
                    );
                    self.pending = self.pending[ready..].to_string();
                    return out;
                }
                State::Answer => {
                    if !self.take_layout_newlines() {
                        return out;
                    }
                    emit(&mut out, Segment::Answer(std::mem::take(&mut self.pending)));
                    return out;
                }
            }
        }
    }

    /// Drops the newlines that follow a marker. False when only newlines are pending
    /// (more text is needed to know where the content starts).
    fn take_layout_newlines(&mut self) -> bool {
        if !self.trim_next {
            return true;
        }
        let content = self.pending.trim_start_matches('\n');
        if content.is_empty() {
            self.pending.clear();
            return false;
        }
        self.pending = content.to_string();
        self.trim_next = false;
        true
    }

    /// Flushes whatever is held back at the end of generation.
    pub fn finish(&mut self) -> Vec<Segment> {
        let rest = std::mem::take(&mut self.pending);
        let mut out = Vec::new();
        match self.state {
            State::Reasoning => emit(&mut out, Segment::Reasoning(rest)),
            State::Start | State::Answer => emit(&mut out, Segment::Answer(rest)),
        }
        out
    }
}

fn emit(out: &mut Vec<Segment>, seg: Segment) {
    let empty = match &seg {
        Segment::Reasoning(s) | Segment::Answer(s) => s.is_empty(),
    };
    if !empty {
        out.push(seg);
    }
}

/// Length of the longest suffix of `text` that is a proper prefix of `marker`.
pub fn partial_suffix(text: &str, marker: &str) -> usize {
    (1..marker.len())
        .rev()
        .find(|&n| {
            text.len() >= n
                && text.is_char_boundary(text.len() - n)
                && marker.starts_with(&text[text.len() - n..])
        })
        .unwrap_or(0)
}

/// Collects a whole output into (reasoning, answer).
pub fn split_all(text: &str, starts_in_reasoning: bool) -> (String, String) {
    let mut p = ThinkParser::new(starts_in_reasoning);
    let mut segs = p.push(text);
    segs.extend(p.finish());
    join(segs)
}

pub fn join(segs: Vec<Segment>) -> (String, String) {
    let (mut r, mut a) = (String::new(), String::new());
    for s in segs {
        match s {
            Segment::Reasoning(t) => r.push_str(&t),
            Segment::Answer(t) => a.push_str(&t),
        }
    }
    (r, a)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunked(text: &str, starts: bool, size: usize) -> (String, String) {
        let mut p = ThinkParser::new(starts);
        let mut segs = Vec::new();
        let chars: Vec<char> = text.chars().collect();
        for c in chars.chunks(size) {
            segs.extend(p.push(&c.iter().collect::<String>()));
        }
        segs.extend(p.finish());
        join(segs)
    }

    #[test]
    fn splits_reasoning_and_answer_at_any_chunking() {
        let text = "<think>\nLet me see.\nParis is it.\n</think>\n\nParis.";
        for size in 1..12 {
            let (r, a) = chunked(text, false, size);
            assert_eq!(r, "Let me see.\nParis is it.", "chunk {size}");
            assert_eq!(a, "Paris.", "chunk {size}");
        }
    }

    #[test]
    fn prompt_opened_think() {
        let (r, a) = chunked("hmm\n</think>\n\nyes", true, 3);
        assert_eq!((r.as_str(), a.as_str()), ("hmm", "yes"));
    }

    #[test]
    fn no_think_is_all_answer() {
        assert_eq!(
            split_all("Hello <think> there", false),
            (String::new(), "Hello <think> there".into())
        );
        assert_eq!(split_all("<thin", false), (String::new(), "<thin".into()));
    }

    #[test]
    fn empty_think_block_from_no_think_mode() {
        assert_eq!(
            split_all("<think>\n\n</think>\n\nHi", false),
            (String::new(), "Hi".into())
        );
    }

    #[test]
    fn unterminated_reasoning_is_flushed() {
        assert_eq!(
            split_all("<think>\nstill thinking", false),
            ("still thinking".into(), String::new())
        );
    }
}
