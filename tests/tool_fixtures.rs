//! canitoolcall's recorded model outputs (PyPI canitoolcall 0.1.1: qwen3-hermes,
//! qwen3-xml, llama) through edge's reply parser, whole and fed one character at a
//! time (finer than any tokenization), compared as canitoolcall's soft check does:
//! content and reasoning trimmed ("" = absent), arguments as parsed JSON.

mod common;

use std::collections::BTreeMap;

use edge::tools::{Reply, ReplyParser, ToolFormat, ToolSpec};
use serde_json::Value;

/// Fixtures whose expectation contradicts edge's rules, with the rule.
const DISAGREE: &[(&str, &str)] = &[(
    "qwen3-xml/llamacpp-q35-call-inside-think",
    "a call written inside <think> stays reasoning: text inside <think> is never parsed as a call",
)];

fn tools_of(f: &Value) -> Vec<ToolSpec> {
    f["tools"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| {
            let func = t.get("function")?;
            Some(ToolSpec {
                name: func.get("name")?.as_str()?.to_string(),
                parameters: func
                    .get("parameters")
                    .cloned()
                    .unwrap_or(serde_json::json!({"type": "object"})),
                raw: t.clone(),
            })
        })
        .collect()
}

fn soft(s: &str) -> Option<String> {
    let t = s.trim();
    (!t.is_empty()).then(|| t.to_string())
}

fn soft_value(v: &Value) -> Option<String> {
    v.as_str().and_then(soft)
}

fn calls_of(r: &Reply) -> Vec<(String, Value)> {
    r.calls
        .iter()
        .map(|c| {
            (
                c.name.clone(),
                serde_json::from_str(&c.arguments).unwrap_or(Value::Null),
            )
        })
        .collect()
}

fn check(f: &Value, r: &Reply) -> Result<(), String> {
    if let Some(exp) = f.get("expected") {
        let want_calls: Vec<(String, Value)> = exp["tool_calls"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|c| {
                (
                    c["name"].as_str().unwrap_or("").to_string(),
                    c["arguments"].clone(),
                )
            })
            .collect();
        let got = (soft(&r.content), soft(&r.reasoning), calls_of(r));
        let want = (
            soft_value(&exp["content"]),
            soft_value(&exp["reasoning_content"]),
            want_calls,
        );
        return if got == want {
            Ok(())
        } else {
            Err(format!("want {want:?}\n got {got:?}"))
        };
    }
    let err = &f["expected_error"];
    let accept: Vec<&str> = err["accept"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    let passthrough = soft(&(r.reasoning.clone() + &r.content))
        == soft(f["raw_output"].as_str().unwrap_or(""))
        || soft(&r.content) == soft(f["raw_output"].as_str().unwrap_or(""));
    if (accept.contains(&"no_tool_calls") && r.calls.is_empty())
        || (accept.contains(&"content_passthrough") && r.calls.is_empty() && passthrough)
    {
        Ok(())
    } else {
        Err(format!("expected error {accept:?}, got {r:?}"))
    }
}

#[test]
fn canitoolcall_fixtures_parse_whole_and_streamed() {
    let root = common::data_file("canitoolcall");
    let mut report = BTreeMap::new();
    let mut failures = Vec::new();
    for (family, format) in [
        ("qwen3-hermes", ToolFormat::Hermes),
        ("qwen3-xml", ToolFormat::QwenXml),
        ("llama", ToolFormat::Llama),
    ] {
        let mut files: Vec<_> = std::fs::read_dir(root.join(family))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        let (mut total, mut passed) = (0, 0);
        for path in files
            .iter()
            .filter(|p| p.extension().is_some_and(|e| e == "jsonl"))
        {
            for line in std::fs::read_to_string(path)
                .unwrap()
                .lines()
                .filter(|l| !l.trim().is_empty())
            {
                let f: Value = serde_json::from_str(line).unwrap();
                let id = f["id"].as_str().unwrap().to_string();
                let raw = f["raw_output"].as_str().unwrap();
                let tools = tools_of(&f);
                let starts_in_reasoning = f["generation_prompt"]
                    .as_str()
                    .is_some_and(|g| g.trim_end().ends_with("<think>"));
                // Qwen templates think; the Llama family does not.
                let think = (format != ToolFormat::Llama).then_some(starts_in_reasoning);
                let whole = ReplyParser::new(think, Some((format, &tools))).parse_all(raw);
                let mut p = ReplyParser::new(think, Some((format, &tools)));
                let mut events = Vec::new();
                let mut buf = [0u8; 4];
                for ch in raw.chars() {
                    events.extend(p.push(ch.encode_utf8(&mut buf)));
                }
                events.extend(p.finish());
                let streamed = Reply::from_events(events);
                total += 1;
                let same = (&whole.content, &whole.reasoning, calls_of(&whole))
                    == (&streamed.content, &streamed.reasoning, calls_of(&streamed));
                let ok = check(&f, &whole).and_then(|()| {
                    if same {
                        Ok(())
                    } else {
                        Err(format!("streamed differs: {streamed:?}"))
                    }
                });
                match ok {
                    Ok(()) => passed += 1,
                    Err(e) if DISAGREE.iter().any(|(d, _)| *d == id) => {
                        eprintln!("disagree {id}: {e}")
                    }
                    Err(e) => failures.push(format!("{id}: {e}")),
                }
                // Ids are non-empty and unique.
                let ids: std::collections::HashSet<_> =
                    whole.calls.iter().map(|c| c.id.clone()).collect();
                assert_eq!(ids.len(), whole.calls.len(), "{id}");
                assert!(whole
                    .calls
                    .iter()
                    .all(|c| c.id.starts_with("call_") && c.id.len() > 5));
            }
        }
        report.insert(family, (passed, total));
    }
    for (family, (passed, total)) in &report {
        eprintln!("canitoolcall {family}: {passed}/{total} pass");
    }
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}
