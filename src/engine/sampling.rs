//! Sampler chains: truncation and temperature, led by an optional JSON-schema grammar
//! and an end-of-generation ban.

use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::sampling::LlamaSampler;
use llama_cpp_2::token::data::LlamaTokenData;
use llama_cpp_2::token::data_array::LlamaTokenDataArray;
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
    ) -> Result<JobSampler, SamplingError> {
        let mut front = Vec::new();
        if ban_eog {
            front.push(LlamaSampler::logit_bias(model.n_vocab() as i32, eog_bans));
        }
        let grammar = if let Some(g) = grammar {
            Some(
                if g.triggers.is_empty() {
                    LlamaSampler::grammar(&model.llama, &g.gbnf, "root")
                } else {
                    LlamaSampler::grammar_lazy(&model.llama, &g.gbnf, "root", &g.triggers, &[])
                }
                .map_err(|e| SamplingError::Grammar(e.to_string()))?,
            )
        } else if let Some(schema) = json_schema {
            let gbnf = json_schema_grammar(schema)?;
            Some(
                LlamaSampler::grammar(&model.llama, &gbnf, "root")
                    .map_err(|e| SamplingError::Grammar(e.to_string()))?,
            )
        } else {
            None
        };
        Ok(JobSampler {
            chain: self.chain(front),
            grammar,
        })
    }
}

/// A job's sampler: the chain, and a grammar checked the way llama.cpp's common
/// sampler does: the chain picks a token from the raw candidates, the grammar only
/// checks that one, and only a rejected token costs a pass of the grammar over the
/// whole vocabulary (which takes ~30 ms per token on Qwen's 151k entries).
pub(super) struct JobSampler {
    chain: LlamaSampler,
    grammar: Option<LlamaSampler>,
}

impl JobSampler {
    pub(super) fn sample(&mut self, ctx: &LlamaContext<'_>, idx: i32) -> LlamaToken {
        let Some(grammar) = &mut self.grammar else {
            return self.chain.sample(ctx, idx);
        };
        let mut cur = LlamaTokenDataArray::from_iter(ctx.candidates_ith(idx), false);
        self.chain.apply(&mut cur);
        let picked = cur.selected_token();
        let allowed = picked.is_some_and(|t| {
            let mut one = LlamaTokenDataArray::from_iter([LlamaTokenData::new(t, 1.0, 0.0)], false);
            grammar.apply(&mut one);
            one.data.first().is_some_and(|d| d.logit().is_finite())
        });
        let token = match picked {
            Some(t) if allowed => t,
            _ => {
                let mut cur = LlamaTokenDataArray::from_iter(ctx.candidates_ith(idx), false);
                grammar.apply(&mut cur);
                self.chain.apply(&mut cur);
                cur.selected_token().unwrap_or_else(|| {
                    cur.data
                        .iter()
                        .max_by(|a, b| a.logit().total_cmp(&b.logit()))
                        .map_or(LlamaToken(0), |d| d.id())
                })
            }
        };
        grammar.accept(token);
        self.chain.accept(token);
        token
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
