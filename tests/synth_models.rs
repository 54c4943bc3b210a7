//! Synthetic GGUF models (`edge::synth`) load, tokenize and generate in llama.cpp.
//!
//! Run with `cargo test --release --test synth_models`. The real-tokenizer tests need
//! `scripts/fetch-test-data.sh` to have been run (or `EDGE_TEST_DATA` set).

use std::num::NonZeroU32;
use std::path::Path;
use std::sync::OnceLock;

use edge::synth::{
    write_gguf, SynthArch, SynthSpec, SynthVocab, LLAMA4_CHAT_TEMPLATE, QWEN3_CHAT_TEMPLATE,
};
use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::sampling::LlamaSampler;

/// llama.cpp's backend can be initialised once per process; every test shares it.
fn backend() -> &'static LlamaBackend {
    static BACKEND: OnceLock<LlamaBackend> = OnceLock::new();
    BACKEND.get_or_init(|| {
        llama_cpp_2::send_logs_to_tracing(
            llama_cpp_2::LogOptions::default().with_logs_enabled(false),
        );
        LlamaBackend::init().expect("llama.cpp backend init")
    })
}

fn load(path: &Path) -> LlamaModel {
    LlamaModel::load_from_file(backend(), path, &LlamaModelParams::default())
        .unwrap_or_else(|e| panic!("llama.cpp failed to load {}: {e}", path.display()))
}

/// Greedy-decodes `n` tokens after `prompt`; panics if an end-of-generation token comes out.
fn greedy(model: &LlamaModel, prompt: &str, n: usize) -> Vec<i32> {
    let vocab = model.vocab();
    let prompt_tokens = vocab.tokenize(prompt.as_bytes(), true, true);
    assert!(!prompt_tokens.is_empty());
    let params = LlamaContextParams::default()
        .with_n_ctx(NonZeroU32::new(256))
        .with_n_batch(256)
        .with_n_threads(2)
        .with_n_threads_batch(2);
    let mut ctx = model.new_context(backend(), params).expect("context");
    let mut batch = LlamaBatch::new(256, 1);
    let last = prompt_tokens.len() - 1;
    for (i, &t) in prompt_tokens.iter().enumerate() {
        batch.add(t, i as i32, &[0], i == last).unwrap();
    }
    ctx.decode(&mut batch).expect("decode prompt");

    let mut sampler = LlamaSampler::greedy();
    let start = prompt_tokens.len() as i32;
    let mut out = Vec::with_capacity(n);
    for pos in start..start + n as i32 {
        let tok = sampler.sample(&ctx, batch.n_tokens() - 1);
        assert!(
            !vocab.is_eog(tok),
            "greedy decoding produced end-of-generation token {tok} after {out:?}"
        );
        out.push(tok.0);
        batch.clear();
        batch.add(tok, pos, &[0], true).unwrap();
        ctx.decode(&mut batch).expect("decode");
    }
    out
}

/// Writes `spec` twice, checks the files are byte-identical, then loads the model and checks
/// that greedy generation is deterministic and never stops.
fn check_toy(arch: SynthArch, n_vocab: i32) {
    let dir = tempfile::tempdir().unwrap();
    let spec = SynthSpec::new(arch);
    let a = dir.path().join("a.gguf");
    let b = dir.path().join("b.gguf");
    write_gguf(&spec, &a).unwrap();
    write_gguf(&spec, &b).unwrap();
    let bytes = std::fs::read(&a).unwrap();
    assert!(
        bytes == std::fs::read(&b).unwrap(),
        "{arch}: same spec, different bytes"
    );
    // No temporary files are left behind.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2);

    let mut other = spec.clone();
    other.seed += 1;
    let c = dir.path().join("c.gguf");
    write_gguf(&other, &c).unwrap();
    assert!(
        bytes != std::fs::read(&c).unwrap(),
        "{arch}: the seed changes nothing"
    );

    let model = load(&a);
    assert_eq!(model.n_layer(), spec.n_layer, "{arch}");
    assert_eq!(model.n_vocab(), n_vocab, "{arch}");
    assert_eq!(model.n_embd(), spec.n_embd as i32, "{arch}");
    assert_eq!(model.n_head_kv(), spec.n_head_kv, "{arch}");

    let template = model.chat_template(None).expect("chat template");
    let expected = match arch {
        SynthArch::Llama4 => LLAMA4_CHAT_TEMPLATE,
        _ => QWEN3_CHAT_TEMPLATE,
    };
    assert_eq!(template.to_str().unwrap(), expected, "{arch}");

    let first = greedy(&model, "Hello world, the answer is", 16);
    let second = greedy(&model, "Hello world, the answer is", 16);
    assert_eq!(
        first, second,
        "{arch}: greedy decoding is not deterministic"
    );
    assert_eq!(first.len(), 16);

    eprintln!("{arch}: {first:?}");

    // The seed changes the output too.
    let other_model = load(&c);
    let third = greedy(&other_model, "Hello world, the answer is", 16);
    assert_ne!(first, third, "{arch}: the seed does not change the output");

    // Every layer matters: one more layer (the others keep their weights, each tensor has its
    // own random stream) changes the output.
    let mut deeper = spec.clone();
    deeper.n_layer += 1;
    let d = dir.path().join("d.gguf");
    write_gguf(&deeper, &d).unwrap();
    let deeper_model = load(&d);
    assert_eq!(deeper_model.n_layer(), deeper.n_layer);
    let fourth = greedy(&deeper_model, "Hello world, the answer is", 16);
    assert_ne!(
        first, fourth,
        "{arch}: an extra layer does not change the output"
    );
}

