//! Chat templates: render a GGUF's `tokenizer.chat_template` (Jinja2) the way Python
//! `transformers.apply_chat_template` does, using minijinja.
//!
//! Configuration that matches transformers byte for byte (see
//! `shared/research/chat-templates-minijinja.md`):
//! - `trim_blocks` + `lstrip_blocks`, `keep_trailing_newline` off (Jinja2 defaults as set by
//!   transformers);
//! - Python string/dict methods (`.startswith`, `.split`, `.items()`, ...) through the
//!   `minijinja_contrib::pycompat` unknown-method callback;
//! - a `tojson` filter equal to `json.dumps(x, ensure_ascii=False, ...)`, with Python float
//!   repr, no HTML escaping, and the `ensure_ascii`/`indent`/`separators`/`sort_keys` arguments;
//! - `raise_exception(msg)` and `strftime_now(fmt)` globals;
//! - lenient undefined values, no auto-escaping;
//! - message keys whose value is null are dropped, `tools` is left out of the context;
//! - transformers' `{% generation %}`/`{% endgeneration %}` tags are neutralised.

use std::borrow::Cow;
use std::fmt::Write as _;

use minijinja::value::{Kwargs, Serde, Value, ValueKind};
use minijinja::{AutoEscape, Environment, ErrorKind};

/// A piece of a rendered prompt. Template text is tokenized with special-token parsing;
/// user-supplied text is not, so typing `<|im_end|>` cannot end a turn.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PromptPart {
    pub text: String,
    pub special: bool,
}

/// Name under which the template is registered (must not end in `.html`/`.xml`).
const TEMPLATE_NAME: &str = "chat";

/// The user text of the probe conversation used to detect [`TemplateCaps`].
const PROBE_TEXT: &str = "ping";

/// A ChatML template used when a GGUF has no `tokenizer.chat_template`.
pub const FALLBACK_CHATML: &str = "{%- for message in messages %}\
{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}\
{%- endfor %}\
{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}";

/// One chat message as the template sees it.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq)]
pub struct Message {
    pub role: String,
    pub content: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub reasoning_content: Option<String>,
    /// An assistant turn's calls, `[{"id", "type": "function", "function": {"name",
    /// "arguments": {…}}}]`, arguments as an object (what templates iterate).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub tool_calls: Option<Vec<serde_json::Value>>,
    /// A `tool` turn: the call it answers, and the tool's name.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub tool_call_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub name: Option<String>,
}

impl Message {
    pub fn new(role: &str, content: &str) -> Self {
        Message {
            role: role.to_string(),
            content: content.to_string(),
            reasoning_content: None,
            tool_calls: None,
            tool_call_id: None,
            name: None,
        }
    }

    pub fn system(content: &str) -> Self {
        Self::new("system", content)
    }

    pub fn user(content: &str) -> Self {
        Self::new("user", content)
    }

    pub fn assistant(content: &str) -> Self {
        Self::new("assistant", content)
    }
}

/// Options of one render.
#[derive(Debug, Clone, Default)]
pub struct RenderOptions {
    pub add_generation_prompt: bool,
    /// Passed to the template as `enable_thinking` only when `Some`.
    pub enable_thinking: Option<bool>,
    /// Extra template kwargs (e.g. from the CLI), merged into the context. They may not
    /// replace `messages` or `add_generation_prompt`; a set `enable_thinking` option wins
    /// over an `enable_thinking` extra.
    pub extra: serde_json::Map<String, serde_json::Value>,
}

/// How a template handles reasoning ("thinking").
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum ThinkingMode {
    /// No reasoning support detected.
    None,
    /// The template reacts to `enable_thinking`.
    Switchable,
    /// The template knows `<think>` but has no switch: its generation prompt opens a `<think>`
    /// block itself (e.g. Qwen3 Thinking-2507, QwQ).
    Always,
}

/// What the template does around reasoning, found by rendering probe conversations.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TemplateCaps {
    pub thinking: ThinkingMode,
    /// The generation prompt (thinking on) ends inside an opened `<think>` block, so model
    /// output starts inside reasoning.
    pub prompt_opens_think: bool,
    /// With `enable_thinking=false`, the generation prompt already contains a closed empty
    /// think block.
    pub no_think_prefills_empty_block: bool,
}

impl TemplateCaps {
    fn none() -> Self {
        TemplateCaps {
            thinking: ThinkingMode::None,
            prompt_opens_think: false,
            no_think_prefills_empty_block: false,
        }
    }
}

/// Errors of compiling or rendering a template. Each message is a single line.
#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    #[error("chat template does not compile: {0}")]
    Syntax(String),
    #[error("chat template failed to render: {0}")]
    Render(String),
    /// The template ran past a limit that keeps a hostile GGUF from hanging edge or
    /// exhausting its memory.
    #[error("chat template exceeds edge's limits: {0}")]
    Limit(String),
}

