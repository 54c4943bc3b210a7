//! Tokenizers embedded in synthetic models: a toy GPT-2 byte-level BPE, or Qwen 3's real one.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;

use anyhow::{bail, Context, Result};
use serde::Deserialize;

use super::arch::{SynthArch, SynthVocab};
use super::templates::{LLAMA4_CHAT_TEMPLATE, QWEN3_CHAT_TEMPLATE};

/// `tokenizer.ggml.token_type` values (llama.cpp's `llama_token_type`).
pub(crate) const TOKEN_NORMAL: i32 = 1;
pub(crate) const TOKEN_CONTROL: i32 = 3;
pub(crate) const TOKEN_USER_DEFINED: i32 = 4;
pub(crate) const TOKEN_UNUSED: i32 = 5;

/// Token texts llama.cpp (llama-vocab.cpp, `special_eog_ids`) treats as end-of-generation
/// whatever their token type.
const EOG_TEXTS: &[&str] = &[
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<|return|>",
    "<|call|>",
    "<|flush|>",
    "<|calls|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "</s>",
    "<|eom_id|>",
    "<EOT>",
    "_<EOT>",
    "[EOT]",
    "[EOS]",
    "<|end_of_text|>",
    "<end_of_utterance>",
    "<eos>",
    "<turn|>",
    "<|tool_response>",
    "<\u{ff5c}end\u{2581}of\u{2581}sentence\u{ff5c}>",
    "[e~[",
    "<|fim_pad|>",
    "<|repo_name|>",
    "<|fim_repo|>",
    "<|file_sep|>",
];

/// Number of BPE merges learnt for the toy vocabulary.
const TOY_MERGES: usize = 40;

/// A small English corpus the toy merges are learnt from.
const TOY_CORPUS: &str = "\
Hello world! This is the edge runtime. It runs the model on the device at the edge of the \
network. The quick brown fox jumps over the lazy dog. Then the dog thinks and the fox \
answers. What is the time there? The answer is in the question, and the question is in \
the answer. Hello there, how are you? I think that the world is the one thing that we \
share. There is nothing in the world that is not in the mind. Write the answer in one \
line. The assistant and the user talk in turns, then the tool is called with the \
arguments, and the tool returns the result to the assistant.";

/// Everything the GGUF needs to describe a tokenizer.
#[derive(Debug, Clone)]
pub(crate) struct Vocab {
    pub tokens: Vec<String>,
    pub types: Vec<i32>,
    pub merges: Vec<String>,
    pub bos: u32,
    pub eos: u32,
    pub pad: u32,
    pub eot: Option<u32>,
    pub add_bos: bool,
    pub pre: &'static str,
    /// The family's chat template (before any override from the spec).
    pub chat_template: String,
}

impl Vocab {
    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    /// Ids whose lm-head rows are zeroed so greedy decoding never picks them: the CONTROL
    /// tokens, and the tokens llama.cpp makes end-of-generation by their text whatever their
    /// type (Qwen's vocabulary has a plain `</s>`, id 128247).
    pub fn head_zero_ids(&self) -> Vec<u32> {
        self.types
            .iter()
            .zip(&self.tokens)
            .enumerate()
            .filter(|&(_, (&ty, text))| ty == TOKEN_CONTROL || EOG_TEXTS.contains(&text.as_str()))
            .map(|(i, _)| i as u32)
            .collect()
    }

    fn id_of(&self, text: &str) -> Result<u32> {
        self.tokens
            .iter()
            .position(|t| t == text)
            .map(|i| i as u32)
            .with_context(|| format!("token {text:?} is not in the vocabulary"))
    }
}

pub(crate) fn build(arch: SynthArch, vocab: &SynthVocab) -> Result<Vocab> {
    match vocab {
        SynthVocab::Toy => Ok(toy(arch)),
        SynthVocab::Qwen3Files {
            tokenizer_json,
            tokenizer_config_json,
        } => {
            if arch == SynthArch::Llama4 {
                bail!("the Qwen 3 tokenizer can only be used with the qwen3 and qwen3moe architectures");
            }
            qwen3_files(tokenizer_json, tokenizer_config_json)
        }
    }
}

/// GPT-2's `bytes_to_unicode`: the printable character that stands for each byte.
pub(crate) fn bytes_to_unicode() -> [char; 256] {
    let mut printable = [false; 256];
    for b in (b'!'..=b'~').chain(0xA1..=0xAC).chain(0xAE..=0xFF) {
        printable[b as usize] = true;
    }
    let mut map = ['\0'; 256];
    let mut n = 0u32;
    for b in 0..256usize {
        map[b] = if printable[b] {
            char::from(b as u8)
        } else {
            n += 1;
            char::from_u32(255 + n).expect("valid char")
        };
    }
    map
}

