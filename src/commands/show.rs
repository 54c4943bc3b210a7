//! `edge show MODEL`: what a GGUF is, from its header alone.

use std::process::ExitCode;

use anyhow::{Context, Result};
use serde_json::json;

use crate::chat_template::{ChatTemplate, SpecialTokens, ThinkingMode};
use crate::gguf_info::{GgufFile, ModelFacts};
use crate::resolve::resolve_model;
use crate::term::{human_bytes, human_count};

#[derive(Debug, clap::Args)]
pub struct ShowArgs {
    /// Model name or path to a .gguf file (a header-only GGUF works too).
    pub model: String,
    /// Print the full tensor table.
    #[arg(long)]
    pub tensors: bool,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: ShowArgs) -> Result<ExitCode> {
    let path = resolve_model(&args.model)?;
    let gguf = GgufFile::open_header(&path)?;
    let header_only = gguf.is_header_only();
    if !header_only {
        gguf.check_data_present(gguf.file_size)?;
    }
    let facts = ModelFacts::from_gguf(&gguf)
        .map_err(anyhow::Error::msg)
        .with_context(|| path.display().to_string())?;
    let thinking = gguf.get_str("tokenizer.chat_template").map(|src| {
        match ChatTemplate::new(src, SpecialTokens::default()) {
            Ok(t) => t.caps().thinking,
            Err(_) => ThinkingMode::None,
        }
    });

    if args.json {
        let mut v = json!({
            "path": path.display().to_string(),
            "header_only": header_only,
            "facts": facts,
            "chat_template": thinking.is_some(),
            "thinking": thinking.map(thinking_label),
        });
        if args.tensors {
            v["tensors"] = gguf
                .tensors
                .iter()
                .map(|t| json!({"name": t.name, "type": t.ggml_type.to_string(), "dims": t.dims, "bytes": t.bytes}))
                .collect();
        }
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(ExitCode::SUCCESS);
    }

    let opt = |v: Option<u64>| v.map(|n| n.to_string()).unwrap_or_else(|| "-".into());
    println!("model         {}", path.display());
    if let Some(name) = &facts.name {
        println!("name          {name}");
    }
    println!("architecture  {}", facts.architecture);
    println!(
        "parameters    {} ({})",
        human_count(facts.n_params),
        facts.n_params
    );
    println!(
        "file size     {} ({} bytes){}",
        human_bytes(facts.file_size),
        facts.file_size,
        if header_only {
            ", header only: no tensor data"
        } else {
            ""
        }
    );
    println!("layers        {}", opt(facts.n_layer));
    println!("embedding     {}", opt(facts.n_embd));
    println!(
        "heads         {} (kv heads {})",
        opt(facts.n_head),
        opt(facts.n_head_kv)
    );
    println!("context       {}", opt(facts.context_length));
    println!("vocabulary    {}", opt(facts.vocab_size));
    match &facts.moe {
        Some(moe) => {
            println!(
                "experts       {} total, {} active per token, {} shared",
                moe.n_expert, moe.n_expert_used, moe.n_expert_shared
            );
            println!("expert ffn    {}", opt(moe.expert_ff));
            println!(
                "moe layers    {} of {}: {}",
                moe.moe_layers.len(),
                opt(facts.n_layer),
                ranges(&moe.moe_layers)
            );
        }
        None => println!("experts       none (dense)"),
    }
    println!(
        "chat template {}",
        if thinking.is_some() {
            "yes"
        } else {
            "no (edge falls back to ChatML)"
        }
    );
    println!(
        "thinking      {}",
        thinking.map(thinking_label).unwrap_or("no")
    );
    println!("quant mix:");
    for q in &facts.quant_mix {
        let share = 100.0 * q.bytes as f64
            / facts.quant_mix.iter().map(|q| q.bytes).sum::<u64>().max(1) as f64;
        println!(
            "  {:<8} {:>12} {:>5.1}%  {} tensors",
            q.ggml_type,
            human_bytes(q.bytes),
            share,
            q.n_tensors
        );
    }
    if args.tensors {
        println!("tensors:");
        for t in &gguf.tensors {
            println!(
                "  {:<40} {:<8} {:>24} {:>12}",
                t.name,
                t.ggml_type.to_string(),
                format!("{:?}", t.dims),
                t.bytes
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn thinking_label(mode: ThinkingMode) -> &'static str {
    match mode {
        ThinkingMode::None => "no",
        ThinkingMode::Switchable => "yes, switchable (enable_thinking)",
        ThinkingMode::Always => "yes, always on",
    }
}

/// "1, 3, 5-9" for a sorted list of layer indices.
fn ranges(layers: &[u32]) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut i = 0;
    while i < layers.len() {
        let start = layers[i];
        let mut end = start;
        while i + 1 < layers.len() && layers[i + 1] == end + 1 {
            i += 1;
            end = layers[i];
        }
        out.push(if start == end {
            start.to_string()
        } else {
            format!("{start}-{end}")
        });
        i += 1;
    }
    out.join(", ")
}