/// Template instructions one render may run: a real template over a long conversation
/// needs a few hundred thousand; a loop that never ends stops here within about a second.
pub const TEMPLATE_FUEL: u64 = 50_000_000;

/// Longest rendered prompt: well above any context's worth of text (10M tokens of
/// Llama 4 are ~40 MB), well below what would strain memory.
pub const MAX_RENDERED_BYTES: usize = 64 << 20;

/// Collects rendered text and refuses to grow past [`MAX_RENDERED_BYTES`].
struct CappedOutput {
    text: Vec<u8>,
    over: bool,
}

impl std::io::Write for CappedOutput {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.text.len() + buf.len() > MAX_RENDERED_BYTES {
            self.over = true;
            return Err(std::io::Error::other("rendered prompt too long"));
        }
        self.text.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Special tokens exposed to the template as `bos_token`, `eos_token`, `pad_token`,
/// `unk_token` (each only when known).
#[derive(Debug, Clone, Default)]
pub struct SpecialTokens {
    pub bos: Option<String>,
    pub eos: Option<String>,
    pub pad: Option<String>,
    pub unk: Option<String>,
}

/// A compiled chat template.
pub struct ChatTemplate {
    env: Environment<'static>,
    source: String,
    special_tokens: SpecialTokens,
    caps: TemplateCaps,
}

impl std::fmt::Debug for ChatTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatTemplate")
            .field("source_len", &self.source.len())
            .field("special_tokens", &self.special_tokens)
            .field("caps", &self.caps)
            .finish()
    }
}

impl ChatTemplate {
    /// Compiles `source` and detects its [`TemplateCaps`]. Only a template that does not
    /// compile is an error; one that fails on the probe conversation gets
    /// [`ThinkingMode::None`] and reports its error from [`render`](Self::render).
    pub fn new(source: &str, special_tokens: SpecialTokens) -> Result<Self, TemplateError> {
        let mut env = new_environment();
        let prepared = neutralize_generation_tags(source).into_owned();
        env.add_template_owned(TEMPLATE_NAME, prepared)
            .map_err(|e| TemplateError::Syntax(one_line_error(&e)))?;
        let mut tmpl = ChatTemplate {
            env,
            source: source.to_string(),
            special_tokens,
            caps: TemplateCaps::none(),
        };
        tmpl.caps = tmpl.detect_caps()?;
        Ok(tmpl)
    }

    /// Renders `messages` into the prompt text.
    pub fn render(
        &self,
        messages: &[Message],
        opts: &RenderOptions,
    ) -> Result<String, TemplateError> {
        let ctx = self.context(messages, opts)?;
        let tmpl = self
            .env
            .get_template(TEMPLATE_NAME)
            .map_err(|e| TemplateError::Render(one_line_error(&e)))?;
        let mut out = CappedOutput {
            text: Vec::new(),
            over: false,
        };
        match tmpl.render_captured_to(Value::from(Serde(&ctx)), &mut out) {
            Ok(_) => String::from_utf8(out.text)
                .map_err(|_| TemplateError::Render("output is not valid UTF-8".into())),
            Err(_) if out.over => Err(TemplateError::Limit(format!(
                "the rendered prompt is over {} MiB",
                MAX_RENDERED_BYTES >> 20
            ))),
            Err(e) if e.kind() == minijinja::ErrorKind::OutOfFuel => Err(TemplateError::Limit(
                format!("it ran {TEMPLATE_FUEL} instructions without finishing (a runaway loop)"),
            )),
            Err(e) => Err(TemplateError::Render(one_line_error(&e))),
        }
    }

    /// The capabilities detected in [`new`](Self::new).
    pub fn caps(&self) -> &TemplateCaps {
        &self.caps
    }

    /// The template source as given to [`new`](Self::new).
    pub fn source(&self) -> &str {
        &self.source
    }

    fn context(
        &self,
        messages: &[Message],
        opts: &RenderOptions,
    ) -> Result<serde_json::Map<String, serde_json::Value>, TemplateError> {
        use serde_json::Value as J;
        let mut msgs = Vec::with_capacity(messages.len());
        for m in messages {
            let v = serde_json::to_value(m)
                .map_err(|e| TemplateError::Render(format!("cannot serialize message: {e}")))?;
            msgs.push(drop_null_keys(v));
        }
        let mut ctx = serde_json::Map::new();
        ctx.insert("messages".into(), J::Array(msgs));
        ctx.insert(
            "add_generation_prompt".into(),
            J::Bool(opts.add_generation_prompt),
        );
        let tokens = [
            ("bos_token", &self.special_tokens.bos),
            ("eos_token", &self.special_tokens.eos),
            ("pad_token", &self.special_tokens.pad),
            ("unk_token", &self.special_tokens.unk),
        ];
        for (name, tok) in tokens {
            if let Some(tok) = tok {
                ctx.insert(name.into(), J::String(tok.clone()));
            }
        }
        for (k, v) in &opts.extra {
            if k == "messages" || k == "add_generation_prompt" {
                continue;
            }
            ctx.insert(k.clone(), v.clone());
        }
        if let Some(on) = opts.enable_thinking {
            ctx.insert("enable_thinking".into(), J::Bool(on));
        }
        Ok(ctx)
    }

