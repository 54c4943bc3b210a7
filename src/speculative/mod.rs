//! Speculative decoding's pure logic, apart from llama.cpp: whether a draft model's
//! vocabulary matches its target's ([`vocab`]), n-gram lookup drafts from the text so
//! far ([`lookup`]), how many tokens to draft from the measured cost and acceptance
//! ([`tuner`]), the rejection rule that keeps sampled output distributed as the target
//! ([`rejection`]), and the counters reported to users. The engine runs the draft and
//! verify steps (`engine::speculative`).

pub mod lookup;
pub mod rejection;
pub mod tuner;
pub mod vocab;

use serde::Serialize;

/// Where drafts come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DraftSource {
    /// A small model with the target's vocabulary, at this path.
    Model(std::path::PathBuf),
    /// Continuations of n-grams seen earlier in the prompt and the output.
    Lookup,
}

/// The user's limits on draft length. `max` caps a draft; a draft shorter than `min`
/// is not verified (its tokens cost a wider verify batch for little gain); a draft
/// model stops drafting where its own top probability falls below `p_min`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DraftLimits {
    pub max: usize,
    pub min: usize,
    pub p_min: f32,
}

/// Defaults measured with SmolLM2-135M F16/F32 + Q4_1 on 2 cores: the tuner rarely
/// wants more than 8 draft tokens there, and 16 leaves room for faster drafts (lookup,
/// a bigger target). The draft's argmax was accepted 94 % of the time even where its
/// top probability was below 0.1, so any confidence cutoff (0.02 to 0.3 tried) lost
/// speed there: `p_min` is 0 unless asked.
impl Default for DraftLimits {
    fn default() -> Self {
        DraftLimits {
            max: 16,
            min: 1,
            p_min: 0.0,
        }
    }
}

/// Speculation counters of one generation (or a sum of them).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct SpecStats {
    /// Tokens proposed and verified by the target.
    pub drafted: u64,
    /// Drafted tokens the target agreed with.
    pub accepted: u64,
    /// Target decode steps that produced output tokens (each yields its accepted drafts
    /// plus one token of its own).
    pub target_steps: u64,
}

impl SpecStats {
    /// Accepted share of drafted tokens (0 when nothing was drafted).
    pub fn acceptance(&self) -> f64 {
        if self.drafted == 0 {
            0.0
        } else {
            self.accepted as f64 / self.drafted as f64
        }
    }

    pub fn add(&mut self, other: &SpecStats) {
        self.drafted += other.drafted;
        self.accepted += other.accepted;
        self.target_steps += other.target_steps;
    }

    /// The counters under llama-server's `timings` names (`draft_n`,
    /// `draft_n_accepted`), plus the acceptance and the target's own steps: what batch
    /// records and server responses carry.
    pub fn timings_json(&self) -> serde_json::Value {
        serde_json::json!({
            "draft_n": self.drafted,
            "draft_n_accepted": self.accepted,
            "draft_acceptance": self.acceptance(),
            "target_steps": self.target_steps,
        })
    }

    /// "drafted 120, accepted 112 (93.3 %), 40 target steps".
    pub fn summary(&self) -> String {
        format!(
            "drafted {}, accepted {} ({:.1} %), {} target steps",
            self.drafted,
            self.accepted,
            100.0 * self.acceptance(),
            self.target_steps
        )
    }
}

#[cfg(test)]
mod tests {
    use super::SpecStats;

    #[test]
    fn acceptance_is_a_share_of_drafted_tokens() {
        let mut s = SpecStats::default();
        assert_eq!(s.acceptance(), 0.0);
        s.add(&SpecStats {
            drafted: 8,
            accepted: 6,
            target_steps: 3,
        });
        s.add(&SpecStats {
            drafted: 2,
            accepted: 2,
            target_steps: 1,
        });
        assert_eq!((s.drafted, s.accepted, s.target_steps), (10, 8, 4));
        assert!((s.acceptance() - 0.8).abs() < 1e-12);
        assert_eq!(
            s.summary(),
            "drafted 10, accepted 8 (80.0 %), 4 target steps"
        );
    }
}
