//! Quantize-to-fit: pick one type per tensor so the file fits a byte budget with the
//! least expected quality loss.
//!
//! Each tensor offers candidates `(type, bytes, loss)`. The loss of a candidate is the
//! tensor's expected output error at that type (edge measures it by quantizing a
//! sample of the tensor's rows, weighted by the imatrix when one is given) times the
//! sensitivity of the tensor's class ([`sensitivity`]). The fitter works on each
//! tensor's lower convex hull of (bytes, loss) and spends the budget greedily on the
//! upgrades with the best loss reduction per byte, which is optimal for the convex
//! relaxation and within one upgrade of the discrete optimum; a last pass spends what
//! is left on any upgrade that still fits.
//!
//! MoE routed experts need no special case: one expert tensor holds n/k times the
//! bytes that a token reads, so its loss reduction per byte is low and the fitter
//! gives it fewer bits, while the router, attention, shared experts and the output
//! head, read by every token, get more.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use crate::classify::TensorClass;

/// One type a tensor may take.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    /// ggml type id.
    pub type_id: u32,
    /// Bytes in the file, padding included.
    pub bytes: u64,
    /// Expected quality loss (arbitrary but consistent units; lower is better).
    pub loss: f64,
}

/// A tensor to place. A tensor that must keep its type has one candidate.
#[derive(Debug, Clone)]
pub struct Item {
    pub name: String,
    pub class: TensorClass,
    pub candidates: Vec<Candidate>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Solution {
    /// Per item, the index of the chosen candidate.
    pub choice: Vec<usize>,
    pub bytes: u64,
    pub loss: f64,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum FitError {
    #[error(
        "the budget of {budget} bytes is smaller than the smallest possible mix ({min} bytes)"
    )]
    TooSmall { budget: u64, min: u64 },
    #[error("tensor {0} has no candidate type")]
    NoCandidate(String),
}

/// How much a unit of relative output error (imatrix-weighted NMSE) in one tensor of
/// this class costs in final-output quality (mean KL divergence, arbitrary units).
///
/// Measured, not guessed: on SmolLM2-135M (F16, 30 layers) each class in turn was
/// quantized to Q4_0 with everything else F16, its mean KLD against the F16 measured
/// on Jane Austen's *Persuasion* (`scripts/bench-quant.sh calibrate`), and divided by
/// the sum of the class's measured NMSE; the numbers are those ratios scaled so that
/// `attn_q` is 0.6. Per unit of error, FFN up/gate and attention values cost 3–5x what
/// queries and keys do (whose error a softmax damps).
///
/// A per-layer class spreads its effect over `n_layers` tensors, while the output head
/// is one tensor whose error reaches the logits directly: its weight grows with the
/// depth (measured 4.9 x 30 on SmolLM2, where `token_embd` is also the output head).
/// `tied_output` is true for `token_embd` when the model has no `output.weight`; an
/// untied token embedding is read once per token at the bottom of the stack, like one
/// layer's tensor.
pub fn sensitivity(class: TensorClass, tied_output: bool, n_layers: u32) -> f64 {
    use TensorClass::*;
    let head = 5.0 * f64::from(n_layers.max(1));
    match class {
        TokenEmbd if tied_output => head,
        TokenEmbd => 0.6,
        Output => head,
        AttnV => 2.0,
        AttnOutput => 0.95,
        AttnQkv => 1.1,
        AttnQ | AttnK => 0.6,
        FfnDown | FfnDownExps | FfnDownShexp => 1.85,
        FfnUp | FfnUpExps | FfnUpShexp => 3.0,
        FfnGate | FfnGateExps | FfnGateShexp => 1.95,
        Router => 4.0,
        Norm | Other => 1.0,
    }
}

