//! Lookup drafts: when the last few tokens occurred before (in the prompt or the output
//! so far), propose what followed them then. Text that copies from its input
//! (extraction, rewriting, code edits, repeated tool output) is drafted at no cost.
//!
//! An index maps every n-gram of [`NGRAM_MIN`]..=[`NGRAM_MAX`] tokens to the position
//! after its most recent occurrence; a draft tries the longest n-gram first. A draft
//! may run past the end of the history into its own tokens, so a repeating pattern
//! shorter than the draft still drafts whole.

use std::collections::HashMap;

pub const NGRAM_MIN: usize = 2;
pub const NGRAM_MAX: usize = 4;

/// Drafts from one token stream.
#[derive(Debug, Default, Clone)]
pub struct NgramLookup {
    tokens: Vec<i32>,
    /// (n-gram length, hash) → position right after its latest occurrence.
    index: HashMap<(usize, u64), usize>,
}

fn hash(gram: &[i32]) -> u64 {
    // FNV-1a over the ids: cheap and good enough, since a hit is verified against the
    // tokens themselves.
    gram.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &t| {
        (h ^ t as u32 as u64).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

impl NgramLookup {
    pub fn new() -> NgramLookup {
        NgramLookup::default()
    }

    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    pub fn tokens(&self) -> &[i32] {
        &self.tokens
    }

    /// Appends tokens to the stream.
    pub fn extend(&mut self, tokens: &[i32]) {
        for &t in tokens {
            let at = self.tokens.len();
            // The n-grams that end just before `t` now have a known continuation.
            for n in NGRAM_MIN..=NGRAM_MAX.min(at) {
                self.index.insert((n, hash(&self.tokens[at - n..at])), at);
            }
            self.tokens.push(t);
        }
    }

    /// Drops the stream after its first `len` tokens (a rewound conversation). The
    /// index is rebuilt, so this is for rare rewinds, not every step.
    pub fn truncate(&mut self, len: usize) {
        if len >= self.tokens.len() {
            return;
        }
        let kept: Vec<i32> = self.tokens[..len].to_vec();
        *self = NgramLookup::default();
        self.extend(&kept);
    }

    /// Makes the stream `tokens`, appending when it extends what is there.
    pub fn sync(&mut self, tokens: &[i32]) {
        let same = self
            .tokens
            .iter()
            .zip(tokens)
            .take_while(|(a, b)| a == b)
            .count();
        self.truncate(same);
        self.extend(&tokens[same..]);
    }

    /// Up to `max` tokens that followed the latest earlier occurrence of the stream's
    /// last n tokens (longest n first), continued with `next` appended to the stream
    /// (a token sampled but not yet added). Empty when there is no match.
    pub fn draft(&self, next: Option<i32>, max: usize) -> Vec<i32> {
        self.draft_with(&self.tokens, next, max)
    }

    /// The same over another stream's index: `tail` is the stream whose end is looked
    /// up (with `next` appended), this index supplies the continuations.
    pub fn draft_for(&self, tail: &[i32], next: Option<i32>, max: usize) -> Vec<i32> {
        self.draft_with(tail, next, max)
    }

    fn draft_with(&self, tail: &[i32], next: Option<i32>, max: usize) -> Vec<i32> {
        if max == 0 {
            return Vec::new();
        }
        let mut key: Vec<i32> = tail[tail.len().saturating_sub(NGRAM_MAX)..].to_vec();
        if let Some(t) = next {
            key.push(t);
            if key.len() > NGRAM_MAX {
                key.remove(0);
            }
        }
        for n in (NGRAM_MIN..=NGRAM_MAX.min(key.len())).rev() {
            let gram = &key[key.len() - n..];
            let Some(&at) = self.index.get(&(n, hash(gram))) else {
                continue;
            };
            if at < n || self.tokens[at - n..at] != *gram {
                continue;
            }
            // Copy what followed. Drafting from its own stream, the continuation past
            // the end is `next` and then the draft itself (a pattern that repeats with
            // a period shorter than the draft); another stream's index stops at its end.
            let own = std::ptr::eq(tail, self.tokens.as_slice());
            let own_end = self.tokens.len();
            let mut draft = Vec::with_capacity(max);
            let mut i = at;
            while draft.len() < max {
                let t = if i < own_end {
                    self.tokens[i]
                } else if own {
                    match (next, i - own_end) {
                        (Some(n), 0) => n,
                        (Some(_), j) => draft[j - 1],
                        (None, j) => draft[j],
                    }
                } else {
                    break;
                };
                draft.push(t);
                i += 1;
            }
            return draft;
        }
        Vec::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drafts_what_followed_the_latest_occurrence_longest_ngram_first() {
        let mut l = NgramLookup::new();
        // "1 2 3 4 5 | 9 2 3 7 | 1 2 3"
        l.extend(&[1, 2, 3, 4, 5, 9, 2, 3, 7, 1, 2, 3]);
        // The 3-gram "1 2 3" last occurred at the start: 4 5 9 follow.
        assert_eq!(l.draft(None, 3), vec![4, 5, 9]);
        // With a next token 8 appended, "3 8" never occurred: no draft.
        assert_eq!(l.draft(Some(8), 3), Vec::<i32>::new());
        // With next = 7: "2 3 7" occurred; what followed it was 1 2 3.
        assert_eq!(l.draft(Some(7), 5), vec![1, 2, 3, 7, 1]);
        assert!(l.draft(None, 0).is_empty());
    }

    #[test]
    fn a_repeating_pattern_drafts_past_the_end_of_the_stream() {
        let mut l = NgramLookup::new();
        l.extend(&[5, 6, 5, 6, 5]);
        // "6 5" occurred at 1..3, followed by 6 5 (the end), then the draft repeats.
        assert_eq!(l.draft(None, 6), vec![6, 5, 6, 5, 6, 5]);
        assert_eq!(l.draft(Some(6), 4), vec![5, 6, 5, 6]);
    }

    #[test]
    fn rewinding_forgets_the_dropped_tokens() {
        let mut l = NgramLookup::new();
        l.extend(&[1, 2, 3, 1, 2]);
        assert_eq!(l.draft(None, 1), vec![3]);
        l.sync(&[1, 2, 4, 1, 2]);
        assert_eq!(l.len(), 5);
        assert_eq!(l.draft(None, 1), vec![4]);
        l.sync(&[7, 8]);
        assert_eq!(l.tokens(), &[7, 8]);
        assert!(l.draft(None, 4).is_empty());
    }

    #[test]
    fn another_streams_index_supplies_continuations() {
        let mut shared = NgramLookup::new();
        shared.extend(&[10, 11, 12, 13, 14]);
        assert_eq!(shared.draft_for(&[1, 10, 11], None, 2), vec![12, 13]);
        // It stops at the index's end rather than inventing tokens.
        assert_eq!(shared.draft_for(&[12, 13], None, 4), vec![14]);
        assert!(shared.draft_for(&[1, 2], Some(3), 4).is_empty());
    }
}
