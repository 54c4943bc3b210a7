//! Chat template rendering against real templates (vendored by llama.cpp) and Qwen 3's
//! tokenizer_config.json. Test data: `$EDGE_TEST_DATA`, default `target/test-data`
//! (fetched by `scripts/fetch-test-data.sh`).

use std::path::{Path, PathBuf};

use edge::chat_template::{
    ChatTemplate, Message, RenderOptions, SpecialTokens, TemplateError, ThinkingMode,
};

fn data_dir() -> PathBuf {
    edge::test_data::require("templates");
    edge::test_data::require("qwen3-tokenizer/tokenizer_config.json");
    edge::test_data::dir()
}

fn qwen3_template() -> ChatTemplate {
    let path = data_dir().join("qwen3-tokenizer/tokenizer_config.json");
    let text = std::fs::read_to_string(&path).unwrap();
    let cfg: serde_json::Value = serde_json::from_str(&text).unwrap();
    let source = cfg["chat_template"]
        .as_str()
        .expect("chat_template is a string");
    let tokens = SpecialTokens {
        bos: cfg["bos_token"].as_str().map(str::to_string),
        eos: cfg["eos_token"].as_str().map(str::to_string),
        pad: cfg["pad_token"].as_str().map(str::to_string),
        unk: cfg["unk_token"].as_str().map(str::to_string),
    };
    ChatTemplate::new(source, tokens).expect("Qwen3 template compiles")
}

fn gen_opts(enable_thinking: Option<bool>) -> RenderOptions {
    RenderOptions {
        add_generation_prompt: true,
        enable_thinking,
        ..Default::default()
    }
}

fn inline(source: &str) -> ChatTemplate {
    ChatTemplate::new(source, SpecialTokens::default()).unwrap()
}

fn template_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "jinja"))
        .collect();
    files.sort();
    files
}

fn assert_one_line(err: &TemplateError) {
    let text = err.to_string();
    assert!(!text.trim().is_empty(), "empty error");
    assert!(
        !text.contains('\n') && !text.contains('\r'),
        "multi-line error: {text:?}"
    );
}

#[test]
fn real_templates_render() {
    let dir = data_dir().join("templates");
    let files = template_files(&dir);
    assert!(
        files.len() >= 50,
        "expected the vendored templates in {}",
        dir.display()
    );
    let conversation = [
        Message::system("You are a helpful assistant."),
        Message::user("What is 2+2?"),
        Message::assistant("2+2 is 4."),
        Message::user("And 3+3?"),
    ];
    let tokens = SpecialTokens {
        bos: Some("<|begin_of_text|>".into()),
        eos: Some("<|eot_id|>".into()),
        pad: None,
        unk: None,
    };
    let mut ok = 0;
    let mut failures = Vec::new();
    for path in &files {
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        let source = std::fs::read_to_string(path).unwrap();
        let result = ChatTemplate::new(&source, tokens.clone())
            .and_then(|t| t.render(&conversation, &gen_opts(None)).map(|out| (t, out)));
        match result {
            Ok((t, out)) => {
                assert!(
                    out.contains("And 3+3?"),
                    "{name}: last user message missing:\n{out}"
                );
                let caps = t.caps();
                println!(
                    "ok    {name} (thinking: {:?}, prompt_opens_think: {}, no_think_prefills_empty_block: {})",
                    caps.thinking, caps.prompt_opens_think, caps.no_think_prefills_empty_block
                );
                ok += 1;
            }
            Err(e) => {
                assert_one_line(&e);
                println!("FAIL  {name}: {e}");
                failures.push((name, e.to_string()));
            }
        }
    }
    println!("{ok}/{} templates render", files.len());
    for (name, err) in &failures {
        println!("  failed: {name}: {err}");
    }
    let qwen_failures: Vec<_> = failures
        .iter()
        .filter(|(n, _)| n.contains("Qwen"))
        .collect();
    assert!(
        qwen_failures.is_empty(),
        "Qwen templates must render: {qwen_failures:?}"
    );
    assert!(
        ok * 10 >= files.len() * 9,
        "only {ok}/{} templates render: {failures:?}",
        files.len()
    );
}

#[test]
fn qwen3_exact_prompts() {
    let t = qwen3_template();
    let hi = [Message::user("Hi")];
    assert_eq!(
        t.render(&hi, &gen_opts(Some(false))).unwrap(),
        "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"
    );
    for thinking in [Some(true), None] {
        assert_eq!(
            t.render(&hi, &gen_opts(thinking)).unwrap(),
            "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n",
            "enable_thinking={thinking:?}"
        );
    }
    // no generation prompt
    assert_eq!(
        t.render(&hi, &RenderOptions::default()).unwrap(),
        "<|im_start|>user\nHi<|im_end|>\n"
    );
}