/// Learns `n` byte-level BPE merges from `corpus`, deterministically.
/// Returns the merges as `(left, right)` pairs in the byte-level alphabet.
fn learn_merges(corpus: &str, n: usize) -> Vec<(String, String)> {
    let b2u = bytes_to_unicode();
    // Pre-tokenize like GPT-2: an optional leading space followed by a run of letters.
    let mut words: BTreeMap<String, u32> = BTreeMap::new();
    let bytes = corpus.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let start = i;
        if bytes[i] == b' ' {
            i += 1;
        }
        let letters = i;
        while i < bytes.len() && bytes[i].is_ascii_alphabetic() {
            i += 1;
        }
        if i > letters {
            let w: String = bytes[start..i].iter().map(|&b| b2u[b as usize]).collect();
            *words.entry(w).or_default() += 1;
        } else {
            i = letters.max(start + 1);
        }
    }
    let mut words: Vec<(Vec<String>, u32)> = words
        .into_iter()
        .map(|(w, c)| (w.chars().map(String::from).collect(), c))
        .collect();

    let mut merges = Vec::with_capacity(n);
    while merges.len() < n {
        let mut counts: BTreeMap<(&str, &str), u32> = BTreeMap::new();
        for (syms, c) in &words {
            for p in syms.windows(2) {
                *counts.entry((p[0].as_str(), p[1].as_str())).or_default() += c;
            }
        }
        // Most frequent pair; ties go to the smallest pair (BTreeMap order), so it is deterministic.
        let Some(((a, b), _)) = counts.iter().fold(
            None,
            |best: Option<(&(&str, &str), u32)>, (k, &v)| match best {
                Some((_, bv)) if bv >= v => best,
                _ => Some((k, v)),
            },
        ) else {
            break;
        };
        let (a, b) = (a.to_string(), b.to_string());
        for (syms, _) in &mut words {
            let mut out = Vec::with_capacity(syms.len());
            let mut j = 0;
            while j < syms.len() {
                if j + 1 < syms.len() && syms[j] == a && syms[j + 1] == b {
                    out.push(format!("{a}{b}"));
                    j += 2;
                } else {
                    out.push(std::mem::take(&mut syms[j]));
                    j += 1;
                }
            }
            *syms = out;
        }
        merges.push((a, b));
    }
    merges
}

/// 256 byte tokens (id = byte value, text from `bytes_to_unicode`), the merged tokens, then the
/// family's special tokens.
fn toy(arch: SynthArch) -> Vocab {
    let b2u = bytes_to_unicode();
    let mut tokens: Vec<String> = b2u.iter().map(|c| c.to_string()).collect();
    let mut types = vec![TOKEN_NORMAL; 256];
    let mut seen: HashSet<String> = tokens.iter().cloned().collect();
    let mut merges = Vec::new();
    for (a, b) in learn_merges(TOY_CORPUS, TOY_MERGES) {
        let merged = format!("{a}{b}");
        if seen.insert(merged.clone()) {
            tokens.push(merged);
            types.push(TOKEN_NORMAL);
        }
        merges.push(format!("{a} {b}"));
    }

    let (specials, pre, template): (&[(&str, i32)], _, _) = match arch {
        SynthArch::Qwen3 | SynthArch::Qwen3Moe => (
            &[
                ("<|endoftext|>", TOKEN_CONTROL),
                ("<|im_start|>", TOKEN_CONTROL),
                ("<|im_end|>", TOKEN_CONTROL),
                ("<tool_call>", TOKEN_USER_DEFINED),
                ("</tool_call>", TOKEN_USER_DEFINED),
                ("<think>", TOKEN_USER_DEFINED),
                ("</think>", TOKEN_USER_DEFINED),
            ],
            "qwen2",
            QWEN3_CHAT_TEMPLATE,
        ),
        SynthArch::Llama4 => (
            &[
                ("<|begin_of_text|>", TOKEN_CONTROL),
                ("<|end_of_text|>", TOKEN_CONTROL),
                ("<|header_start|>", TOKEN_CONTROL),
                ("<|header_end|>", TOKEN_CONTROL),
                ("<|eot|>", TOKEN_CONTROL),
                ("<|eom|>", TOKEN_CONTROL),
                ("<|python_start|>", TOKEN_CONTROL),
                ("<|python_end|>", TOKEN_CONTROL),
            ],
            "llama4",
            LLAMA4_CHAT_TEMPLATE,
        ),
    };
    for &(text, ty) in specials {
        tokens.push(text.to_string());
        types.push(ty);
    }

    let mut v = Vocab {
        tokens,
        types,
        merges,
        bos: 0,
        eos: 0,
        pad: 0,
        eot: None,
        add_bos: false,
        pre,
        chat_template: template.to_string(),
    };
    let id = |v: &Vocab, t: &str| v.id_of(t).expect("special token present");
    match arch {
        SynthArch::Qwen3 | SynthArch::Qwen3Moe => {
            v.bos = id(&v, "<|endoftext|>");
            v.pad = v.bos;
            v.eos = id(&v, "<|im_end|>");
        }
        SynthArch::Llama4 => {
            v.bos = id(&v, "<|begin_of_text|>");
            v.eos = id(&v, "<|eot|>");
            v.eot = Some(v.eos);
            v.pad = id(&v, "<|end_of_text|>");
            v.add_bos = true;
        }
    }
    v
}