/// The candidates of one tensor on its lower convex hull, sorted by bytes.
fn hull(cands: &[Candidate]) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..cands.len()).collect();
    idx.sort_by(|&a, &b| {
        cands[a]
            .bytes
            .cmp(&cands[b].bytes)
            .then(cands[a].loss.total_cmp(&cands[b].loss))
    });
    // Pareto: strictly decreasing loss as bytes grow.
    let mut pareto: Vec<usize> = Vec::new();
    for i in idx {
        if pareto
            .last()
            .is_some_and(|&p| cands[p].bytes == cands[i].bytes || cands[i].loss >= cands[p].loss)
        {
            continue;
        }
        pareto.push(i);
    }
    // Lower convex hull (slopes of loss reduction per byte decreasing).
    let mut h: Vec<usize> = Vec::new();
    for i in pareto {
        while h.len() >= 2 {
            let (a, b) = (&cands[h[h.len() - 2]], &cands[h[h.len() - 1]]);
            let c = &cands[i];
            let s_ab = (a.loss - b.loss) / (b.bytes - a.bytes) as f64;
            let s_ac = (a.loss - c.loss) / (c.bytes - a.bytes) as f64;
            if s_ac >= s_ab {
                h.pop();
            } else {
                break;
            }
        }
        h.push(i);
    }
    h
}