    /// The capabilities, from renders of a one-message probe. A template that fails the
    /// probe is kept (it may need a system message, say) and reports its error when used;
    /// one that exceeds the limits on a single message is refused here, at load.
    fn detect_caps(&self) -> Result<TemplateCaps, TemplateError> {
        let probe = [Message::user(PROBE_TEXT)];
        let render = |enable_thinking: Option<bool>| {
            let opts = RenderOptions {
                add_generation_prompt: true,
                enable_thinking,
                extra: Default::default(),
            };
            self.render(&probe, &opts)
        };
        let unset = match render(None) {
            Ok(text) => text,
            Err(e @ TemplateError::Limit(_)) => return Err(e),
            Err(_) => return Ok(TemplateCaps::none()),
        };
        let render = |enable_thinking| render(enable_thinking).ok();
        let on = render(Some(true));
        let off = render(Some(false));
        let switchable = matches!((&on, &off), (Some(a), Some(b)) if a != b);
        if switchable {
            let on = on.unwrap_or_default();
            let off = off.unwrap_or_default();
            return Ok(TemplateCaps {
                thinking: ThinkingMode::Switchable,
                prompt_opens_think: ends_inside_think(generation_part(&on)),
                no_think_prefills_empty_block: ends_with_empty_think(generation_part(&off)),
            });
        }
        if ends_inside_think(generation_part(&unset)) {
            return Ok(TemplateCaps {
                thinking: ThinkingMode::Always,
                prompt_opens_think: true,
                no_think_prefills_empty_block: false,
            });
        }
        Ok(TemplateCaps::none())
    }
}

/// The part of a probe render after the probe user text: the end of the user turn plus the
/// generation prompt.
fn generation_part(rendered: &str) -> &str {
    match rendered.rfind(PROBE_TEXT) {
        Some(i) => &rendered[i + PROBE_TEXT.len()..],
        None => rendered,
    }
}

/// Whether `text` ends inside an open `<think>` block (a `<think>` with no `</think>` after it).
fn ends_inside_think(text: &str) -> bool {
    match text.rfind("<think>") {
        Some(open) => !text[open..].contains("</think>"),
        None => false,
    }
}

/// Whether `text` ends with `<think>` + whitespace + `</think>` (+ whitespace).
fn ends_with_empty_think(text: &str) -> bool {
    let t = text.trim_end();
    let Some(before) = t.strip_suffix("</think>") else {
        return false;
    };
    before.trim_end().ends_with("<think>")
}

fn drop_null_keys(v: serde_json::Value) -> serde_json::Value {
    match v {
        serde_json::Value::Object(map) => {
            serde_json::Value::Object(map.into_iter().filter(|(_, v)| !v.is_null()).collect())
        }
        other => other,
    }
}

fn new_environment() -> Environment<'static> {
    let mut env = Environment::new();
    let syntax = minijinja::syntax::SyntaxConfig::builder()
        .trim_blocks(true)
        .lstrip_blocks(true)
        .build()
        .expect("default delimiters are valid");
    env.set_syntax(syntax);
    env.set_auto_escape_callback(|_| AutoEscape::None);
    env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
    env.add_filter("tojson", tojson_filter);
    env.add_filter("string", string_filter);
    env.set_formatter(|out, state, value| match py_display(value) {
        Some(text) => out.write_str(&text).map_err(minijinja::Error::from),
        None => minijinja::escape_formatter(out, state, value),
    });
    env.add_function("raise_exception", raise_exception);
    env.add_function("strftime_now", strftime_now);
    // A GGUF's template is untrusted code: bound its running time (fuel); minijinja's
    // own recursion limit (500) stops macros that call themselves, and the output is
    // bounded in `render`.
    env.set_fuel(Some(TEMPLATE_FUEL));
    env
}

/// Formats a minijinja error as one line: `kind: detail (template line N)` plus any source.
fn one_line_error(err: &minijinja::Error) -> String {
    let mut s = match err.detail() {
        Some(detail) => format!("{}: {}", err.kind(), detail),
        None => err.kind().to_string(),
    };
    if let Some(line) = err.line() {
        let _ = write!(s, " (template line {line})");
    }
    let mut source = std::error::Error::source(err);
    while let Some(e) = source {
        let _ = write!(s, ": {e}");
        source = e.source();
    }
    let flat = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.is_empty() {
        "unknown template error".to_string()
    } else {
        flat
    }
}

