//! GBNF grammars that hold tool calls to their format and each tool's argument schema:
//! active from the first token (`tool_choice` required or named), or lazy, starting at
//! the format's opening marker (`auto`). Pure text assembly; the JSON-schema-to-GBNF
//! step is llama.cpp's, passed in.

use serde_json::{json, Value};

use super::spec::{ToolFormat, ToolSpec};

/// A grammar and, when lazy, the words that switch it on.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolGrammar {
    pub gbnf: String,
    /// Empty: constrain from the first token.
    pub triggers: Vec<String>,
}

/// Renames the `root` rule of a generated grammar.
fn rename_root(gbnf: &str, name: &str) -> String {
    gbnf.lines()
        .map(|l| match l.strip_prefix("root ::=") {
            Some(rest) => format!("{name} ::={rest}"),
            None => l.to_string(),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn gbnf_literal(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn repeat(one: &str, sep: &str, parallel: bool) -> String {
    if parallel {
        format!("{one} ({sep} {one})*")
    } else {
        one.to_string()
    }
}

/// The grammar for calls to `tools` (only `only` when named) in `format`.
/// `schema_to_gbnf` is llama.cpp's converter.
pub fn tool_grammar(
    format: ToolFormat,
    tools: &[ToolSpec],
    only: Option<&str>,
    parallel: bool,
    lazy: bool,
    schema_to_gbnf: &dyn Fn(&Value) -> Result<String, String>,
) -> Result<ToolGrammar, String> {
    let tools: Vec<&ToolSpec> = tools
        .iter()
        .filter(|t| only.is_none_or(|n| t.name == n))
        .collect();
    if tools.is_empty() {
        return Err("no tool to call".into());
    }
    match format {
        ToolFormat::Hermes => {
            let alts: Vec<Value> = tools
                .iter()
                .map(|t| {
                    json!({"type": "object",
                           "properties": {"name": {"const": t.name}, "arguments": t.parameters},
                           "required": ["name", "arguments"], "additionalProperties": false})
                })
                .collect();
            let schema = if alts.len() == 1 {
                alts[0].clone()
            } else {
                json!({"anyOf": alts})
            };
            let calls = rename_root(&schema_to_gbnf(&schema)?, "tool-call-json");
            let one = "\"<tool_call>\\n\" tool-call-json \"\\n</tool_call>\"";
            let gbnf = format!("root ::= {}\n{calls}\n", repeat(one, "\"\\n\"", parallel));
            Ok(ToolGrammar {
                gbnf,
                triggers: if lazy {
                    vec!["<tool_call>".into()]
                } else {
                    Vec::new()
                },
            })
        }
        ToolFormat::QwenXml => {
            let mut rules = vec![format!(
                "root ::= {}",
                repeat(
                    "\"<tool_call>\\n\" tool-fn \"</tool_call>\"",
                    "\"\\n\"",
                    parallel
                )
            )];
            let names: Vec<String> = (0..tools.len()).map(|i| format!("fn-{i}")).collect();
            rules.push(format!("tool-fn ::= {}", names.join(" | ")));
            for (i, t) in tools.iter().enumerate() {
                let props = t.parameters.get("properties").and_then(Value::as_object);
                let required: Vec<&str> = t
                    .parameters
                    .get("required")
                    .and_then(Value::as_array)
                    .map(|a| a.iter().filter_map(Value::as_str).collect())
                    .unwrap_or_default();
                let mut params = Vec::new();
                for (j, (key, schema)) in props.into_iter().flatten().enumerate() {
                    let value = match schema.get("type").and_then(Value::as_str) {
                        Some("integer") => "xml-int",
                        Some("number") => "xml-number",
                        Some("boolean") => "xml-bool",
                        Some("object") | Some("array") => "xml-json",
                        _ => "xml-text",
                    };
                    let rule = format!("param-{i}-{j}");
                    rules.push(format!(
                        "{rule} ::= {} {value} \"\\n</parameter>\\n\"",
                        gbnf_literal(&format!("<parameter={key}>\n"))
                    ));
                    params.push(if required.contains(&key.as_str()) {
                        rule
                    } else {
                        format!("{rule}?")
                    });
                }
                rules.push(format!(
                    "fn-{i} ::= {} {} \"</function>\\n\"",
                    gbnf_literal(&format!("<function={}>\n", t.name)),
                    params.join(" ")
                ));
            }
            rules.push(XML_VALUES.to_string());
            Ok(ToolGrammar {
                gbnf: rules.join("\n") + "\n",
                triggers: if lazy {
                    vec!["<tool_call>".into()]
                } else {
                    Vec::new()
                },
            })
        }
        ToolFormat::Llama => {
            let mut rules = vec![format!(
                "root ::= \"[\" {} \"]\"",
                repeat("py-call", "\", \"", parallel)
            )];
            let names: Vec<String> = (0..tools.len()).map(|i| format!("py-fn-{i}")).collect();
            rules.push(format!("py-call ::= {}", names.join(" | ")));
            for (i, t) in tools.iter().enumerate() {
                let props = t.parameters.get("properties").and_then(Value::as_object);
                let args: Vec<String> = props
                    .into_iter()
                    .flatten()
                    .map(|(k, schema)| {
                        let v = match schema.get("type").and_then(Value::as_str) {
                            Some("integer") => "py-int",
                            Some("number") => "py-number",
                            Some("boolean") => "py-bool",
                            Some("string") => "py-string",
                            _ => "py-value",
                        };
                        format!("{} {v}", gbnf_literal(&format!("{k}=")))
                    })
                    .collect();
                let body = if args.is_empty() {
                    String::new()
                } else {
                    args.join(" \", \" ")
                };
                rules.push(format!(
                    "py-fn-{i} ::= {} {body} \")\"",
                    gbnf_literal(&format!("{}(", t.name))
                ));
            }
            rules.push(PY_VALUES.to_string());
            Ok(ToolGrammar {
                gbnf: rules.join("\n") + "\n",
                triggers: if lazy {
                    vec!["<|python_start|>".into()]
                } else {
                    Vec::new()
                },
            })
        }
    }
}

const XML_VALUES: &str = r#"xml-text ::= ([^<] | "<" [^/])*
xml-int ::= "-"? [0-9]+
xml-number ::= "-"? [0-9]+ ("." [0-9]+)? ([eE] [-+]? [0-9]+)?
xml-bool ::= "true" | "false"
xml-json ::= json-value
json-value ::= json-object | json-array | json-string | xml-number | "true" | "false" | "null"
json-object ::= "{" ws ( json-string ws ":" ws json-value ( ws "," ws json-string ws ":" ws json-value )* )? ws "}"
json-array ::= "[" ws ( json-value ( ws "," ws json-value )* )? ws "]"
json-string ::= "\"" ( [^"\\] | "\\" ["\\/bfnrt] )* "\""
ws ::= [ \t\n]*"#;

const PY_VALUES: &str = r#"py-int ::= "-"? [0-9]+
py-number ::= "-"? [0-9]+ ("." [0-9]+)?
py-bool ::= "True" | "False"
py-string ::= "\"" ( [^"\\] | "\\" ["\\nt'] )* "\""
py-value ::= py-string | py-number | py-bool | "None" | py-list | py-dict
py-list ::= "[" ( py-value ( ", " py-value )* )? "]"
py-dict ::= "{" ( py-string ": " py-value ( ", " py-string ": " py-value )* )? "}""#;

#[cfg(test)]
mod tests {
    use super::*;

    fn tool(name: &str, params: Value) -> ToolSpec {
        ToolSpec {
            name: name.into(),
            parameters: params,
            raw: Value::Null,
        }
    }

    #[test]
    fn grammars_name_each_tool_and_switch_on_lazily() {
        let tools = [
            tool(
                "get_weather",
                json!({"type": "object", "properties": {"city": {"type": "string"}, "days": {"type": "integer"}}, "required": ["city"]}),
            ),
            tool("get_time", json!({"type": "object", "properties": {}})),
        ];
        let fake = |s: &Value| Ok(format!("root ::= {}\n", gbnf_literal(&s.to_string())));
        let g = tool_grammar(ToolFormat::Hermes, &tools, None, true, true, &fake).unwrap();
        assert_eq!(g.triggers, vec!["<tool_call>".to_string()]);
        assert!(g
            .gbnf
            .starts_with("root ::= \"<tool_call>\\n\" tool-call-json"));
        assert!(g.gbnf.contains("tool-call-json ::="));
        let g = tool_grammar(
            ToolFormat::QwenXml,
            &tools,
            Some("get_weather"),
            false,
            false,
            &fake,
        )
        .unwrap();
        assert!(g.triggers.is_empty());
        assert!(g.gbnf.contains("\"<function=get_weather>\\n\""));
        assert!(!g.gbnf.contains("get_time"));
        assert!(
            g.gbnf.contains("param-0-1?"),
            "optional parameter: {}",
            g.gbnf
        );
        let g = tool_grammar(ToolFormat::Llama, &tools, None, false, false, &fake).unwrap();
        assert!(g.gbnf.contains("\"get_weather(\""));
        assert!(tool_grammar(
            ToolFormat::Hermes,
            &tools,
            Some("nope"),
            false,
            false,
            &fake
        )
        .is_err());
    }
}
