//! Loading a model: edge's header checks first (so a bad file gets a clear error, not a
//! llama.cpp abort), then llama.cpp with the weights placed as the plan says.

use std::path::{Path, PathBuf};
use std::time::Instant;

use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::token::LlamaToken;

use super::backend::backend;
use super::error::EngineError;
use super::ffi;
use crate::chat_formats::BuiltinFormat;
use crate::chat_template::{ChatTemplate, PromptPart, SpecialTokens};
use crate::gguf_info::{check_loadable, GgufFile, ModelFacts};
use crate::planner::Plan;

/// A loaded model plus what edge knows about it from its GGUF header.
pub struct Model {
    pub(super) llama: LlamaModel,
    pub path: PathBuf,
    pub facts: ModelFacts,
    pub template: ChatTemplate,
    /// The built-in format in use when the GGUF has no chat template (picked from its
    /// vocabulary) or `--chat-template NAME` chose one.
    pub builtin_format: Option<BuiltinFormat>,
    /// Text that ends the model's turn under a built-in format (stop strings).
    pub chat_stop: Vec<String>,
    pub load_ms: f64,
    /// Where the weights went (the plan's, or all on the CPU).
    pub placement: Placement,
}

/// What `--chat-template` chose.
#[derive(Debug, Clone, PartialEq)]
pub enum ChatTemplateChoice {
    Builtin(BuiltinFormat),
    /// A Jinja template's text.
    Source(String),
}

#[derive(Debug, Clone, Copy, Default)]
pub struct LoadOptions {
    pub verbose: bool,
    pub progress: bool,
}

/// Where llama.cpp puts the weights: how many layers go to the GPU-like devices
/// (counting the output layer first, as llama.cpp does) and which tensors stay on the
/// CPU regardless (`REGEX`, llama.cpp's `-ot REGEX=CPU`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Placement {
    pub n_gpu_layers: u32,
    pub cpu_overrides: Vec<String>,
}

impl Placement {
    /// The placement a plan chose.
    pub fn from_plan(plan: &Plan) -> Placement {
        Placement {
            n_gpu_layers: plan.llama.n_gpu_layers,
            cpu_overrides: plan
                .llama
                .tensor_overrides
                .iter()
                .map(|o| o.trim_end_matches("=CPU").to_string())
                .collect(),
        }
    }
}

impl Model {
    /// Loads with every weight on the CPU (tests, tools that need no device).
    pub fn load(path: &Path, opts: &LoadOptions) -> Result<Model, EngineError> {
        Self::load_with(path, opts, &Placement::default())
    }

    /// Loads with the weights placed as `plan` says.
    pub fn load_planned(
        path: &Path,
        opts: &LoadOptions,
        plan: &Plan,
    ) -> Result<Model, EngineError> {
        Self::load_with(path, opts, &Placement::from_plan(plan))
    }

    /// Validates the GGUF header, then loads the weights through llama.cpp.
    pub fn load_with(
        path: &Path,
        opts: &LoadOptions,
        placement: &Placement,
    ) -> Result<Model, EngineError> {
        let bad = |reason: String| EngineError::BadModel {
            path: path.to_path_buf(),
            reason,
        };
        let gguf = GgufFile::open(path).map_err(|e| bad(e.to_string()))?;
        check_loadable(&gguf).map_err(bad)?;
        let facts = ModelFacts::from_gguf(&gguf).map_err(bad)?;
        let backend = backend(opts.verbose)?;

        let started = Instant::now();
        let patterns = placement
            .cpu_overrides
            .iter()
            .map(|p| {
                std::ffi::CString::new(p.as_str()).map_err(|_| EngineError::BadPattern(p.clone()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let mut params = LlamaModelParams::default().with_n_gpu_layers(placement.n_gpu_layers);
        let bar = opts.progress.then(|| crate::term::load_bar(path));
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
        let llama = loaded.map_err(|_| EngineError::Load {
            path: path.to_path_buf(),
            reason: ffi::last_error_line("llama.cpp could not load it (run with -v for details)"),
        })?;
        let load_ms = started.elapsed().as_secs_f64() * 1000.0;

        let special = special_tokens(&llama);
        let builtin_format = match gguf.get_str("tokenizer.chat_template") {
            Some(_) => None,
            None => Some(BuiltinFormat::detect(&facts.architecture, &|t| {
                single_token(&llama, t)
            })),
        };
        let source = match (gguf.get_str("tokenizer.chat_template"), builtin_format) {
            (Some(t), _) => t.to_string(),
            (None, Some(f)) => f.template().to_string(),
            (None, None) => unreachable!("a format is picked when the GGUF has no template"),
        };
        let template = ChatTemplate::new(&source, special).map_err(|e| EngineError::Template {
            path: path.to_path_buf(),
            reason: format!("{e:#}"),
        })?;
        Ok(Model {
            llama,
            path: path.to_path_buf(),
            facts,
            template,
            chat_stop: builtin_format
                .map(|f| f.end_of_turn().iter().map(|s| s.to_string()).collect())
                .unwrap_or_default(),
            builtin_format,
            load_ms,
            placement: placement.clone(),
        })
    }

    /// Replaces the chat template: a built-in format's name, or a Jinja file's text
    /// (`--chat-template NAME|FILE`).
    pub fn set_chat_template(&mut self, choice: &ChatTemplateChoice) -> Result<(), EngineError> {
        let (source, builtin) = match choice {
            ChatTemplateChoice::Builtin(f) => (f.template().to_string(), Some(*f)),
            ChatTemplateChoice::Source(s) => (s.clone(), None),
        };
        self.template = ChatTemplate::new(&source, special_tokens(&self.llama)).map_err(|e| {
            EngineError::Template {
                path: self.path.clone(),
                reason: format!("{e:#}"),
            }
        })?;
        self.chat_stop = builtin
            .map(|f| f.end_of_turn().iter().map(|s| s.to_string()).collect())
            .unwrap_or_default();
        self.builtin_format = builtin;
        Ok(())
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

    /// Tokenizes `text` alone, no BOS, with or without special-token parsing.
    pub fn tokenize(&self, text: &str, parse_special: bool) -> Vec<LlamaToken> {
        self.llama
            .vocab()
            .tokenize(text.as_bytes(), false, parse_special)
    }

    pub fn n_vocab(&self) -> usize {
        self.llama.n_vocab().max(0) as usize
    }

    pub fn n_ctx_train(&self) -> u32 {
        self.llama.n_ctx_train()
    }

    /// Bytes of weights, as llama.cpp counts them.
    pub fn size_bytes(&self) -> u64 {
        self.llama.size()
    }

    pub fn n_params(&self) -> u64 {
        self.llama.n_params()
    }

    /// The BOS token when the model wants one at the start of a sequence.
    pub(super) fn leading_bos(&self) -> Option<LlamaToken> {
        let vocab = self.llama.vocab();
        (vocab.should_add_bos() && vocab.bos().0 >= 0).then(|| vocab.bos())
    }

    pub(super) fn is_eog(&self, token: LlamaToken) -> bool {
        self.llama.vocab().is_eog(token)
    }

    pub(super) fn piece(&self, token: LlamaToken) -> Vec<u8> {
        self.llama.vocab().token_to_piece(token, false, None)
    }
}

/// Whether one token spells `text` (a marker the vocabulary knows).
fn single_token(model: &LlamaModel, text: &str) -> bool {
    let tokens = model.vocab().tokenize(text.as_bytes(), false, true);
    tokens.len() == 1 && vocab_text(model, tokens[0]).is_some_and(|t| t == text)
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
