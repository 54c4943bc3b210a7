//! llama.cpp through `llama-cpp-2`: loading a model, a decoding session with KV-cache
//! reuse across turns, sampling, and streaming generation.

pub mod ffi;

use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;
use std::time::Instant;

use anyhow::{anyhow, bail, Context, Result};
use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::sampling::LlamaSampler;
use llama_cpp_2::token::LlamaToken;

use crate::chat::PromptPart;
use crate::chat_template::{ChatTemplate, SpecialTokens, FALLBACK_CHATML};
use crate::gguf_info::{check_loadable, GgufFile, ModelFacts};
use crate::thinking::{Segment, ThinkParser, THINK_CLOSE};

static BACKEND: OnceLock<LlamaBackend> = OnceLock::new();

/// Initialises llama.cpp once per process. Logs go to stderr only when `verbose`.
pub fn backend(verbose: bool) -> Result<&'static LlamaBackend> {
    if let Some(b) = BACKEND.get() {
        // An earlier quiet start (device detection for the plan, say) must not hide the
        // logs a later verbose caller asked for.
        if verbose {
            ffi::install_log_callback(true);
        }
        return Ok(b);
    }
    ffi::install_log_callback(verbose);
    let b = LlamaBackend::init().context("initialising llama.cpp")?;
    Ok(BACKEND.get_or_init(|| b))
}

/// Default thread count: physical cores, as llama.cpp's own tools do.
pub fn default_threads() -> u32 {
    num_cpus::get_physical().max(1) as u32
}

/// A loaded model plus what edge knows about it from its GGUF header.
pub struct Model {
    pub llama: LlamaModel,
    pub path: PathBuf,
    pub facts: ModelFacts,
    pub template: ChatTemplate,
    /// The GGUF had no chat template; [`FALLBACK_CHATML`] is used.
    pub template_is_fallback: bool,
    pub load_ms: f64,
}

pub struct LoadOptions {
    pub verbose: bool,
    pub progress: bool,
}

/// Where llama.cpp puts the weights (from a plan): how many layers go to the GPU-like
/// devices (counting the output layer first, as llama.cpp does) and which tensors stay
/// on the CPU regardless (`-ot REGEX=CPU`).
#[derive(Debug, Clone, Default)]
pub struct Placement {
    pub n_gpu_layers: u32,
    pub cpu_overrides: Vec<String>,
}

/// KV-cache and attention settings for a context (from a plan).
#[derive(Debug, Clone, Copy, Default)]
pub struct KvOptions {
    pub type_k: Option<crate::planner::KvType>,
    pub type_v: Option<crate::planner::KvType>,
    pub flash_attn: Option<bool>,
}

fn kv_cache_type(t: crate::planner::KvType) -> llama_cpp_2::context::params::KvCacheType {
    use llama_cpp_2::context::params::KvCacheType;
    match t {
        crate::planner::KvType::F16 => KvCacheType::F16,
        crate::planner::KvType::Q8_0 => KvCacheType::Q8_0,
        crate::planner::KvType::Q4_0 => KvCacheType::Q4_0,
    }
}

impl Model {
    /// Validates the GGUF header (so a bad file gets a clear error instead of a llama.cpp
    /// abort), then loads the weights through llama.cpp.
    pub fn load(path: &Path, opts: &LoadOptions) -> Result<Model> {
        Self::load_with(path, opts, &Placement::default())
    }