#[test]
fn qwen3_strips_reasoning_from_history() {
    let t = qwen3_template();
    let history = [
        Message::system("Be brief."),
        Message::user("Hi"),
        Message::assistant("<think>reasoning</think>answer"),
        Message::user("Again"),
    ];
    assert_eq!(
        t.render(&history, &gen_opts(None)).unwrap(),
        "<|im_start|>system\nBe brief.<|im_end|>\n\
         <|im_start|>user\nHi<|im_end|>\n\
         <|im_start|>assistant\nanswer<|im_end|>\n\
         <|im_start|>user\nAgain<|im_end|>\n\
         <|im_start|>assistant\n"
    );
    // reasoning_content on a history turn is dropped as well
    let mut with_field = history.clone();
    with_field[2] = Message {
        reasoning_content: Some("hidden".into()),
        ..Message::assistant("answer")
    };
    let out = t.render(&with_field, &gen_opts(None)).unwrap();
    assert!(
        !out.contains("hidden") && out.contains("<|im_start|>assistant\nanswer<|im_end|>"),
        "{out}"
    );
}

#[test]
fn qwen3_caps() {
    let t = qwen3_template();
    let caps = t.caps();
    assert_eq!(caps.thinking, ThinkingMode::Switchable);
    assert!(!caps.prompt_opens_think);
    assert!(caps.no_think_prefills_empty_block);
}

const CHATML_LOOP: &str = "{%- for message in messages %}\
{{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>\\n' }}\
{%- endfor %}";

#[test]
fn thinking_2507_style_is_always() {
    let source = format!(
        "{CHATML_LOOP}{{%- if add_generation_prompt %}}{{{{- '<|im_start|>assistant\\n<think>\\n' }}}}{{%- endif %}}"
    );
    let t = inline(&source);
    assert_eq!(
        t.render(&[Message::user("Hi")], &gen_opts(Some(false)))
            .unwrap(),
        "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n<think>\n"
    );
    let caps = t.caps();
    assert_eq!(caps.thinking, ThinkingMode::Always);
    assert!(caps.prompt_opens_think);
    assert!(!caps.no_think_prefills_empty_block);
}

#[test]
fn vendored_templates_caps() {
    let dir = data_dir().join("templates");
    // (file, thinking, prompt_opens_think, no_think_prefills_empty_block)
    let cases = [
        (
            "Qwen-Qwen3-0.6B.jinja",
            ThinkingMode::Switchable,
            false,
            true,
        ),
        (
            "Qwen-Qwen2.5-7B-Instruct.jinja",
            ThinkingMode::None,
            false,
            false,
        ),
        ("Qwen3-Coder.jinja", ThinkingMode::None, false, false),
        // llama.cpp's copy of QwQ opens <think> and closes it unless enable_thinking is true
        ("Qwen-QwQ-32B.jinja", ThinkingMode::Switchable, true, true),
        (
            "deepseek-ai-DeepSeek-R1-Distill-Llama-8B.jinja",
            ThinkingMode::Always,
            true,
            false,
        ),
        (
            "meta-llama-Llama-3.1-8B-Instruct.jinja",
            ThinkingMode::None,
            false,
            false,
        ),
        (
            "meta-llama-Llama-3.2-3B-Instruct.jinja",
            ThinkingMode::None,
            false,
            false,
        ),
        (
            "meta-llama-Llama-3.3-70B-Instruct.jinja",
            ThinkingMode::None,
            false,
            false,
        ),
    ];
    for (file, thinking, opens, prefills) in cases {
        let source = std::fs::read_to_string(dir.join(file)).unwrap();
        let t = ChatTemplate::new(&source, SpecialTokens::default()).unwrap();
        let caps = t.caps();
        assert_eq!(caps.thinking, thinking, "{file}");
        assert_eq!(caps.prompt_opens_think, opens, "{file}: prompt_opens_think");
        assert_eq!(
            caps.no_think_prefills_empty_block, prefills,
            "{file}: no_think_prefills_empty_block"
        );
    }
}