#[derive(Deserialize)]
struct TokenizerJson {
    model: TokenizerModel,
    #[serde(default)]
    added_tokens: Vec<AddedToken>,
}

#[derive(Deserialize)]
struct TokenizerModel {
    #[serde(rename = "type")]
    kind: Option<String>,
    vocab: HashMap<String, u32>,
    merges: Vec<Merge>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Merge {
    Joined(String),
    Pair([String; 2]),
}

#[derive(Deserialize)]
struct AddedToken {
    id: u32,
    content: String,
    special: bool,
}

/// What convert_hf_to_gguf.py calls `does_token_look_special`.
fn looks_special(t: &str) -> bool {
    (t.starts_with("<|") && t.ends_with("|>"))
        || (t.starts_with("<\u{ff5c}") && t.ends_with("\u{ff5c}>"))
        || (t.starts_with("<unused") && t.ends_with('>'))
        || matches!(t, "<pad>" | "<mask>" | "<2mass>" | "[@BOS@]")
}

/// A token named in tokenizer_config.json: a string, an AddedToken object, or null.
fn config_token(cfg: &serde_json::Value, key: &str) -> Option<String> {
    match cfg.get(key)? {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Object(o) => o.get("content")?.as_str().map(str::to_string),
        _ => None,
    }
}

/// Qwen 3's real tokenizer from its Hugging Face files, converted the way convert_hf_to_gguf.py
/// does: base vocab NORMAL; added tokens CONTROL when `special` (or when they look special, like
/// `<|fim_pad|>`), USER_DEFINED otherwise; id gaps become `[PAD{id}]` UNUSED tokens.
fn qwen3_files(tokenizer_json: &Path, tokenizer_config_json: &Path) -> Result<Vocab> {
    let text = std::fs::read(tokenizer_json)
        .with_context(|| format!("reading {}", tokenizer_json.display()))?;
    let tj: TokenizerJson = serde_json::from_slice(&text)
        .with_context(|| format!("parsing {}", tokenizer_json.display()))?;
    drop(text);
    if let Some(kind) = &tj.model.kind {
        if kind != "BPE" {
            bail!(
                "{}: expected a BPE model, found {kind:?}",
                tokenizer_json.display()
            );
        }
    }
    let cfg_text = std::fs::read(tokenizer_config_json)
        .with_context(|| format!("reading {}", tokenizer_config_json.display()))?;
    let cfg: serde_json::Value = serde_json::from_slice(&cfg_text)
        .with_context(|| format!("parsing {}", tokenizer_config_json.display()))?;

    let max_id = tj
        .model
        .vocab
        .values()
        .chain(tj.added_tokens.iter().map(|t| &t.id))
        .copied()
        .max()
        .context("empty vocabulary")?;
    let n = max_id as usize + 1;
    let mut tokens: Vec<Option<String>> = vec![None; n];
    let mut types = vec![TOKEN_UNUSED; n];
    for (text, &id) in &tj.model.vocab {
        if tokens[id as usize].replace(text.clone()).is_some() {
            bail!("token id {id} appears twice in the vocabulary");
        }
        types[id as usize] = TOKEN_NORMAL;
    }
    for t in &tj.added_tokens {
        let slot = &mut tokens[t.id as usize];
        match slot {
            Some(existing) if *existing != t.content => bail!(
                "added token {:?} has id {} which the vocabulary gives to {existing:?}",
                t.content,
                t.id
            ),
            _ => *slot = Some(t.content.clone()),
        }
        types[t.id as usize] = if t.special || looks_special(&t.content) {
            TOKEN_CONTROL
        } else {
            TOKEN_USER_DEFINED
        };
    }
    let tokens: Vec<String> = tokens
        .into_iter()
        .enumerate()
        .map(|(id, t)| t.unwrap_or_else(|| format!("[PAD{id}]")))
        .collect();
    let merges = tj
        .model
        .merges
        .into_iter()
        .map(|m| match m {
            Merge::Joined(s) => s,
            Merge::Pair([a, b]) => format!("{a} {b}"),
        })
        .collect();

    let chat_template = match cfg.get("chat_template") {
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(_) => bail!(
            "{}: chat_template is not a single string",
            tokenizer_config_json.display()
        ),
        None => QWEN3_CHAT_TEMPLATE.to_string(),
    };

    let mut v = Vocab {
        tokens,
        types,
        merges,
        bos: 0,
        eos: 0,
        pad: 0,
        eot: None,
        add_bos: cfg
            .get("add_bos_token")
            .and_then(serde_json::Value::as_bool)
            .unwrap_or(false),
        pre: "qwen2",
        chat_template,
    };
    let lookup = |v: &Vocab, key: &str, default: &str| -> Result<u32> {
        let name = config_token(&cfg, key).unwrap_or_else(|| default.to_string());
        v.id_of(&name)
            .with_context(|| format!("{key} of {}", tokenizer_config_json.display()))
    };
    v.eos = lookup(&v, "eos_token", "<|im_end|>")?;
    v.pad = lookup(&v, "pad_token", "<|endoftext|>")?;
    // Qwen has no BOS (`bos_token: null`); like convert_hf_to_gguf.py, use the pad token.
    v.bos = match config_token(&cfg, "bos_token") {
        Some(_) => lookup(&v, "bos_token", "")?,
        None => v.pad,
    };
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_alphabet_matches_gpt2() {
        let m = bytes_to_unicode();
        assert_eq!(m[b'A' as usize], 'A');
        assert_eq!(m[b' ' as usize], '\u{120}'); // 'Ġ'
        assert_eq!(m[b'\n' as usize], '\u{10a}'); // 'Ċ'
        let distinct: HashSet<char> = m.iter().copied().collect();
        assert_eq!(distinct.len(), 256);
    }

    /// Needs `scripts/fetch-test-data.sh`; fails, naming it, when the files are missing.
    #[test]
    fn qwen3_files_vocab() {
        let tj = crate::test_data::require("qwen3-tokenizer/tokenizer.json");
        let cfg = crate::test_data::require("qwen3-tokenizer/tokenizer_config.json");
        let v = qwen3_files(&tj, &cfg).unwrap();
        assert_eq!(v.len(), 151_669);
        assert_eq!(v.merges.len(), 151_387);
        assert!(!v.tokens.iter().any(|t| t.starts_with("[PAD")));
        assert_eq!(v.tokens[9707], "Hello");
        assert_eq!(v.tokens[1879], "\u{120}world");
        assert_eq!((v.bos, v.eos, v.pad), (151_643, 151_645, 151_643));
        assert!(!v.add_bos);
        assert_eq!(v.chat_template, QWEN3_CHAT_TEMPLATE);
        let ty = |id: usize| v.types[id];
        assert_eq!(ty(151_644), TOKEN_CONTROL); // <|im_start|>
        assert_eq!(ty(151_659), TOKEN_CONTROL); // <|fim_prefix|>: looks special
        assert_eq!(ty(151_657), TOKEN_USER_DEFINED); // <tool_call>
        assert_eq!(ty(151_667), TOKEN_USER_DEFINED); // <think>
        assert_eq!(ty(128_247), TOKEN_NORMAL); // "</s>"
        let zero = v.head_zero_ids();
        assert!(zero.contains(&128_247));
        assert_eq!(
            zero.len(),
            1 + v.types.iter().filter(|&&t| t == TOKEN_CONTROL).count()
        );
    }

    #[test]
    fn toy_vocab_shape() {
        let q = toy(SynthArch::Qwen3);
        assert_eq!(q.len(), 256 + TOY_MERGES + 7);
        assert_eq!(q.merges.len(), TOY_MERGES);
        assert_eq!(q.tokens[q.eos as usize], "<|im_end|>");
        assert_eq!(q.tokens[q.bos as usize], "<|endoftext|>");
        assert_eq!(q.head_zero_ids().len(), 3);
        let l = toy(SynthArch::Llama4);
        assert_eq!(l.len(), 256 + TOY_MERGES + 8);
        assert_eq!(l.tokens[l.eos as usize], "<|eot|>");
        assert!(l.add_bos);
        // Every merge joins two existing tokens into an existing token.
        let all: HashSet<&str> = q.tokens.iter().map(String::as_str).collect();
        for m in &q.merges {
            let (a, b) = m.split_once(' ').unwrap();
            assert!(all.contains(a) && all.contains(b));
            assert!(all.contains(format!("{a}{b}").as_str()));
        }
    }
}