    /// [`Model::load`] with the weights placed as a plan says.
    pub fn load_with(path: &Path, opts: &LoadOptions, placement: &Placement) -> Result<Model> {
        let gguf = GgufFile::open(path)?;
        check_loadable(&gguf).map_err(|e| anyhow!("{}: {e}", path.display()))?;
        let facts = ModelFacts::from_gguf(&gguf).map_err(|e| anyhow!("{}: {e}", path.display()))?;
        let backend = backend(opts.verbose)?;

        let started = Instant::now();
        let patterns = placement
            .cpu_overrides
            .iter()
            .map(|p| {
                std::ffi::CString::new(p.as_str())
                    .map_err(|_| anyhow!("tensor pattern '{p}' contains a NUL byte"))
            })
            .collect::<Result<Vec<_>>>()?;
        let mut params = LlamaModelParams::default().with_n_gpu_layers(placement.n_gpu_layers);
        let bar = opts
            .progress
            .then(|| crate::commands::progress::load_bar(path));
        if let Some(bar) = bar.clone() {
            params = params.with_progress_callback(move |p| {
                bar.set_position((p * 100.0) as u64);
                true
            });
        }
        // The override list points into `patterns`, which lives until the load returns.
        let mut params = std::pin::pin!(params);
        for p in &patterns {
            params.as_mut().add_cpu_buft_override(p);
        }
        ffi::take_recent_errors();
        let loaded = LlamaModel::load_from_file(backend, path, &params);
        if let Some(bar) = bar {
            bar.finish_and_clear();
        }
        let llama = loaded.map_err(|_| {
            let why = ffi::take_recent_errors()
                .into_iter()
                .rev()
                .find(|l| !l.starts_with("llama_model_load_from_file"))
                .unwrap_or_else(|| "llama.cpp could not load it (run with -v for details)".into());
            anyhow!("cannot load {}: {why}", path.display())
        })?;
        let load_ms = started.elapsed().as_secs_f64() * 1000.0;

        let special = special_tokens(&llama);
        let (source, template_is_fallback) = match gguf.get_str("tokenizer.chat_template") {
            Some(t) => (t.to_string(), false),
            None => (FALLBACK_CHATML.to_string(), true),
        };
        let template = ChatTemplate::new(&source, special)
            .with_context(|| format!("{}: the model's chat template", path.display()))?;
        Ok(Model {
            llama,
            path: path.to_path_buf(),
            facts,
            template,
            template_is_fallback,
            load_ms,
        })
    }

    /// Tokenizes prompt parts: template text with special-token parsing, user text
    /// without it, so a typed `<|im_end|>` stays text.
    pub fn tokenize_parts(&self, parts: &[PromptPart]) -> Vec<LlamaToken> {
        let vocab = self.llama.vocab();
        let mut tokens = Vec::new();
        let starts_with_bos_text = parts.first().is_some_and(|p| {
            p.special
                && vocab_text(&self.llama, vocab.bos())
                    .is_some_and(|b| !b.is_empty() && p.text.starts_with(&b))
        });
        if vocab.should_add_bos() && !starts_with_bos_text && vocab.bos().0 >= 0 {
            tokens.push(vocab.bos());
        }
        for part in parts {
            if part.text.is_empty() {
                continue;
            }
            tokens.extend(vocab.tokenize(part.text.as_bytes(), false, part.special));
        }
        tokens
    }

    pub fn new_session(&self, opts: &SessionOptions) -> Result<Session<'_>> {
        self.new_session_with(opts, &KvOptions::default())
    }

    /// [`Model::new_session`] with the KV type and flash attention a plan chose.
    pub fn new_session_with(&self, opts: &SessionOptions, kv: &KvOptions) -> Result<Session<'_>> {
        let backend = backend(false)?;
        let n_ctx = opts.n_ctx;
        let n_batch = opts.n_batch.min(n_ctx).max(1);
        let params = LlamaContextParams::default()
            .with_n_ctx(NonZeroU32::new(n_ctx))
            .with_n_batch(n_batch)
            .with_n_ubatch(opts.n_ubatch.min(n_batch).max(1))
            .with_n_threads(opts.threads as i32)
            .with_n_threads_batch(opts.threads as i32);
        let mut params = params;
        if let Some(t) = kv.type_k {
            params = params.with_type_k(kv_cache_type(t));
        }
        if let Some(t) = kv.type_v {
            params = params.with_type_v(kv_cache_type(t));
        }
        if let Some(fa) = kv.flash_attn {
            params = params.with_flash_attention_policy(if fa {
                llama_cpp_sys_2::LLAMA_FLASH_ATTN_TYPE_ENABLED
            } else {
                llama_cpp_sys_2::LLAMA_FLASH_ATTN_TYPE_DISABLED
            });
        }
        ffi::take_recent_errors();
        let ctx = self.llama.new_context(backend, params).map_err(|_| {
            let why = ffi::take_recent_errors().pop().unwrap_or_default();
            anyhow!("cannot create a llama.cpp context of {n_ctx} tokens: {why}")
        })?;
        Ok(Session {
            model: self,
            n_ctx: ctx.n_ctx(),
            n_batch,
            ctx,
            kv_tokens: Vec::new(),
        })
    }

    /// Default context: the model's training context, capped to keep memory modest.
    pub fn default_ctx(&self) -> u32 {
        let train = self.llama.n_ctx_train();
        if train == 0 {
            4096
        } else {
            train.min(4096)
        }
    }
}

