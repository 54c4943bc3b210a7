//! How many tokens to draft next, from what speculation has cost and gained so far.
//!
//! With a per-token acceptance rate `a`, a draft of k tokens yields on average
//! `E(k) = (1 - a^(k+1)) / (1 - a)` tokens per target step (the accepted drafts plus
//! the target's own token; Leviathan et al. 2023). It costs k draft steps plus a verify
//! batch of k+1 tokens, which on a laptop costs one decode step plus a little per extra
//! token. The tuner measures all three as it goes and picks the k with the most tokens
//! per millisecond; k = 0 is plain decoding. When no draft pays, it decodes plainly
//! and tries a short draft now and then, so a text that turns repetitive is noticed.

use super::DraftLimits;

/// How fast old observations fade (per cycle).
const DECAY: f64 = 0.9;
/// While drafting does not pay, a probe after this many plain steps; the wait doubles
/// after each probe that did not pay, up to [`PROBE_EVERY_MAX`].
const PROBE_EVERY: u32 = 16;
const PROBE_EVERY_MAX: u32 = 256;
/// The draft length of a probe.
const PROBE_LEN: usize = 2;

/// What one speculation cycle cost and gained.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Cycle {
    pub drafted: usize,
    pub accepted: usize,
    /// Time spent drafting (zero for lookup).
    pub draft_ms: f64,
    /// Time of the target's decode of the drafted tokens plus one.
    pub verify_ms: f64,
}

#[derive(Debug, Clone)]
pub struct DraftTuner {
    limits: DraftLimits,
    /// Decayed counts of accepted and verified draft positions, with a prior.
    hits: f64,
    trials: f64,
    /// Milliseconds per drafted token.
    draft_ms: Option<f64>,
    /// Milliseconds of a one-token target step.
    step_ms: Option<f64>,
    /// Extra milliseconds per additional token in a verify batch.
    extra_ms: Option<f64>,
    plain_cycles: u32,
    probe_every: u32,
}

impl DraftTuner {
    /// A tuner that expects acceptance `prior` until it has seen some.
    pub fn new(limits: DraftLimits, prior: f64) -> DraftTuner {
        DraftTuner {
            limits,
            hits: prior * 4.0,
            trials: 4.0,
            draft_ms: None,
            step_ms: None,
            extra_ms: None,
            plain_cycles: 0,
            probe_every: PROBE_EVERY,
        }
    }

    pub fn limits(&self) -> DraftLimits {
        self.limits
    }

    /// The estimated probability that the next drafted token is accepted.
    pub fn acceptance(&self) -> f64 {
        (self.hits / self.trials).clamp(0.0, 0.999)
    }

    /// Expected tokens per target step for a draft of `k`.
    pub fn expected_tokens(a: f64, k: usize) -> f64 {
        (0..=k).map(|i| a.powi(i as i32)).sum()
    }

    /// Tokens per millisecond of a draft of `k` under the current estimates (`None`
    /// until a plain step was timed).
    pub fn speed(&self, k: usize) -> Option<f64> {
        let step = self.step_ms?;
        let extra = self.extra_ms.unwrap_or(0.05 * step);
        let draft = self.draft_ms.unwrap_or(0.5 * step);
        let cost = step + k as f64 * (draft + extra);
        Some(Self::expected_tokens(self.acceptance(), k) / cost)
    }

    /// The draft length for the next cycle (0: a plain step).
    pub fn next_len(&mut self) -> usize {
        if self.step_ms.is_none() || self.limits.max == 0 {
            return 0;
        }
        let best = (0..=self.limits.max)
            .filter(|&k| k == 0 || k >= self.limits.min)
            .max_by(|&a, &b| {
                let (sa, sb) = (self.speed(a).unwrap_or(0.0), self.speed(b).unwrap_or(0.0));
                sa.total_cmp(&sb).then(b.cmp(&a))
            })
            .unwrap_or(0);
        if best > 0 {
            self.plain_cycles = 0;
            self.probe_every = PROBE_EVERY;
            return best;
        }
        self.plain_cycles += 1;
        if self.plain_cycles >= self.probe_every {
            self.plain_cycles = 0;
            self.probe_every = (self.probe_every * 2).min(PROBE_EVERY_MAX);
            return PROBE_LEN.max(self.limits.min).min(self.limits.max);
        }
        0
    }