/// Replaces transformers' `{% generation %}` / `{% endgeneration %}` (an `AssistantTracker`
/// block that only marks text) with `{% if true %}` / `{% endif %}`, keeping whitespace control.
fn neutralize_generation_tags(src: &str) -> Cow<'_, str> {
    if !src.contains("generation") {
        return Cow::Borrowed(src);
    }
    let mut out = String::with_capacity(src.len());
    let mut rest = src;
    let mut changed = false;
    while let Some(pos) = rest.find("{%") {
        out.push_str(&rest[..pos]);
        let tag = &rest[pos..];
        match match_generation_tag(tag) {
            Some((len, replacement)) => {
                out.push_str(&replacement);
                rest = &tag[len..];
                changed = true;
            }
            None => {
                out.push_str("{%");
                rest = &tag[2..];
            }
        }
    }
    out.push_str(rest);
    if changed {
        Cow::Owned(out)
    } else {
        Cow::Borrowed(src)
    }
}

/// `tag` starts with `{%`. Returns the tag's length and its replacement when it is a
/// `generation` or `endgeneration` tag.
fn match_generation_tag(tag: &str) -> Option<(usize, String)> {
    fn ws_marker(s: &str) -> (&str, &str) {
        match s.as_bytes().first() {
            Some(b'-') | Some(b'+') => (&s[..1], &s[1..]),
            _ => ("", s),
        }
    }
    let (left, rest) = ws_marker(&tag[2..]);
    let rest = rest.trim_start();
    let (keyword, rest) = if let Some(r) = rest.strip_prefix("endgeneration") {
        ("endif", r)
    } else if let Some(r) = rest.strip_prefix("generation") {
        ("if true", r)
    } else {
        return None;
    };
    let rest = rest.trim_start();
    // `-%}` or `+%}` or `%}`; anything else (e.g. `generation_x`) is not this tag
    let (right, rest) = if rest.starts_with("-%}") || rest.starts_with("+%}") {
        (&rest[..1], &rest[1..])
    } else {
        ("", rest)
    };
    let rest = rest.strip_prefix("%}")?;
    let len = tag.len() - rest.len();
    Some((len, format!("{{%{left} {keyword} {right}%}}")))
}

/// Python's `str(value)` where it differs from minijinja's own printing: floats (`1e-07`,
/// not `0.0000001`) and containers holding them. `None` means "print as minijinja does".
fn py_display(value: &Value) -> Option<String> {
    match value.kind() {
        ValueKind::Number if !value.is_integer() => {
            f64::try_from(value.clone()).ok().map(py_float_str)
        }
        ValueKind::Seq | ValueKind::Map => {
            let mut out = String::new();
            write_py_repr(&mut out, value, 0).ok()?;
            Some(out)
        }
        _ => None,
    }
}

/// Python's `str(float)`.
fn py_float_str(f: f64) -> String {
    if f.is_nan() {
        "nan".into()
    } else if f.is_infinite() {
        if f > 0.0 { "inf" } else { "-inf" }.into()
    } else {
        py_float_repr(f)
    }
}

/// Python's `repr()` of a template value (lists, dicts, tuples, strings, numbers).
fn write_py_repr(out: &mut String, value: &Value, depth: usize) -> Result<(), minijinja::Error> {
    if depth > 500 {
        return Err(minijinja::Error::new(
            ErrorKind::InvalidOperation,
            "value is nested too deeply",
        ));
    }
    match value.kind() {
        ValueKind::Undefined => out.push_str("Undefined"),
        ValueKind::None => out.push_str("None"),
        ValueKind::Bool => out.push_str(if value.is_true() { "True" } else { "False" }),
        ValueKind::Number if value.is_integer() => {
            let _ = write!(out, "{value}");
        }
        ValueKind::Number => out.push_str(&py_float_str(f64::try_from(value.clone())?)),
        // minijinja's Debug output of a string is Python's repr
        ValueKind::String => {
            let _ = write!(out, "{value:?}");
        }
        ValueKind::Seq => {
            let tuple = value.is_tuple();
            let items: Vec<Value> = value.try_iter()?.collect();
            out.push(if tuple { '(' } else { '[' });
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_py_repr(out, item, depth + 1)?;
            }
            if tuple && items.len() == 1 {
                out.push(',');
            }
            out.push(if tuple { ')' } else { ']' });
        }
        ValueKind::Map => {
            out.push('{');
            for (i, key) in value.try_iter()?.enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_py_repr(out, &key, depth + 1)?;
                out.push_str(": ");
                write_py_repr(out, &value.get_item(&key)?, depth + 1)?;
            }
            out.push('}');
        }
        _ => {
            let _ = write!(out, "{value}");
        }
    }
    Ok(())
}