fn vocab_text(model: &LlamaModel, token: LlamaToken) -> Option<String> {
    if token.0 < 0 || token.0 >= model.n_vocab() {
        return None;
    }
    model
        .vocab()
        .text(token)
        .map(|c| c.to_string_lossy().into_owned())
}

fn special_tokens(model: &LlamaModel) -> SpecialTokens {
    let vocab = model.vocab();
    SpecialTokens {
        bos: vocab_text(model, vocab.bos()),
        eos: vocab_text(model, vocab.eos()),
        pad: vocab_text(model, vocab.pad()),
        unk: None,
    }
}

#[derive(Debug, Clone)]
pub struct SessionOptions {
    pub n_ctx: u32,
    pub n_batch: u32,
    pub n_ubatch: u32,
    pub threads: u32,
}

/// Sampling settings. `temp <= 0` is greedy.
#[derive(Debug, Clone, PartialEq)]
pub struct Sampling {
    pub temp: f32,
    pub top_k: u32,
    pub top_p: f32,
    pub min_p: f32,
    pub seed: u32,
}

impl Sampling {
    fn sampler(&self) -> LlamaSampler {
        self.sampler_with(Vec::new())
    }

    /// The sampler chain, led by `front` (a grammar or logit bias, which must see the
    /// logits before truncation and sampling).
    pub fn sampler_with(&self, front: Vec<LlamaSampler>) -> LlamaSampler {
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
}

#[derive(Debug, Clone)]
pub struct GenRequest {
    pub max_tokens: u32,
    pub sampling: Sampling,
    /// Force `</think>` after this many reasoning tokens.
    pub think_budget: Option<u32>,
    /// The prompt opened `<think>` itself, so output starts inside reasoning.
    pub starts_in_reasoning: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    EndOfTurn,
    MaxTokens,
    Interrupted,
    ContextFull,
}

#[derive(Debug, Clone)]
pub struct GenOutput {
    pub reasoning: String,
    pub answer: String,
    /// The raw text the model produced (what goes back into the chat history).
    pub raw: String,
    pub stop: StopReason,
    pub n_prompt_new: usize,
    pub n_generated: usize,
    pub n_reasoning_tokens: usize,
    pub prompt_ms: f64,
    pub gen_ms: f64,
}

/// A llama.cpp context bound to a model. Remembers which tokens are in its KV cache so
/// the next turn of a chat only decodes what changed.
pub struct Session<'m> {
    pub model: &'m Model,
    ctx: LlamaContext<'m>,
    kv_tokens: Vec<LlamaToken>,
    pub n_ctx: u32,
    n_batch: u32,
}

impl<'m> Session<'m> {
    pub fn clear(&mut self) {
        self.ctx.clear_kv_cache();
        self.kv_tokens.clear();
    }

    pub fn tokens_in_context(&self) -> usize {
        self.kv_tokens.len()
    }

    /// Decodes `tokens` at the end of the KV cache, in n_batch chunks; logits only for
    /// the last token.
    fn decode_append(&mut self, tokens: &[LlamaToken]) -> Result<()> {
        let mut batch = LlamaBatch::new(self.n_batch as usize, 1);
        let total = tokens.len();
        for (chunk_idx, chunk) in tokens.chunks(self.n_batch as usize).enumerate() {
            batch.clear();
            let base = chunk_idx * self.n_batch as usize;
            for (i, &tok) in chunk.iter().enumerate() {
                let pos = self.kv_tokens.len() + i;
                let last = base + i + 1 == total;
                batch.add(tok, pos as i32, &[0], last)?;
            }
            self.ctx
                .decode(&mut batch)
                .map_err(|e| anyhow!("llama.cpp decode failed: {e}"))?;
            self.kv_tokens.extend_from_slice(chunk);
        }
        Ok(())
    }