    /// Records a cycle. A cycle with nothing drafted times a plain step.
    pub fn record(&mut self, c: Cycle) {
        let ema = |old: Option<f64>, new: f64| Some(old.map_or(new, |o| 0.8 * o + 0.2 * new));
        if c.drafted == 0 {
            self.step_ms = ema(self.step_ms, c.verify_ms);
            return;
        }
        let accepted = c.accepted.min(c.drafted);
        // Positions verified until the first rejection.
        let trials = accepted + usize::from(accepted < c.drafted);
        self.hits = self.hits * DECAY + accepted as f64;
        self.trials = self.trials * DECAY + trials as f64;
        self.draft_ms = ema(self.draft_ms, c.draft_ms / c.drafted as f64);
        match self.step_ms {
            Some(step) => {
                let extra = ((c.verify_ms - step) / c.drafted as f64).max(0.0);
                self.extra_ms = ema(self.extra_ms, extra);
            }
            None => self.step_ms = Some(c.verify_ms),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(max: usize) -> DraftLimits {
        DraftLimits {
            max,
            min: 1,
            p_min: 0.0,
        }
    }

    #[test]
    fn expected_tokens_follow_the_geometric_sum() {
        assert_eq!(DraftTuner::expected_tokens(0.5, 0), 1.0);
        assert!((DraftTuner::expected_tokens(0.5, 3) - 1.875).abs() < 1e-12);
        let a: f64 = 0.9;
        let closed = (1.0 - a.powi(5)) / (1.0 - a);
        assert!((DraftTuner::expected_tokens(a, 4) - closed).abs() < 1e-12);
    }

    #[test]
    fn first_step_is_plain_then_a_cheap_accurate_draft_runs_long() {
        let mut t = DraftTuner::new(limits(16), 0.8);
        assert_eq!(t.next_len(), 0);
        t.record(Cycle {
            drafted: 0,
            accepted: 0,
            draft_ms: 0.0,
            verify_ms: 20.0,
        });
        for _ in 0..20 {
            let k = t.next_len();
            assert!(k > 0);
            // Cheap drafts (1 ms), cheap verify (0.5 ms per extra token), all accepted.
            t.record(Cycle {
                drafted: k,
                accepted: k,
                draft_ms: k as f64,
                verify_ms: 20.0 + 0.5 * k as f64,
            });
        }
        assert!(t.acceptance() > 0.95);
        assert!(t.next_len() >= 8, "{}", t.next_len());
    }

    #[test]
    fn a_draft_that_does_not_pay_is_dropped_and_probed_now_and_then() {
        let mut t = DraftTuner::new(limits(8), 0.9);
        t.record(Cycle {
            drafted: 0,
            accepted: 0,
            draft_ms: 0.0,
            verify_ms: 10.0,
        });
        // A draft as slow as the target, and half its tokens rejected.
        for _ in 0..30 {
            let k = t.next_len().max(1);
            t.record(Cycle {
                drafted: k,
                accepted: k / 3,
                draft_ms: 10.0 * k as f64,
                verify_ms: 10.0 + 2.0 * k as f64,
            });
        }
        assert_eq!(t.next_len(), 0);
        // Probes come ever more rarely: each wait doubles, up to a bound.
        let mut at = Vec::new();
        for i in 0..2000 {
            let k = t.next_len();
            if k > 0 {
                at.push(i);
                assert_eq!(k, PROBE_LEN);
            }
        }
        assert!(at.len() >= 3, "{at:?}");
        assert_eq!(at[2] - at[1], 2 * (at[1] - at[0]), "{at:?}");
        let last = at[at.len() - 1] - at[at.len() - 2];
        assert_eq!(last as u32, PROBE_EVERY_MAX, "{at:?}");
    }

    #[test]
    fn limits_bound_the_length() {
        let mut t = DraftTuner::new(
            DraftLimits {
                max: 3,
                min: 2,
                p_min: 0.0,
            },
            0.99,
        );
        t.record(Cycle {
            drafted: 0,
            accepted: 0,
            draft_ms: 0.0,
            verify_ms: 10.0,
        });
        let k = t.next_len();
        assert!((2..=3).contains(&k), "{k}");
        let mut off = DraftTuner::new(
            DraftLimits {
                max: 0,
                min: 0,
                p_min: 0.0,
            },
            0.99,
        );
        off.record(Cycle {
            drafted: 0,
            accepted: 0,
            draft_ms: 0.0,
            verify_ms: 10.0,
        });
        assert_eq!(off.next_len(), 0);
    }
}

/// Draft lengths a [`LengthBandit`] tries.
const BANDIT_ARMS: [usize; 7] = [0, 1, 2, 4, 6, 8, 16];
/// Times each length is tried before the best is exploited.
const BANDIT_WARMUP: u32 = 2;
/// After this many steps a length next to the best is tried again; the wait doubles
/// each time that length proves no better, up to [`BANDIT_EXPLORE_MAX`] (a probe after
/// plain steps makes a draft model catch up on every token it missed).
const BANDIT_EXPLORE_EVERY: u32 = 16;
const BANDIT_EXPLORE_MAX: u32 = 1024;

/// The draft length for continuous batching, where sequences share each decode step:
/// whether drafting pays depends on how many sequences run and how wide the batch
/// already is, which a per-sequence cost model does not see. So the run measures it:
/// each length's generated tokens per millisecond of whole steps, tried in turn and
/// then exploited, with a neighbour of the best retried now and then as the mix of
/// jobs changes.
#[derive(Debug, Clone)]
pub struct LengthBandit {
    arms: Vec<usize>,
    rate: Vec<Option<f64>>,
    tries: Vec<u32>,
    steps: u32,
    flip: bool,
    explore_every: u32,
    /// The arm being explored, whose next record decides the next wait.
    exploring: Option<usize>,
}

impl LengthBandit {
    pub fn new(limits: DraftLimits) -> LengthBandit {
        let mut arms: Vec<usize> = BANDIT_ARMS
            .iter()
            .copied()
            .filter(|&k| k == 0 || (k >= limits.min && k <= limits.max))
            .collect();
        if limits.max > 0 && !arms.contains(&limits.max) {
            arms.push(limits.max);
        }
        LengthBandit {
            rate: vec![None; arms.len()],
            tries: vec![0; arms.len()],
            arms,
            steps: 0,
            flip: false,
            explore_every: BANDIT_EXPLORE_EVERY,
            exploring: None,
        }
    }

    fn best(&self) -> usize {
        (0..self.arms.len())
            .max_by(|&a, &b| {
                let (ra, rb) = (self.rate[a].unwrap_or(0.0), self.rate[b].unwrap_or(0.0));
                ra.total_cmp(&rb)
            })
            .unwrap_or(0)
    }

    /// The draft length for the next step.
    pub fn choose(&mut self) -> usize {
        self.steps += 1;
        if let Some(i) = (0..self.arms.len()).find(|&i| self.tries[i] < BANDIT_WARMUP) {
            return self.arms[i];
        }
        let best = self.best();
        if self.steps >= self.explore_every {
            self.steps = 0;
            self.flip = !self.flip;
            let mut next = if self.flip {
                (best + 1).min(self.arms.len() - 1)
            } else {
                best.saturating_sub(1)
            };
            if next == best {
                next = if best == 0 { 1 } else { best - 1 }.min(self.arms.len() - 1);
            }
            self.exploring = Some(next);
            return self.arms[next];
        }
        self.arms[best]
    }

    /// Records a step drafted at length `k` that generated `tokens` in `ms`.
    pub fn record(&mut self, k: usize, tokens: usize, ms: f64) {
        let Some(i) = self.arms.iter().position(|&a| a == k) else {
            return;
        };
        // A step too short to time still counts as a try, so warm-up always ends.
        self.tries[i] += 1;
        if ms > 0.0 {
            let r = tokens as f64 / ms;
            self.rate[i] = Some(self.rate[i].map_or(r, |old| 0.7 * old + 0.3 * r));
        }
        // Warm-up goes up in length; once a length is clearly slower than a shorter
        // one, longer ones are not tried (the rate has one peak).
        if self.tries[i] == BANDIT_WARMUP && self.tries[..i].iter().all(|&t| t >= BANDIT_WARMUP) {
            let before = self.rate[..i].iter().flatten().copied().fold(0.0, f64::max);
            if self.rate[i].unwrap_or(0.0) < 0.8 * before {
                for t in &mut self.tries[i + 1..] {
                    *t = (*t).max(BANDIT_WARMUP);
                }
            }
        }
        if self.exploring == Some(i) {
            self.exploring = None;
            self.explore_every = if self.best() == i {
                BANDIT_EXPLORE_EVERY
            } else {
                (self.explore_every * 2).min(BANDIT_EXPLORE_MAX)
            };
        }
    }
}

#[cfg(test)]
mod bandit_tests {
    use super::*;

    /// Tokens per ms of a made-up machine where drafting `k` gives `gain(k)`.
    fn run(gain: impl Fn(usize) -> f64, steps: usize) -> LengthBandit {
        let mut b = LengthBandit::new(DraftLimits::default());
        for _ in 0..steps {
            let k = b.choose();
            b.record(k, 10, 10.0 / gain(k));
        }
        b
    }

    #[test]
    fn it_settles_on_the_fastest_length() {
        // Drafting costs more than it gains: plain steps win.
        let mut b = run(|k| 1.0 - 0.05 * k as f64, 200);
        let picks: Vec<usize> = (0..32).map(|_| b.choose()).collect();
        assert!(picks.iter().filter(|&&k| k == 0).count() >= 30, "{picks:?}");
        // A peak at 4.
        let mut b = run(|k| 2.0 - (k as f64 - 4.0).abs() * 0.1, 200);
        let picks: Vec<usize> = (0..32).map(|_| b.choose()).collect();
        assert!(picks.iter().filter(|&&k| k == 4).count() >= 30, "{picks:?}");
    }

    #[test]
    fn warm_up_stops_climbing_once_longer_drafts_are_slower() {
        let mut b = LengthBandit::new(DraftLimits::default());
        let mut tried = Vec::new();
        for _ in 0..(2 * BANDIT_WARMUP as usize + 2) {
            let k = b.choose();
            tried.push(k);
            // Drafting halves the speed.
            b.record(k, 10, if k == 0 { 10.0 } else { 20.0 });
        }
        assert!(tried.iter().all(|&k| k <= 1), "{tried:?}");
    }

    #[test]
    fn exploring_a_worse_length_backs_off() {
        let mut b = run(|k| 1.0 - 0.05 * k as f64, 40);
        let mut explored = Vec::new();
        for step in 0..3000 {
            let k = b.choose();
            if k != 0 {
                explored.push(step);
            }
            b.record(k, 10, 10.0 / (1.0 - 0.05 * k as f64));
        }
        let gaps: Vec<usize> = explored.windows(2).map(|w| w[1] - w[0]).collect();
        assert!(gaps.windows(2).all(|g| g[1] >= g[0]), "{gaps:?}");
        assert_eq!(*gaps.last().unwrap() as u32, BANDIT_EXPLORE_MAX, "{gaps:?}");
    }

    #[test]
    fn arms_respect_the_limits() {
        let mut b = LengthBandit::new(DraftLimits {
            max: 5,
            min: 2,
            p_min: 0.0,
        });
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..100 {
            let k = b.choose();
            seen.insert(k);
            b.record(k, 1, 1.0);
        }
        assert_eq!(seen.into_iter().collect::<Vec<_>>(), vec![0, 2, 4, 5]);
    }
}