/// `x|string` with Python's float and container printing.
fn string_filter(state: &minijinja::State, value: &Value) -> Result<Value, minijinja::Error> {
    match py_display(value) {
        Some(text) => Ok(Value::from(text)),
        None => minijinja::filters::string(state, value),
    }
}

fn raise_exception(msg: String) -> Result<Value, minijinja::Error> {
    Err(minijinja::Error::new(ErrorKind::InvalidOperation, msg))
}

// ---------------------------------------------------------------------------------------
// tojson: Python's json.dumps

/// `x|tojson(ensure_ascii=False, indent=None, separators=None, sort_keys=False)` as
/// transformers defines it (positional arguments in that order).
fn tojson_filter(value: &Value, args: &[Value], kwargs: Kwargs) -> Result<Value, minijinja::Error> {
    const NAMES: [&str; 4] = ["ensure_ascii", "indent", "separators", "sort_keys"];
    if args.len() > NAMES.len() {
        return Err(minijinja::Error::new(
            ErrorKind::TooManyArguments,
            "tojson takes at most 4 arguments",
        ));
    }
    let mut params: [Option<Value>; 4] = Default::default();
    for (slot, arg) in params.iter_mut().zip(args) {
        *slot = Some(arg.clone());
    }
    for (i, name) in NAMES.iter().enumerate() {
        if let Some(v) = kwargs.get::<Option<Value>>(name)? {
            if params[i].is_some() {
                return Err(minijinja::Error::new(
                    ErrorKind::InvalidOperation,
                    format!("tojson got multiple values for argument '{name}'"),
                ));
            }
            params[i] = Some(v);
        }
    }
    kwargs.assert_all_used()?;
    let [ensure_ascii, indent, separators, sort_keys] = params;
    let ensure_ascii = ensure_ascii.is_some_and(|v| v.is_true());
    let sort_keys = sort_keys.is_some_and(|v| v.is_true());
    let indent = match indent {
        None => None,
        Some(v) if v.is_none() || v.is_undefined() => None,
        Some(v) => {
            if let Some(s) = v.as_str() {
                Some(s.to_string())
            } else if v.kind() == ValueKind::Bool {
                Some(if v.is_true() {
                    " ".into()
                } else {
                    String::new()
                })
            } else if let Some(n) = v.as_i64() {
                Some(" ".repeat(n.max(0) as usize))
            } else {
                return Err(minijinja::Error::new(
                    ErrorKind::InvalidOperation,
                    format!(
                        "tojson: indent must be an integer or a string, not {}",
                        v.kind()
                    ),
                ));
            }
        }
    };
    let (item_sep, key_sep) = match separators {
        Some(v) if !(v.is_none() || v.is_undefined()) => {
            let parts: Vec<Value> = v.try_iter()?.collect();
            match (
                parts.first().and_then(|p| p.as_str()),
                parts.get(1).and_then(|p| p.as_str()),
            ) {
                (Some(a), Some(b)) if parts.len() == 2 => (a.to_string(), b.to_string()),
                _ => {
                    return Err(minijinja::Error::new(
                        ErrorKind::InvalidOperation,
                        "tojson: separators must be a pair of strings",
                    ))
                }
            }
        }
        _ if indent.is_some() => (",".to_string(), ": ".to_string()),
        _ => (", ".to_string(), ": ".to_string()),
    };
    let opts = JsonOpts {
        ensure_ascii,
        indent,
        item_sep,
        key_sep,
        sort_keys,
    };
    let mut out = String::new();
    write_json(&mut out, value, &opts, 0)?;
    Ok(Value::from(out))
}

struct JsonOpts {
    ensure_ascii: bool,
    indent: Option<String>,
    item_sep: String,
    key_sep: String,
    sort_keys: bool,
}

impl JsonOpts {
    fn newline(&self, out: &mut String, depth: usize) {
        if let Some(unit) = &self.indent {
            out.push('\n');
            for _ in 0..depth {
                out.push_str(unit);
            }
        }
    }
}

/// Python's `repr(float)` as `json.dumps` prints it (`NaN`/`Infinity` for non-finite values).
pub(crate) fn py_float_repr(f: f64) -> String {
    if f.is_nan() {
        return "NaN".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { "Infinity" } else { "-Infinity" }.into();
    }
    if f == 0.0 {
        return if f.is_sign_negative() { "-0.0" } else { "0.0" }.into();
    }
    // shortest round-trip digits, e.g. "-1.2345e-7"
    let sci = format!("{f:e}");
    let (mantissa, exp) = sci
        .split_once('e')
        .expect("LowerExp always has an exponent");
    let exp: i32 = exp.parse().expect("LowerExp exponent is an integer");
    let (negative, mantissa) = match mantissa.strip_prefix('-') {
        Some(m) => (true, m),
        None => (false, mantissa),
    };
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    let mut out = String::new();
    if negative {
        out.push('-');
    }
    if (-4..16).contains(&exp) {
        if exp < 0 {
            out.push_str("0.");
            for _ in 0..(-exp - 1) {
                out.push('0');
            }
            out.push_str(&digits);
        } else {
            let int_len = exp as usize + 1;
            if digits.len() <= int_len {
                out.push_str(&digits);
                for _ in digits.len()..int_len {
                    out.push('0');
                }
                out.push_str(".0");
            } else {
                out.push_str(&digits[..int_len]);
                out.push('.');
                out.push_str(&digits[int_len..]);
            }
        }
    } else {
        out.push_str(&digits[..1]);
        if digits.len() > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        let _ = write!(
            out,
            "e{}{:02}",
            if exp < 0 { '-' } else { '+' },
            exp.unsigned_abs()
        );
    }
    out
}