    /// Makes the KV cache hold exactly `prompt`: keeps the common prefix with what is
    /// already there, drops the rest, decodes the new tail. Returns the tokens decoded.
    fn sync_prompt(&mut self, prompt: &[LlamaToken]) -> Result<usize> {
        let mut keep = self
            .kv_tokens
            .iter()
            .zip(prompt)
            .take_while(|(a, b)| a == b)
            .count();
        // At least one token must be decoded to get fresh logits.
        if keep == prompt.len() {
            keep = keep.saturating_sub(1);
        }
        if keep < self.kv_tokens.len() {
            let removed = self
                .ctx
                .clear_kv_cache_seq(Some(0), Some(keep as u32), None)
                .unwrap_or(false);
            if !removed {
                // Some memory types cannot drop a suffix; start over.
                self.clear();
                keep = 0;
            } else {
                self.kv_tokens.truncate(keep);
            }
        }
        let tail = &prompt[keep..];
        self.decode_append(tail)?;
        Ok(tail.len())
    }

    /// Generates a reply to `prompt` (the whole conversation, tokenized), streaming
    /// reasoning and answer segments to `on_segment`.
    pub fn generate(
        &mut self,
        prompt: &[LlamaToken],
        req: &GenRequest,
        stop_flag: &AtomicBool,
        on_segment: &mut dyn FnMut(&Segment),
    ) -> Result<GenOutput> {
        if prompt.is_empty() {
            bail!("empty prompt");
        }
        if prompt.len() >= self.n_ctx as usize {
            bail!(
                "the prompt is {} tokens but the context holds {}; use --ctx to raise it (the model was trained for {})",
                prompt.len(),
                self.n_ctx,
                self.model.llama.n_ctx_train()
            );
        }
        let t0 = Instant::now();
        let n_prompt_new = self.sync_prompt(prompt)?;
        let prompt_ms = t0.elapsed().as_secs_f64() * 1000.0;

        let vocab = self.model.llama.vocab();
        let mut sampler = req.sampling.sampler();
        let mut parser = ThinkParser::new(req.starts_in_reasoning);
        let mut decoder = Utf8Stream::default();
        let mut raw = String::new();
        let (mut reasoning, mut answer) = (String::new(), String::new());
        let mut n_generated = 0usize;
        let mut n_reasoning_tokens = 0usize;
        let mut stop = StopReason::MaxTokens;
        let t1 = Instant::now();

        let mut emit = |segs: Vec<Segment>, reasoning: &mut String, answer: &mut String| {
            for s in segs {
                match &s {
                    Segment::Reasoning(t) => reasoning.push_str(t),
                    Segment::Answer(t) => answer.push_str(t),
                }
                on_segment(&s);
            }
        };

        while n_generated < req.max_tokens as usize {
            if stop_flag.load(Ordering::Relaxed) {
                stop = StopReason::Interrupted;
                break;
            }
            if self.kv_tokens.len() + 1 >= self.n_ctx as usize {
                stop = StopReason::ContextFull;
                break;
            }
            let token = sampler.sample(&self.ctx, -1);
            if vocab.is_eog(token) {
                stop = StopReason::EndOfTurn;
                break;
            }
            n_generated += 1;
            let was_reasoning = parser.in_reasoning();
            let piece = vocab.token_to_piece(token, false, None);
            let text = decoder.push(&piece);
            raw.push_str(&text);
            let segs = parser.push(&text);
            if was_reasoning {
                n_reasoning_tokens += 1;
            }
            emit(segs, &mut reasoning, &mut answer);
            self.decode_append(&[token])?;

            if let Some(budget) = req.think_budget {
                if parser.in_reasoning() && n_reasoning_tokens >= budget as usize {
                    // Close the reasoning block ourselves and let the model answer.
                    let close = format!("\n{THINK_CLOSE}\n\n");
                    let forced = vocab.tokenize(close.as_bytes(), false, true);
                    if self.kv_tokens.len() + forced.len() + 1 >= self.n_ctx as usize {
                        stop = StopReason::ContextFull;
                        break;
                    }
                    raw.push_str(&decoder.flush());
                    raw.push_str(&close);
                    let segs = parser.push(&close);
                    emit(segs, &mut reasoning, &mut answer);
                    self.decode_append(&forced)?;
                }
            }
        }
        let tail = decoder.flush();
        raw.push_str(&tail);
        let mut segs = parser.push(&tail);
        segs.extend(parser.finish());
        emit(segs, &mut reasoning, &mut answer);
        Ok(GenOutput {
            reasoning,
            answer,
            raw,
            stop,
            n_prompt_new,
            n_generated,
            n_reasoning_tokens,
            prompt_ms,
            gen_ms: t1.elapsed().as_secs_f64() * 1000.0,
        })
    }