/// The `tokenizer.chat_template` string of a GGUF file (minimal metadata reader).
fn gguf_chat_template(path: &Path) -> Option<String> {
    use std::io::Read;
    let mut f = std::io::BufReader::new(std::fs::File::open(path).unwrap());
    let u32_ = |f: &mut std::io::BufReader<std::fs::File>| {
        let mut b = [0u8; 4];
        f.read_exact(&mut b).unwrap();
        u32::from_le_bytes(b)
    };
    let u64_ = |f: &mut std::io::BufReader<std::fs::File>| {
        let mut b = [0u8; 8];
        f.read_exact(&mut b).unwrap();
        u64::from_le_bytes(b)
    };
    let string = |f: &mut std::io::BufReader<std::fs::File>| {
        let n = u64_(f) as usize;
        let mut b = vec![0u8; n];
        f.read_exact(&mut b).unwrap();
        String::from_utf8(b).unwrap()
    };
    let skip = |f: &mut std::io::BufReader<std::fs::File>, n: u64| {
        std::io::copy(&mut f.by_ref().take(n), &mut std::io::sink()).unwrap();
    };
    let scalar_size = |t: u32| match t {
        0 | 1 | 7 => 1,
        2 | 3 => 2,
        4..=6 => 4,
        10..=12 => 8,
        other => panic!("unknown GGUF type {other}"),
    };
    assert_eq!(
        u32_(&mut f),
        u32::from_le_bytes(*b"GGUF"),
        "not a GGUF file"
    );
    let _version = u32_(&mut f);
    let _tensors = u64_(&mut f);
    let kv_count = u64_(&mut f);
    for _ in 0..kv_count {
        let key = string(&mut f);
        match u32_(&mut f) {
            8 => {
                let value = string(&mut f);
                if key == "tokenizer.chat_template" {
                    return Some(value);
                }
            }
            9 => {
                let elem = u32_(&mut f);
                let n = u64_(&mut f);
                if elem == 8 {
                    for _ in 0..n {
                        string(&mut f);
                    }
                } else {
                    skip(&mut f, n * scalar_size(elem));
                }
            }
            t => skip(&mut f, scalar_size(t)),
        }
    }
    None
}

#[test]
fn smollm2_gguf_template() {
    let path = data_dir().join("smollm2-135m-instruct-q4_1.gguf");
    let source = gguf_chat_template(&path).expect("SmolLM2 GGUF has a chat template");
    let t = ChatTemplate::new(
        &source,
        SpecialTokens {
            bos: Some("<|im_start|>".into()),
            eos: Some("<|im_end|>".into()),
            pad: Some("<|im_end|>".into()),
            unk: Some("<|endoftext|>".into()),
        },
    )
    .unwrap();
    assert_eq!(t.caps().thinking, ThinkingMode::None);
    assert!(!t.caps().prompt_opens_think && !t.caps().no_think_prefills_empty_block);
    assert_eq!(
        t.render(&[Message::user("Hi")], &gen_opts(Some(false))).unwrap(),
        "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n\
         <|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
    );
}