struct Step {
    slope: f64,
    item: usize,
    /// Position in the item's hull this step moves to.
    to: usize,
}
impl PartialEq for Step {
    fn eq(&self, o: &Self) -> bool {
        self.cmp(o) == Ordering::Equal
    }
}
impl Eq for Step {}
impl PartialOrd for Step {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Step {
    fn cmp(&self, o: &Self) -> Ordering {
        self.slope.total_cmp(&o.slope).then(o.item.cmp(&self.item))
    }
}

/// The smallest possible total for these items.
pub fn min_bytes(items: &[Item]) -> u64 {
    items
        .iter()
        .map(|it| it.candidates.iter().map(|c| c.bytes).min().unwrap_or(0))
        .sum()
}

/// Picks one candidate per item with total bytes <= `budget`, minimising total loss.
pub fn fit(items: &[Item], budget: u64) -> Result<Solution, FitError> {
    let hulls: Vec<Vec<usize>> = items
        .iter()
        .map(|it| {
            if it.candidates.is_empty() {
                Err(FitError::NoCandidate(it.name.clone()))
            } else {
                Ok(hull(&it.candidates))
            }
        })
        .collect::<Result<_, _>>()?;
    let min = min_bytes(items);
    if min > budget {
        return Err(FitError::TooSmall { budget, min });
    }
    let mut pos = vec![0usize; items.len()];
    let mut used = min;
    let mut heap = BinaryHeap::new();
    let step = |i: usize, to: usize| -> Option<Step> {
        let h = &hulls[i];
        let (a, b) = (
            &items[i].candidates[h[to - 1]],
            &items[i].candidates[*h.get(to)?],
        );
        Some(Step {
            slope: (a.loss - b.loss) / (b.bytes - a.bytes) as f64,
            item: i,
            to,
        })
    };
    for i in 0..items.len() {
        if let Some(s) = step(i, 1) {
            heap.push(s);
        }
    }
    while let Some(s) = heap.pop() {
        let h = &hulls[s.item];
        let extra =
            items[s.item].candidates[h[s.to]].bytes - items[s.item].candidates[h[s.to - 1]].bytes;
        if used + extra > budget {
            continue; // this item stays where it is
        }
        used += extra;
        pos[s.item] = s.to;
        if let Some(n) = step(s.item, s.to + 1) {
            heap.push(n);
        }
    }
    let mut choice: Vec<usize> = pos.iter().zip(&hulls).map(|(&p, h)| h[p]).collect();
    // Polish: spend the remainder on the best single upgrade that fits, repeatedly.
    loop {
        let mut best: Option<(usize, usize, f64)> = None;
        for (i, it) in items.iter().enumerate() {
            let cur = &it.candidates[choice[i]];
            for (j, c) in it.candidates.iter().enumerate() {
                if c.loss < cur.loss
                    && c.bytes > cur.bytes
                    && used + (c.bytes - cur.bytes) <= budget
                {
                    let gain = cur.loss - c.loss;
                    if best.is_none_or(|b| gain > b.2) {
                        best = Some((i, j, gain));
                    }
                }
            }
        }
        match best {
            Some((i, j, _)) => {
                used = used - items[i].candidates[choice[i]].bytes + items[i].candidates[j].bytes;
                choice[i] = j;
            }
            None => break,
        }
    }
    let loss = choice
        .iter()
        .zip(items)
        .map(|(&c, it)| it.candidates[c].loss)
        .sum();
    Ok(Solution {
        choice,
        bytes: used,
        loss,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(type_id: u32, bytes: u64, loss: f64) -> Candidate {
        Candidate {
            type_id,
            bytes,
            loss,
        }
    }

    fn item(name: &str, class: TensorClass, cands: Vec<Candidate>) -> Item {
        Item {
            name: name.into(),
            class,
            candidates: cands,
        }
    }

    /// Exhaustive optimum for small problems.
    fn brute(items: &[Item], budget: u64) -> f64 {
        fn rec(items: &[Item], budget: u64, i: usize, used: u64, loss: f64, best: &mut f64) {
            if i == items.len() {
                if loss < *best {
                    *best = loss;
                }
                return;
            }
            for c in &items[i].candidates {
                if used + c.bytes <= budget {
                    rec(items, budget, i + 1, used + c.bytes, loss + c.loss, best);
                }
            }
        }
        let mut best = f64::INFINITY;
        rec(items, budget, 0, 0, 0.0, &mut best);
        best
    }

    fn ladder(name: &str, scale: u64, w: f64) -> Item {
        // bits 2..8: loss ~ 2^-2b, bytes ~ b
        let cands = (2..=8)
            .map(|b: u32| c(b, u64::from(b) * scale, w * (0.25f64).powi(b as i32)))
            .collect();
        item(name, TensorClass::FfnUp, cands)
    }

    #[test]
    fn fits_and_respects_budget() {
        let items = vec![
            ladder("a", 100, 1.0),
            ladder("b", 300, 1.0),
            ladder("c", 50, 5.0),
        ];
        for budget in [900, 1500, 2000, 2500, 3600] {
            let s = fit(&items, budget).unwrap();
            assert!(s.bytes <= budget, "{} > {budget}", s.bytes);
            let opt = brute(&items, budget);
            assert!(
                s.loss <= opt * 1.6 + 1e-12,
                "budget {budget}: {} vs {opt}",
                s.loss
            );
            let total: u64 = s
                .choice
                .iter()
                .zip(&items)
                .map(|(&ch, it)| it.candidates[ch].bytes)
                .sum();
            assert_eq!(total, s.bytes);
        }
    }

    #[test]
    fn too_small_budget_is_an_error() {
        let items = vec![ladder("a", 100, 1.0)];
        assert_eq!(
            fit(&items, 199),
            Err(FitError::TooSmall {
                budget: 199,
                min: 200
            })
        );
        let s = fit(&items, 200).unwrap();
        assert_eq!(s.bytes, 200);
    }

    #[test]
    fn big_budget_takes_the_best() {
        let items = vec![ladder("a", 100, 1.0), ladder("b", 10, 1.0)];
        let s = fit(&items, u64::MAX / 4).unwrap();
        assert_eq!(s.choice, vec![6, 6]);
    }

    #[test]
    fn expensive_tensors_get_fewer_bits() {
        // "experts": 16x the bytes of "attn" for the same loss curve.
        let items = vec![ladder("experts", 1600, 1.0), ladder("attn", 100, 1.0)];
        let s = fit(&items, 1600 * 4 + 100 * 6).unwrap();
        let bits = |i: usize| items[i].candidates[s.choice[i]].type_id;
        assert!(bits(0) < bits(1), "experts {} attn {}", bits(0), bits(1));
    }

    #[test]
    fn dominated_candidates_are_skipped() {
        let it = item(
            "x",
            TensorClass::AttnQ,
            vec![
                c(1, 100, 1.0),
                c(2, 150, 1.5),
                c(3, 200, 0.5),
                c(4, 120, 0.85),
            ],
        );
        let h = hull(&it.candidates);
        assert_eq!(h, vec![0, 3, 2]);
        let s = fit(&[it], 140).unwrap();
        assert_eq!(s.choice, vec![3]);
    }

    #[test]
    fn sensitivities() {
        use TensorClass::*;
        assert!(sensitivity(TokenEmbd, true, 30) > sensitivity(TokenEmbd, false, 30));
        assert!(sensitivity(AttnV, false, 30) > sensitivity(AttnQ, false, 30));
        // The output head outweighs a whole layer's worth of any class, more so deeper.
        assert!(sensitivity(Output, false, 30) > 30.0 * sensitivity(FfnUp, false, 30));
        assert!(sensitivity(Output, false, 60) > sensitivity(Output, false, 30));
    }
}
