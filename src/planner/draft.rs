//! Planning a target model with a draft model beside it (speculative decoding). The
//! draft is placed first, since it runs several times per target step and gains most
//! from the GPU; the target then gets what memory is left. The forecast of tokens per
//! second picks the draft length that the expected acceptance makes fastest.

use serde::Serialize;

use super::{plan, ModelShape, Plan, PlanRequest};
use crate::profile::DeviceProfile;
use crate::speculative::tuner::DraftTuner;

/// Acceptance assumed for a same-family draft before any is measured: llama.cpp's
/// speculative examples report 0.6-0.9 on chat text for pairs like Qwen3-8B + 0.6B.
pub const ASSUMED_ACCEPTANCE: f64 = 0.7;

/// What speculation is expected to give.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SpecForecast {
    pub acceptance: f64,
    /// Draft tokens per target step at the forecast's best.
    pub draft_len: usize,
    pub plain_tok_s: f64,
    pub draft_tok_s: f64,
    pub spec_tok_s: f64,
}

/// A target's plan with its draft's.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PairPlan {
    pub target: Plan,
    pub draft: Plan,
    pub forecast: SpecForecast,
}

/// Plans `draft` first on the whole device, then `target` in what is left. The draft
/// gets the target's context and sequences: it mirrors every sequence. `ctx` of
/// `req` is the target's; when it is the planner's choice, the target is planned alone
/// first to learn it.
pub fn plan_pair(
    target: &ModelShape,
    draft: &ModelShape,
    profile: &DeviceProfile,
    req: &PlanRequest,
    max_draft: usize,
) -> PairPlan {
    let ctx = req.ctx.unwrap_or_else(|| plan(target, profile, req).ctx);
    let draft_req = PlanRequest {
        ctx: Some(ctx),
        pins: Default::default(),
        ..req.clone()
    };
    let draft_plan = plan(draft, profile, &draft_req);
    let v = &draft_plan.tiers.vram;
    let r = &draft_plan.tiers.ram;
    let target_req = if draft_plan.unified_memory {
        PlanRequest {
            ctx: Some(ctx),
            ram: Some(r.capacity.saturating_sub(r.used + v.used)),
            ..req.clone()
        }
    } else {
        PlanRequest {
            ctx: Some(ctx),
            vram: Some(v.capacity.saturating_sub(v.used)),
            ram: Some(r.capacity.saturating_sub(r.used)),
            ..req.clone()
        }
    };
    let mut target_plan = plan(target, profile, &target_req);
    if !target_plan.fits {
        if let Some(reason) = &mut target_plan.reason {
            reason.push_str(&format!(
                " (with the draft model's {} beside it)",
                crate::term::human_bytes(v.used + r.used)
            ));
        }
    }
    let forecast = forecast(
        target_plan.predicted.decode_tok_s,
        draft_plan.predicted.decode_tok_s,
        ASSUMED_ACCEPTANCE,
        max_draft,
    );
    PairPlan {
        target: target_plan,
        draft: draft_plan,
        forecast,
    }
}

/// Tokens per second with drafts of the best length up to `max_draft`, if a verify
/// batch costs one target step (decode is bound by reading the weights, which a batch
/// of a few tokens reads once).
pub fn forecast(
    plain_tok_s: f64,
    draft_tok_s: f64,
    acceptance: f64,
    max_draft: usize,
) -> SpecForecast {
    let step = 1.0 / plain_tok_s.max(1e-9);
    let draft_step = 1.0 / draft_tok_s.max(1e-9);
    let speed =
        |k: usize| DraftTuner::expected_tokens(acceptance, k) / (step + k as f64 * draft_step);
    let best = (0..=max_draft)
        .max_by(|&a, &b| speed(a).total_cmp(&speed(b)))
        .unwrap_or(0);
    SpecForecast {
        acceptance,
        draft_len: best,
        plain_tok_s,
        draft_tok_s,
        spec_tok_s: speed(best),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forecast_drafts_only_when_it_pays() {
        // A draft 10x faster than the target at 70 % acceptance: E(3) = 2.533 tokens
        // per 1.3 steps.
        let f = forecast(10.0, 100.0, 0.7, 16);
        assert!(f.draft_len >= 2, "{f:?}");
        assert!(f.spec_tok_s > 17.0 && f.spec_tok_s < 25.0, "{f:?}");
        let k3 = DraftTuner::expected_tokens(0.7, 3) / (0.1 + 3.0 * 0.01);
        assert!(f.spec_tok_s >= k3 - 1e-9);
        // A draft as slow as the target never pays.
        let slow = forecast(10.0, 10.0, 0.7, 16);
        assert_eq!(slow.draft_len, 0);
        assert!((slow.spec_tok_s - 10.0).abs() < 1e-9);
    }

    #[test]
    fn the_draft_is_placed_first_and_the_target_gets_the_rest() {
        use crate::published::models::ReferenceModel;
        let shape = |name: &str, ft: &str| {
            let gguf = ReferenceModel::find(name).unwrap().gguf(ft).unwrap();
            ModelShape::from_gguf(&gguf).unwrap()
        };
        let target = shape("qwen3 8b", "Q4_K_M");
        let draft = shape("qwen3 0.6b", "Q4_K_M");
        for name in ["rtx4060-8gb", "macbook-air-m2-16gb"] {
            let profile = crate::profile::find_profile(name, None).unwrap();
            let req = PlanRequest {
                ctx: Some(4096),
                ..Default::default()
            };
            let alone = plan(&target, &profile, &req);
            let pair = plan_pair(&target, &draft, &profile, &req, 16);
            assert!(
                pair.draft.fits && pair.target.fits,
                "{name}: {:?}",
                pair.target.reason
            );
            // The draft went to the GPU whole, and the target's GPU share shrank by it.
            assert_eq!(pair.draft.ctx, 4096);
            let dv = pair.draft.tiers.vram.used;
            assert!(dv >= draft.weight_bytes(), "{name}: draft VRAM {dv}");
            assert!(
                pair.target.tiers.vram.capacity + dv <= alone.tiers.vram.capacity + 1,
                "{name}"
            );
            let f = &pair.forecast;
            assert!(
                f.draft_len > 0 && f.spec_tok_s > f.plain_tok_s,
                "{name}: {f:?}"
            );
            assert_eq!(f.plain_tok_s, pair.target.predicted.decode_tok_s);
        }
        // A device too small for both says the draft is why.
        let profile = crate::profile::find_profile("rtx4060-8gb", None).unwrap();
        let tight = PlanRequest {
            ctx: Some(4096),
            vram: Some(5 << 30),
            ram: Some(5 << 30),
            ..Default::default()
        };
        let big = shape("qwen3 8b", "Q8_0");
        let pair = plan_pair(&big, &draft, &profile, &tight, 16);
        assert!(!pair.target.fits);
        assert!(
            pair.target
                .reason
                .as_deref()
                .unwrap_or("")
                .contains("draft model"),
            "{:?}",
            pair.target.reason
        );
    }
}