#[test]
fn instruct_and_llama_style_templates_have_no_thinking() {
    // plain ChatML (Qwen3 Instruct-2507)
    let chatml = inline(&format!(
        "{CHATML_LOOP}{{%- if add_generation_prompt %}}{{{{- '<|im_start|>assistant\\n' }}}}{{%- endif %}}"
    ));
    assert_eq!(chatml.caps().thinking, ThinkingMode::None);
    assert!(!chatml.caps().prompt_opens_think);
    // Instruct-2507 variant that strips <think> from history but never opens it
    let stripping = inline(
        "{%- for m in messages %}{%- set c = m.content %}\
         {%- if m.role == 'assistant' and '</think>' in c %}{%- set c = c.split('</think>')[-1].lstrip('\\n') %}{%- endif %}\
         {{- '<|im_start|>' + m.role + '\\n' + c + '<|im_end|>\\n' }}{%- endfor %}\
         {%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}",
    );
    assert_eq!(stripping.caps().thinking, ThinkingMode::None);
    // Llama 4 style header prompt
    let llama4 = ChatTemplate::new(
        "{{- bos_token }}{%- for m in messages %}{{- '<|header_start|>' + m.role + '<|header_end|>\\n\\n' + m.content | trim + '<|eot|>' }}{%- endfor %}\
         {%- if add_generation_prompt %}{{- '<|header_start|>assistant<|header_end|>\\n\\n' }}{%- endif %}",
        SpecialTokens {
            bos: Some("<|begin_of_text|>".into()),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(llama4.caps().thinking, ThinkingMode::None);
    assert_eq!(
        llama4.render(&[Message::user(" Hi ")], &gen_opts(None)).unwrap(),
        "<|begin_of_text|><|header_start|>user<|header_end|>\n\nHi<|eot|><|header_start|>assistant<|header_end|>\n\n"
    );
    let fallback = inline(edge::chat_template::FALLBACK_CHATML);
    assert_eq!(fallback.caps().thinking, ThinkingMode::None);
}

#[test]
fn template_failing_on_probe_still_compiles() {
    let t = inline("{{ raise_exception('no ' + 'luck') }}");
    assert_eq!(t.caps().thinking, ThinkingMode::None);
    let err = t
        .render(&[Message::user("Hi")], &gen_opts(None))
        .unwrap_err();
    assert!(matches!(err, TemplateError::Render(_)), "{err:?}");
    assert!(err.to_string().contains("no luck"), "{err}");
    assert_one_line(&err);
}

#[test]
fn tojson_matches_python_json_dumps() {
    let t = inline(
        "{%- set obj = {'a': \"x<y>&'\", 'b': 1e-07, 'c': [1.5, -0.0], 'd': '日本'} -%}\
         {{ obj|tojson }}|{{ obj|tojson(indent=2) }}",
    );
    let out = t
        .render(&[Message::user("Hi")], &RenderOptions::default())
        .unwrap();
    let (compact, indented) = out.split_once('|').unwrap();
    assert_eq!(
        compact,
        r#"{"a": "x<y>&'", "b": 1e-07, "c": [1.5, -0.0], "d": "日本"}"#
    );
    assert_eq!(
        indented,
        "{\n  \"a\": \"x<y>&'\",\n  \"b\": 1e-07,\n  \"c\": [\n    1.5,\n    -0.0\n  ],\n  \"d\": \"日本\"\n}"
    );
    // key order of context data is preserved, extra kwargs reach the template
    let t = inline("{{ tools|tojson }}");
    let mut opts = RenderOptions::default();
    opts.extra.insert(
        "tools".into(),
        serde_json::from_str(r#"[{"z": 1, "a": {"y": 0.5, "b": "é"}}]"#).unwrap(),
    );
    assert_eq!(
        t.render(&[], &opts).unwrap(),
        r#"[{"z": 1, "a": {"y": 0.5, "b": "é"}}]"#
    );
    // ensure_ascii as transformers templates pass it
    let t = inline("{{ 'é'|tojson(ensure_ascii=False) }} {{ 'é'|tojson(ensure_ascii=True) }}");
    assert_eq!(
        t.render(&[], &RenderOptions::default()).unwrap(),
        "\"é\" \"\\u00e9\""
    );
}

#[test]
fn raise_exception_is_a_render_error() {
    let t = inline("{% if messages|length > 0 %}{{ raise_exception('boom') }}{% endif %}");
    let err = t
        .render(&[Message::user("Hi")], &RenderOptions::default())
        .unwrap_err();
    assert!(matches!(err, TemplateError::Render(_)), "{err:?}");
    assert!(err.to_string().contains("boom"), "{err}");
    assert_one_line(&err);
}

#[test]
fn syntax_error_is_one_line_with_line_number() {
    let err = ChatTemplate::new("ok\n{% for x in %}\n{% endfor %}", SpecialTokens::default())
        .unwrap_err();
    assert!(matches!(err, TemplateError::Syntax(_)), "{err:?}");
    assert!(err.to_string().contains("line 2"), "{err}");
    assert_one_line(&err);
}

#[test]
fn special_tokens_in_user_text_pass_through() {
    let t = qwen3_template();
    let text = "a <|im_end|>\n<|im_start|>system\nb <think>c</think>";
    let out = t.render(&[Message::user(text)], &gen_opts(None)).unwrap();
    assert_eq!(
        out,
        format!("<|im_start|>user\n{text}<|im_end|>\n<|im_start|>assistant\n")
    );
}

#[test]
fn context_variables() {
    let t = ChatTemplate::new(
        "{{ bos_token }}|{{ eos_token is defined }}|{{ pad_token is defined }}|{{ enable_thinking is defined }}|{{ custom }}|{{ messages[0].keys()|list }}",
        SpecialTokens {
            bos: Some("<s>".into()),
            ..Default::default()
        },
    )
    .unwrap();
    let mut opts = RenderOptions::default();
    opts.extra.insert("custom".into(), serde_json::json!("x"));
    assert_eq!(
        t.render(&[Message::user("Hi")], &opts).unwrap(),
        "<s>|False|False|False|x|['role', 'content']"
    );
    opts.enable_thinking = Some(true);
    let with_reasoning = Message {
        reasoning_content: Some("r".into()),
        ..Message::assistant("a")
    };
    assert_eq!(
        t.render(&[with_reasoning], &opts).unwrap(),
        "<s>|False|False|True|x|['role', 'content', 'reasoning_content']"
    );
}

/// The template limits leave room for real use: Qwen 3's template (one of the heaviest,
/// scanning the history backwards for the last user query) over a 4000-message agent
/// log with long turns renders, within the instruction budget.
#[test]
fn limits_leave_room_for_a_long_real_conversation() {
    let t = qwen3_template();
    let turn = "word ".repeat(400);
    let mut msgs = vec![Message::new("system", "You are terse.")];
    for i in 0..2000 {
        msgs.push(Message::new("user", &format!("{i}: {turn}")));
        msgs.push(Message::new("assistant", &format!("ok {i}")));
    }
    msgs.push(Message::new("user", "last"));
    let out = t.render(&msgs, &gen_opts(Some(false))).unwrap();
    assert!(out.len() > 2000 * turn.len(), "{}", out.len());
    assert!(
        out.ends_with("<|im_start|>assistant\n<think>\n\n</think>\n\n"),
        "{}",
        &out[out.len() - 80..]
    );
}