    /// Raw access for benchmarks.
    pub fn context_mut(&mut self) -> &mut LlamaContext<'m> {
        &mut self.ctx
    }
}

/// Turns token bytes into text without splitting multi-byte characters across tokens.
#[derive(Default, Debug)]
pub struct Utf8Stream {
    pending: Vec<u8>,
}

impl Utf8Stream {
    pub fn push(&mut self, bytes: &[u8]) -> String {
        self.pending.extend_from_slice(bytes);
        let mut out = String::new();
        loop {
            match std::str::from_utf8(&self.pending) {
                Ok(s) => {
                    out.push_str(s);
                    self.pending.clear();
                    return out;
                }
                Err(e) => {
                    let valid = e.valid_up_to();
                    out.push_str(std::str::from_utf8(&self.pending[..valid]).unwrap_or_default());
                    match e.error_len() {
                        // Incomplete sequence at the end: wait for the next token.
                        None => {
                            self.pending.drain(..valid);
                            return out;
                        }
                        Some(bad) => {
                            out.push('\u{FFFD}');
                            self.pending.drain(..valid + bad);
                        }
                    }
                }
            }
        }
    }

    pub fn flush(&mut self) -> String {
        let s = String::from_utf8_lossy(&self.pending).into_owned();
        self.pending.clear();
        s
    }
}

/// Registers ggml RPC servers as devices (once per endpoint per process) and returns the
/// free memory they report in total.
pub fn add_rpc_servers(endpoints: &[String], verbose: bool) -> Result<u64> {
    static ADDED: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
    backend(verbose)?;
    let mut added = ADDED
        .lock()
        .map_err(|_| anyhow!("RPC registry lock poisoned"))?;
    for ep in endpoints {
        if ep
            .rsplit_once(':')
            .and_then(|(_, p)| p.parse::<u16>().ok())
            .is_none()
        {
            bail!("--rpc '{ep}': expected HOST:PORT");
        }
        if !added.contains(ep) {
            // Fail fast with a clear message when nothing listens there.
            let addr = std::net::ToSocketAddrs::to_socket_addrs(ep.as_str())
                .with_context(|| format!("--rpc {ep}"))?
                .next()
                .ok_or_else(|| anyhow!("--rpc {ep}: no address"))?;
            std::net::TcpStream::connect_timeout(&addr, std::time::Duration::from_secs(5))
                .with_context(|| format!("cannot reach the RPC server at {ep}"))?;
            ffi::rpc_add_server(ep).map_err(anyhow::Error::msg)?;
            added.push(ep.clone());
        }
    }
    let free = llama_cpp_2::list_llama_ggml_backend_devices()
        .into_iter()
        .filter(|d| d.backend.eq_ignore_ascii_case("RPC"))
        .map(|d| d.memory_free as u64)
        .sum();
    Ok(free)
}

#[cfg(test)]
mod tests {
    use super::Utf8Stream;

    #[test]
    fn utf8_split_across_tokens() {
        let mut d = Utf8Stream::default();
        let bytes = "日本".as_bytes();
        assert_eq!(d.push(&bytes[..2]), "");
        assert_eq!(d.push(&bytes[2..4]), "日");
        assert_eq!(d.push(&bytes[4..]), "本");
        assert_eq!(d.push(&[0xff, b'a']), "\u{FFFD}a");
    }
}
