//! Sampler chains: truncation and temperature, led by an optional JSON-schema grammar
//! and an end-of-generation ban.

use llama_cpp_2::sampling::LlamaSampler;
use llama_cpp_2::token::logit_bias::LlamaLogitBias;
use llama_cpp_2::token::LlamaToken;

use super::model::Model;

/// Sampling settings. `temp <= 0` is greedy.
#[derive(Debug, Clone, PartialEq)]
pub struct Sampling {
    pub temp: f32,
    pub top_k: u32,
    pub top_p: f32,
    pub min_p: f32,
    pub seed: u32,
}

/// A GBNF grammar the output must follow; with trigger words it is lazy: free text
/// until one of them appears, the grammar from there on.
#[derive(Debug, Clone, PartialEq)]
pub struct GrammarSpec {
    pub gbnf: String,
    pub triggers: Vec<String>,
}

/// A request's constraint that llama.cpp could not turn into a sampler.
#[derive(Debug, thiserror::Error)]
pub enum SamplingError {
    #[error("response_format schema: {0}")]
    Schema(String),
    #[error("response_format grammar: {0}")]
    Grammar(String),
}

impl Sampling {
    pub(super) fn sampler(&self) -> LlamaSampler {
        self.chain(Vec::new())
    }

    /// The chain led by `front` (a grammar or logit bias, which must see the logits
    /// before truncation and sampling).
    fn chain(&self, front: Vec<LlamaSampler>) -> LlamaSampler {
        let mut chain = front;
        if self.temp <= 0.0 {
            chain.push(LlamaSampler::greedy());
            return LlamaSampler::chain_simple(chain);
        }
        if self.top_k > 0 {
            chain.push(LlamaSampler::top_k(self.top_k as i32));
        }
        if self.top_p < 1.0 {
            chain.push(LlamaSampler::top_p(self.top_p, 1));
        }
        if self.min_p > 0.0 {
            chain.push(LlamaSampler::min_p(self.min_p, 1));
        }
        chain.push(LlamaSampler::temp(self.temp));
        chain.push(LlamaSampler::dist(self.seed));
        LlamaSampler::chain_simple(chain)
    }

    /// The chain for one batch job: end-of-generation tokens banned when `ban_eog`
    /// (`eog_bans` from [`eog_bans`]), output held to `json_schema` when given.
    pub(super) fn sampler_for_job(
        &self,
        model: &Model,
        json_schema: Option<&str>,
        grammar: Option<&GrammarSpec>,
        ban_eog: bool,
        eog_bans: &[LlamaLogitBias],
    ) -> Result<LlamaSampler, SamplingError> {
        let mut front = Vec::new();
        if ban_eog {
            front.push(LlamaSampler::logit_bias(model.n_vocab() as i32, eog_bans));
        }
        if let Some(g) = grammar {
            let sampler = if g.triggers.is_empty() {
                LlamaSampler::grammar(&model.llama, &g.gbnf, "root")
            } else {
                LlamaSampler::grammar_lazy(&model.llama, &g.gbnf, "root", &g.triggers, &[])
            }
            .map_err(|e| SamplingError::Grammar(e.to_string()))?;
            front.push(sampler);
        } else if let Some(schema) = json_schema {
            let grammar = json_schema_grammar(schema)?;
            let sampler = LlamaSampler::grammar(&model.llama, &grammar, "root")
                .map_err(|e| SamplingError::Grammar(e.to_string()))?;
            front.push(sampler);
        }
        Ok(self.chain(front))
    }
}

/// The GBNF grammar llama.cpp derives from a JSON schema, or why it cannot: lets a
/// server refuse a bad `response_format` before a job is queued.
pub fn json_schema_grammar(schema: &str) -> Result<String, SamplingError> {
    llama_cpp_2::json_schema_to_grammar(schema).map_err(|e| SamplingError::Schema(e.to_string()))
}

/// A -inf bias on every end-of-generation token of `model`.
pub(super) fn eog_bans(model: &Model) -> Vec<LlamaLogitBias> {
    (0..model.n_vocab() as i32)
        .map(LlamaToken)
        .filter(|t| model.is_eog(*t))
        .map(|t| LlamaLogitBias::new(t, f32::NEG_INFINITY))
        .collect()
}