fn write_json_str(out: &mut String, s: &str, ensure_ascii: bool) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c if ensure_ascii && (c as u32) > 0x7e => {
                let mut buf = [0u16; 2];
                for unit in c.encode_utf16(&mut buf) {
                    let _ = write!(out, "\\u{unit:04x}");
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// A map key as `json.dumps` coerces it.
fn json_key(key: &Value) -> Result<String, minijinja::Error> {
    Ok(match key.kind() {
        ValueKind::String => key.as_str().unwrap_or_default().to_string(),
        ValueKind::Bool => if key.is_true() { "true" } else { "false" }.to_string(),
        ValueKind::None | ValueKind::Undefined => "null".to_string(),
        ValueKind::Number if key.is_integer() => key.to_string(),
        ValueKind::Number => py_float_repr(f64::try_from(key.clone())?),
        other => {
            return Err(minijinja::Error::new(
                ErrorKind::InvalidOperation,
                format!("tojson: keys must be str, int, float, bool or None, not {other}"),
            ))
        }
    })
}

fn write_json(
    out: &mut String,
    value: &Value,
    opts: &JsonOpts,
    depth: usize,
) -> Result<(), minijinja::Error> {
    if depth > 500 {
        return Err(minijinja::Error::new(
            ErrorKind::InvalidOperation,
            "tojson: value is nested too deeply",
        ));
    }
    match value.kind() {
        ValueKind::Undefined | ValueKind::None => out.push_str("null"),
        ValueKind::Bool => out.push_str(if value.is_true() { "true" } else { "false" }),
        ValueKind::Number => {
            if value.is_integer() {
                let _ = write!(out, "{value}");
            } else {
                out.push_str(&py_float_repr(f64::try_from(value.clone())?));
            }
        }
        ValueKind::String => {
            write_json_str(out, value.as_str().unwrap_or_default(), opts.ensure_ascii)
        }
        ValueKind::Seq | ValueKind::Iterable => {
            let items: Vec<Value> = value.try_iter()?.collect();
            if items.is_empty() {
                out.push_str("[]");
                return Ok(());
            }
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(&opts.item_sep);
                }
                opts.newline(out, depth + 1);
                write_json(out, item, opts, depth + 1)?;
            }
            opts.newline(out, depth);
            out.push(']');
        }
        ValueKind::Map => {
            let mut entries = Vec::new();
            for key in value.try_iter()? {
                let item = value.get_item(&key)?;
                entries.push((json_key(&key)?, item));
            }
            if entries.is_empty() {
                out.push_str("{}");
                return Ok(());
            }
            if opts.sort_keys {
                entries.sort_by(|a, b| a.0.cmp(&b.0));
            }
            out.push('{');
            for (i, (key, item)) in entries.iter().enumerate() {
                if i > 0 {
                    out.push_str(&opts.item_sep);
                }
                opts.newline(out, depth + 1);
                write_json_str(out, key, opts.ensure_ascii);
                out.push_str(&opts.key_sep);
                write_json(out, item, opts, depth + 1)?;
            }
            opts.newline(out, depth);
            out.push('}');
        }
        other => {
            return Err(minijinja::Error::new(
                ErrorKind::InvalidOperation,
                format!("tojson: object of type {other} is not JSON serializable"),
            ))
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// strftime_now: Python's time.strftime of the current time (in UTC here)

fn strftime_now(format: String) -> Result<Value, minijinja::Error> {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    Ok(Value::from(strftime_utc(&format, secs)))
}

/// Days since 1970-01-01 to (year, month 1-12, day 1-31), proleptic Gregorian.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// A subset of C `strftime` for a UTC timestamp: `%Y %y %m %d %e %H %I %M %S %p %b %h %B %a
/// %A %j %F %T %D %Z %z %%`. Unknown directives are kept as written.
pub(crate) fn strftime_utc(format: &str, unix_secs: i64) -> String {
    const MONTHS: [&str; 12] = [
        "January",
        "February",
        "March",
        "April",
        "May",
        "June",
        "July",
        "August",
        "September",
        "October",
        "November",
        "December",
    ];
    const DAYS: [&str; 7] = [
        "Monday",
        "Tuesday",
        "Wednesday",
        "Thursday",
        "Friday",
        "Saturday",
        "Sunday",
    ];
    let days = unix_secs.div_euclid(86_400);
    let secs = unix_secs.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    let (hour, minute, second) = (secs / 3600, (secs / 60) % 60, secs % 60);
    // 1970-01-01 was a Thursday (index 3 with Monday = 0)
    let weekday = (days + 3).rem_euclid(7) as usize;
    let yday = days - days_from_civil(year, 1, 1) + 1;
    let month_name = MONTHS[(month - 1) as usize];
    let day_name = DAYS[weekday];
    let hour12 = if hour % 12 == 0 { 12 } else { hour % 12 };

    let mut out = String::new();
    let mut chars = format.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let Some(d) = chars.next() else {
            out.push('%');
            break;
        };
        let _ = match d {
            'Y' => write!(out, "{year}"),
            'y' => write!(out, "{:02}", year.rem_euclid(100)),
            'm' => write!(out, "{month:02}"),
            'd' => write!(out, "{day:02}"),
            'e' => write!(out, "{day:2}"),
            'H' => write!(out, "{hour:02}"),
            'I' => write!(out, "{hour12:02}"),
            'M' => write!(out, "{minute:02}"),
            'S' => write!(out, "{second:02}"),
            'p' => write!(out, "{}", if hour < 12 { "AM" } else { "PM" }),
            'b' | 'h' => write!(out, "{}", &month_name[..3]),
            'B' => write!(out, "{month_name}"),
            'a' => write!(out, "{}", &day_name[..3]),
            'A' => write!(out, "{day_name}"),
            'j' => write!(out, "{yday:03}"),
            'F' => write!(out, "{year}-{month:02}-{day:02}"),
            'T' => write!(out, "{hour:02}:{minute:02}:{second:02}"),
            'D' => write!(out, "{month:02}/{day:02}/{:02}", year.rem_euclid(100)),
            'Z' => write!(out, "UTC"),
            'z' => write!(out, "+0000"),
            '%' => write!(out, "%"),
            other => write!(out, "%{other}"),
        };
    }
    out
}

/// (year, month, day) to days since 1970-01-01.
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = month as i64;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + day as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hostile(src: &str) -> TemplateError {
        let start = std::time::Instant::now();
        let err = ChatTemplate::new(src, SpecialTokens::default()).unwrap_err();
        assert!(
            start.elapsed() < std::time::Duration::from_secs(5),
            "took {:?}",
            start.elapsed()
        );
        err
    }

    #[test]
    fn a_runaway_loop_is_refused_at_load() {
        let src =
            "{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}";
        let err = hostile(src);
        assert!(matches!(err, TemplateError::Limit(_)), "{err}");
        assert!(err.to_string().contains("runaway loop"), "{err}");
        // range(10**9) itself is refused by minijinja: an error, not a hang.
        let err = ChatTemplate::new(
            "{% for i in range(10**9) %}x{% endfor %}",
            SpecialTokens::default(),
        )
        .unwrap()
        .render(&[Message::user("hi")], &RenderOptions::default())
        .unwrap_err();
        assert!(err.to_string().contains("too many elements"), "{err}");
    }

    #[test]
    fn a_gigabyte_prompt_is_refused_at_load() {
        let err = hostile("{% for i in range(10) %}{{ 'x' * 100000000 }}{% endfor %}");
        assert!(matches!(err, TemplateError::Limit(_)), "{err}");
        assert!(err.to_string().contains("over 64 MiB"), "{err}");
    }

    #[test]
    fn endless_recursion_is_an_error_not_a_stack_overflow() {
        let src = "{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}";
        // Either refused at load or when rendered; never a crash.
        let t = ChatTemplate::new(src, SpecialTokens::default());
        let msg = match t {
            Err(e) => e.to_string(),
            Ok(t) => t
                .render(&[Message::user("hi")], &RenderOptions::default())
                .unwrap_err()
                .to_string(),
        };
        assert!(msg.contains("recursion"), "{msg}");
    }

    #[test]
    fn float_repr_matches_python() {
        let cases: &[(f64, &str)] = &[
            (1e-7, "1e-07"),
            (1e16, "1e+16"),
            (0.0001, "0.0001"),
            (100.0, "100.0"),
            (1.5, "1.5"),
            (-0.0, "-0.0"),
            (0.0, "0.0"),
            (f64::NAN, "NaN"),
            (f64::INFINITY, "Infinity"),
            (f64::NEG_INFINITY, "-Infinity"),
            (1.5e-5, "1.5e-05"),
            (0.1, "0.1"),
            (1.0 / 3.0, "0.3333333333333333"),
            (1234567890123456.0, "1234567890123456.0"),
            (1.2345e16, "1.2345e+16"),
            (1e100, "1e+100"),
            (-2.5e-300, "-2.5e-300"),
            (5e-324, "5e-324"),
            (1.7976931348623157e308, "1.7976931348623157e+308"),
            (123.456, "123.456"),
            (-42.0, "-42.0"),
        ];
        for (f, want) in cases {
            assert_eq!(py_float_repr(*f), *want, "repr of {f:?}");
        }
    }

    #[test]
    fn tojson_floats_ints_and_strings() {
        let env = new_environment();
        let out = env
            .render_str(
                "{{ {'i': 3, 'f': 3.0, 'e': 0.00001, 's': 'a\"b\\\\c\\n\\u0001', 'n': none, 't': true}|tojson }}",
                (),
            )
            .unwrap();
        assert_eq!(
            out,
            r#"{"i": 3, "f": 3.0, "e": 1e-05, "s": "a\"b\\c\n\u0001", "n": null, "t": true}"#
        );
        let out = env
            .render_str("{{ {'a': [1, {}], 'b': []}|tojson(indent=2) }}", ())
            .unwrap();
        assert_eq!(out, "{\n  \"a\": [\n    1,\n    {}\n  ],\n  \"b\": []\n}");
        let out = env
            .render_str(
                "{{ {'b': 'é😀', 'a': 1}|tojson(ensure_ascii=true, sort_keys=true, separators=(',', ':')) }}",
                (),
            )
            .unwrap();
        assert_eq!(out, r#"{"a":1,"b":"\u00e9\ud83d\ude00"}"#);
    }

    #[test]
    fn printing_follows_python_str() {
        let env = new_environment();
        let render = |src: &str| env.render_str(src, ()).unwrap();
        assert_eq!(
            render("{{ 1e-07 }} {{ 3.0 }} {{ 0.1 + 0.2 }} {{ 1e20 }}"),
            "1e-07 3.0 0.30000000000000004 1e+20"
        );
        assert_eq!(
            render("{{ [1.5, 'a', \"it's\", none, true, (1,), {'k': 1e-05}] }}"),
            "[1.5, 'a', \"it's\", None, True, (1,), {'k': 1e-05}]"
        );
        assert_eq!(
            render("{{ (1e-07|string) + '|' + (2|string) + '|' + ('x'|string) }}"),
            "1e-07|2|x"
        );
        assert_eq!(
            render("{{ 42 }} {{ 'text' }} {{ none }}|{{ undefined_name }}|"),
            "42 text None||"
        );
    }

    #[test]
    fn chat_template_is_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<ChatTemplate>();
    }

    #[test]
    fn strftime_known_dates() {
        // 2024-02-29 13:05:09 UTC, a Thursday
        let t = 1_709_211_909;
        assert_eq!(strftime_utc("%Y-%m-%d %H:%M:%S", t), "2024-02-29 13:05:09");
        assert_eq!(strftime_utc("%d %b %Y", t), "29 Feb 2024");
        assert_eq!(strftime_utc("%B %d, %Y", t), "February 29, 2024");
        assert_eq!(
            strftime_utc("%a %A %j %I%p %%", t),
            "Thu Thursday 060 01PM %"
        );
        assert_eq!(strftime_utc("%Y-%m-%d", 0), "1970-01-01");
    }

    #[test]
    fn generation_tags_are_neutralized() {
        let src = "a{% generation %}b{%- endgeneration -%} c{% generation_x %}";
        assert_eq!(
            neutralize_generation_tags(src),
            "a{% if true %}b{%- endif -%} c{% generation_x %}"
        );
        let t = ChatTemplate::new(
            "{% for m in messages %}{% generation %}{{ m.content }}{% endgeneration %}{% endfor %}",
            SpecialTokens::default(),
        )
        .unwrap();
        let out = t
            .render(&[Message::user("hi")], &RenderOptions::default())
            .unwrap();
        assert_eq!(out, "hi");
    }

    #[test]
    fn errors_are_one_line() {
        let err = ChatTemplate::new("a\n{% if %}\nb", SpecialTokens::default()).unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, TemplateError::Syntax(_)));
        assert!(!text.contains('\n'), "{text}");
        assert!(text.contains("line 2"), "{text}");
    }

    #[test]
    fn fallback_chatml_renders() {
        let t = ChatTemplate::new(FALLBACK_CHATML, SpecialTokens::default()).unwrap();
        let opts = RenderOptions {
            add_generation_prompt: true,
            ..Default::default()
        };
        let out = t
            .render(&[Message::system("s"), Message::user("u")], &opts)
            .unwrap();
        assert_eq!(
            out,
            "<|im_start|>system\ns<|im_end|>\n<|im_start|>user\nu<|im_end|>\n<|im_start|>assistant\n"
        );
        assert_eq!(t.caps().thinking, ThinkingMode::None);
    }
}