#[test]
fn toy_qwen3_loads_and_generates() {
    check_toy(SynthArch::Qwen3, 303);
}

#[test]
fn toy_qwen3moe_loads_and_generates() {
    check_toy(SynthArch::Qwen3Moe, 303);
}

#[test]
fn toy_llama4_loads_and_generates() {
    check_toy(SynthArch::Llama4, 304);
}

#[test]
fn toy_special_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("q.gguf");
    write_gguf(&SynthSpec::new(SynthArch::Qwen3), &path).unwrap();
    let model = load(&path);
    let vocab = model.vocab();
    let one = |s: &str| {
        let t = vocab.tokenize(s.as_bytes(), false, true);
        assert_eq!(t.len(), 1, "{s:?} -> {t:?}");
        t[0]
    };
    let im_end = one("<|im_end|>");
    assert_eq!(vocab.eos(), im_end);
    assert!(vocab.is_eog(im_end));
    assert!(vocab.is_control(one("<|im_start|>")));
    assert!(!vocab.is_control(one("<think>")));
    assert!(!vocab.should_add_bos());

    let path = dir.path().join("l.gguf");
    write_gguf(&SynthSpec::new(SynthArch::Llama4), &path).unwrap();
    let model = load(&path);
    let vocab = model.vocab();
    let eot = vocab.tokenize(b"<|eot|>", false, true);
    assert_eq!(eot.len(), 1);
    assert_eq!(vocab.eos(), eot[0]);
    assert!(vocab.is_eog(eot[0]));
    assert!(vocab.should_add_bos());
    let with_bos = vocab.tokenize(b"hi", true, true);
    assert_eq!(with_bos[0], vocab.bos());
}

/// Where `scripts/fetch-test-data.sh` puts the Qwen 3 tokenizer files.
fn qwen3_tokenizer_files() -> SynthVocab {
    SynthVocab::Qwen3Files {
        tokenizer_json: edge::test_data::require("qwen3-tokenizer/tokenizer.json"),
        tokenizer_config_json: edge::test_data::require("qwen3-tokenizer/tokenizer_config.json"),
    }
}

fn check_qwen3_tokenizer(arch: SynthArch) {
    let dir = tempfile::tempdir().unwrap();
    let mut spec = SynthSpec::new(arch);
    spec.vocab = qwen3_tokenizer_files();
    let path = dir.path().join("m.gguf");
    let t0 = std::time::Instant::now();
    write_gguf(&spec, &path).unwrap();
    eprintln!(
        "{arch} with the Qwen 3 tokenizer: {} bytes in {:?}",
        std::fs::metadata(&path).unwrap().len(),
        t0.elapsed()
    );

    let model = load(&path);
    assert_eq!(model.n_vocab(), 151_669, "{arch}");
    assert_eq!(model.n_layer(), spec.n_layer, "{arch}");
    let vocab = model.vocab();
    let ids = |s: &str, special: bool| -> Vec<i32> {
        vocab
            .tokenize(s.as_bytes(), false, special)
            .iter()
            .map(|t| t.0)
            .collect()
    };
    assert_eq!(ids("<think>", true), [151667], "{arch}");
    assert_eq!(ids("</think>", true), [151668], "{arch}");
    assert_eq!(ids("<|im_end|>", true), [151645], "{arch}");
    assert_eq!(ids("<|im_start|>", true), [151644], "{arch}");
    assert_eq!(ids("Hello world", false), [9707, 1879], "{arch}");
    assert_eq!(vocab.eos().0, 151645, "{arch}");
    assert!(!vocab.should_add_bos(), "{arch}");
    let template = model.chat_template(None).expect("chat template");
    assert!(template.to_str().unwrap().contains("enable_thinking"));

    let out = greedy(&model, "<|im_start|>user\nHello world<|im_end|>\n", 16);
    assert_eq!(out.len(), 16);
    eprintln!("{arch} with the Qwen 3 tokenizer: {out:?}");
}

#[test]
fn qwen3_with_real_tokenizer() {
    check_qwen3_tokenizer(SynthArch::Qwen3);
}

#[test]
fn qwen3moe_with_real_tokenizer() {
    check_qwen3_tokenizer(SynthArch::Qwen3Moe);
}
