//! Tool formats and the tools a request offers.

use serde_json::Value;

/// How a model writes its tool calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ToolFormat {
    /// `<tool_call>\n{"name": …, "arguments": {…}}\n</tool_call>`
    Hermes,
    /// `<tool_call>\n<function=NAME>\n<parameter=K>\nV\n</parameter>\n</function>\n</tool_call>`
    QwenXml,
    /// `[f(a="x"), g(b=1)]`, or `{"name": …, "parameters": {…}}` at the start of the output.
    Llama,
}

impl ToolFormat {
    /// The format a chat template's source speaks, or `None` when it renders no tools.
    pub fn detect(template: &str) -> Option<ToolFormat> {
        if !template.contains("tools") {
            return None;
        }
        if template.contains("<function=") && template.contains("<parameter=") {
            return Some(ToolFormat::QwenXml);
        }
        if template.contains("<tool_call>") {
            return Some(ToolFormat::Hermes);
        }
        if template.contains("<|python_start|>")
            || template.contains("<|python_tag|>")
            || template.contains("func_name1(")
            || template.contains("<|eom|>")
            || template.contains("<|eom_id|>")
        {
            return Some(ToolFormat::Llama);
        }
        // Renders tools in its own way: Hermes is what most fine-tunes learned.
        Some(ToolFormat::Hermes)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ToolFormat::Hermes => "hermes",
            ToolFormat::QwenXml => "qwen3-xml",
            ToolFormat::Llama => "llama",
        }
    }
}

/// A tool offered to the model (OpenAI's `{"type": "function", "function": {…}}`).
#[derive(Debug, Clone, PartialEq)]
pub struct ToolSpec {
    pub name: String,
    /// The JSON schema of its arguments (`{"type": "object"}` when none was given).
    pub parameters: Value,
    /// The whole entry, as the template renders it.
    pub raw: Value,
}

impl ToolSpec {
    /// From OpenAI's `{"type": "function", "function": {"name", "parameters"}}` (already
    /// validated by the request parser).
    pub fn from_openai(raw: &Value) -> Option<ToolSpec> {
        let f = raw.get("function")?;
        Some(ToolSpec {
            name: f.get("name")?.as_str()?.to_string(),
            parameters: f
                .get("parameters")
                .filter(|p| p.is_object())
                .cloned()
                .unwrap_or_else(|| serde_json::json!({"type": "object", "properties": {}})),
            raw: raw.clone(),
        })
    }

    /// The JSON schema type(s) a parameter declares (for typing Qwen3-Coder's raw values).
    pub fn param_schema(&self, name: &str) -> Option<&Value> {
        self.parameters.get("properties")?.get(name)
    }
}

/// Qwen 3's own tool instructions, for templates that cannot render tools when a call
/// is forced (`tool_choice` required or named): the model then knows the tools.
pub fn hermes_preamble(tools: &[ToolSpec]) -> String {
    let mut s = String::from(
        "# Tools\n\nYou may call one or more functions to assist with the user query.\n\n\
         You are provided with function signatures within <tools></tools> XML tags:\n<tools>",
    );
    for t in tools {
        s.push('\n');
        s.push_str(&t.raw.to_string());
    }
    s.push_str(
        "\n</tools>\n\nFor each function call, return a json object with function name and \
         arguments within <tool_call></tool_call> XML tags:\n<tool_call>\n\
         {\"name\": <function-name>, \"arguments\": <args-json-object>}\n</tool_call>",
    );
    s
}

/// Where a tool call's JSON must be valid: what a parser needs to know about tools.
pub fn find_tool<'a>(tools: &'a [ToolSpec], name: &str) -> Option<&'a ToolSpec> {
    tools.iter().find(|t| t.name == name)
}
