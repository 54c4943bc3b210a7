//! The acceptance rule of speculative sampling (Leviathan et al. 2023, §2.3; Chen et
//! al. 2023, Alg. 2). A drafted token x, drawn from the draft's distribution q, is kept
//! with probability min(1, p(x)/q(x)), where p is the target's; otherwise a token is
//! drawn from the residual max(0, p - q), renormalised. The emitted token is then
//! distributed exactly as p, whatever q is.
//!
//! edge drafts greedily, so q is one-hot at x. The rule then keeps x with probability
//! p(x) and otherwise draws from p without x, which is the same as drawing y from p
//! with the target's own sampler and keeping x when y = x: that is how the engine
//! verifies (the sampler chain then also carries grammars and penalties, and the
//! random draws are the ones plain decoding makes). The tests below prove the
//! equivalence on exact probabilities.

/// A distribution over token ids: (id, probability) pairs with distinct ids.
pub type Dist = [(i32, f64)];

fn prob(d: &Dist, id: i32) -> f64 {
    d.iter().find(|(t, _)| *t == id).map_or(0.0, |(_, p)| *p)
}

/// The chance that drafted token `x` is kept.
pub fn keep_chance(p: &Dist, q: &Dist, x: i32) -> f64 {
    let qx = prob(q, x);
    if qx <= 0.0 {
        // The draft could not have proposed it; never keep it.
        return 0.0;
    }
    (prob(p, x) / qx).min(1.0)
}

/// The distribution a rejected draft's replacement is drawn from: max(0, p - q),
/// normalised. Where p = q (nothing left) it is p itself, though a rejection then
/// never happens.
pub fn residual(p: &Dist, q: &Dist) -> Vec<(i32, f64)> {
    let rest: Vec<(i32, f64)> = p
        .iter()
        .map(|&(t, pt)| (t, (pt - prob(q, t)).max(0.0)))
        .filter(|&(_, r)| r > 0.0)
        .collect();
    let total: f64 = rest.iter().map(|(_, r)| r).sum();
    if total <= 0.0 {
        return p.to_vec();
    }
    rest.into_iter().map(|(t, r)| (t, r / total)).collect()
}

/// One verification: `u_keep` and `u_draw` are uniform in [0, 1). Returns the emitted
/// token and whether it was the draft.
pub fn verify(p: &Dist, q: &Dist, x: i32, u_keep: f64, u_draw: f64) -> (i32, bool) {
    if u_keep < keep_chance(p, q, x) {
        return (x, true);
    }
    let r = residual(p, q);
    let mut acc = 0.0;
    for &(t, pt) in &r {
        acc += pt;
        if u_draw < acc {
            return (t, false);
        }
    }
    (r.last().map_or(x, |&(t, _)| t), false)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The exact distribution of the emitted token: draws x from q, then the rule.
    fn emitted(p: &Dist, q: &Dist) -> Vec<(i32, f64)> {
        let kept: f64 = q.iter().map(|&(x, qx)| qx * keep_chance(p, q, x)).sum();
        let r = residual(p, q);
        p.iter()
            .map(|&(y, _)| {
                let via_keep = prob(q, y) * keep_chance(p, q, y);
                (y, via_keep + (1.0 - kept) * prob(&r, y))
            })
            .collect()
    }

    fn assert_same(a: &Dist, b: &Dist) {
        for &(t, pt) in a {
            assert!(
                (pt - prob(b, t)).abs() < 1e-12,
                "token {t}: {pt} vs {}",
                prob(b, t)
            );
        }
        for &(t, pt) in b {
            assert!(
                (pt - prob(a, t)).abs() < 1e-12,
                "token {t}: {pt} vs {}",
                prob(a, t)
            );
        }
    }

    #[test]
    fn output_is_distributed_as_the_target_for_any_draft() {
        let p = [(0, 0.5), (1, 0.3), (2, 0.2)];
        for q in [
            vec![(0, 0.2), (1, 0.2), (2, 0.6)],
            vec![(0, 0.9), (1, 0.1)],
            vec![(2, 1.0)],
            vec![(0, 0.5), (1, 0.3), (2, 0.2)],
        ] {
            assert_same(&emitted(&p, &q), &p);
        }
        // Exact values for one pair: q over-proposes token 2.
        let q = [(0, 0.2), (1, 0.2), (2, 0.6)];
        assert_eq!(keep_chance(&p, &q, 2), 0.2 / 0.6);
        assert_eq!(keep_chance(&p, &q, 0), 1.0);
        assert_same(&residual(&p, &q), &[(0, 0.3 / 0.4), (1, 0.1 / 0.4)]);
    }

    #[test]
    fn greedy_draft_is_sample_and_match() {
        // q one-hot at x: keep x with p(x), else draw from p without x, which is what
        // sampling y ~ p and keeping x iff y = x gives.
        let p = [(0, 0.1), (1, 0.6), (2, 0.3)];
        for x in 0..3 {
            let q = [(x, 1.0)];
            assert!((keep_chance(&p, &q, x) - prob(&p, x)).abs() < 1e-15);
            let r = residual(&p, &q);
            for &(y, py) in &p {
                let want = if y == x {
                    0.0
                } else {
                    py / (1.0 - prob(&p, x))
                };
                assert!((prob(&r, y) - want).abs() < 1e-12);
            }
            assert_same(&emitted(&p, &q), &p);
        }
    }

    #[test]
    fn verify_draws_by_the_rule() {
        let p = [(0, 0.5), (1, 0.3), (2, 0.2)];
        let q = [(2, 1.0)];
        assert_eq!(verify(&p, &q, 2, 0.1, 0.9), (2, true));
        // Rejected (0.2 <= u): the residual is 0: 0.625, 1: 0.375.
        assert_eq!(verify(&p, &q, 2, 0.25, 0.6), (0, false));
        assert_eq!(verify(&p, &q, 2, 0.25, 0.7), (1, false));
        // A token the draft could not propose is never kept.
        assert!(!verify(&p, &q, 1, 0.0, 0.0).1);
        // At temperature 0 (p one-hot) only the argmax survives.
        let greedy = [(1, 1.0)];
        assert_eq!(verify(&greedy, &[(1, 1.0)], 1, 0.999, 0.0), (1, true));
        assert_eq!(verify(&greedy, &[(0, 1.0)], 0, 0.0, 0.5), (1, false));
    }
}
