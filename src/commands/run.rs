//! `edge run MODEL [PROMPT]`: one answer, or an interactive chat.

use std::io::{IsTerminal, Read, Write};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{bail, Context, Result};
use clap::Args;

use super::args::{
    apply_template, pair_report, plan_and_load_with_draft, plan_for, plan_pair_for, plan_report,
    with_hints, ContextArgs, PlacementArgs, SamplingArgs, SpecArgs, SpecChoice, TemplateArgs,
    ThreadArgs,
};
use crate::chat::{ChatSession, ChatSettings};
use crate::chat_template::ThinkingMode;
use crate::engine::{GenOutput, LoadOptions, Model, Speculation, StopReason};
use crate::resolve::resolve_model;
use crate::term::{dim, stderr_color};
use crate::thinking::Segment;
use crate::tools::{parse_calls, ToolFormat, ToolSpec};

const DEFAULT_MAX_TOKENS: u32 = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OnOff {
    On,
    Off,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Model: a catalog name (qwen3-0.6b[:q4_k_m]), hf.co/ORG/REPO[:QUANT], or a path to a .gguf
    /// (the first shard of a split model). Pulled when missing.
    pub model: String,
    /// Prompt to answer; without it (and with stdin a terminal) edge starts a chat.
    pub prompt: Option<String>,
    /// System prompt.
    #[arg(long)]
    pub system: Option<String>,
    /// Thinking mode for models that support it (default: on where the template allows).
    #[arg(long, value_enum)]
    pub think: Option<OnOff>,
    /// Force `</think>` after this many reasoning tokens.
    #[arg(long, value_name = "N")]
    pub think_budget: Option<u32>,
    /// Do not print the model's reasoning.
    #[arg(long)]
    pub hide_thinking: bool,
    /// Maximum tokens to generate per answer.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub max_tokens: Option<u32>,
    /// Print load time, prompt and generation speed to stderr.
    #[arg(long)]
    pub stats: bool,
    /// Print the placement plan and exit without loading the model.
    #[arg(long)]
    pub plan_only: bool,
    /// Offer these tools (a JSON file: an array of OpenAI function tools, or
    /// {"tools": [...]}); the reply prints as JSON lines: {"content": ...} and one
    /// {"id", "type", "function": {"name", "arguments"}} per call. Needs a prompt.
    #[arg(long, value_name = "FILE")]
    pub tools: Option<std::path::PathBuf>,
    #[command(flatten)]
    pub template: TemplateArgs,
    #[command(flatten)]
    pub context: ContextArgs,
    #[command(flatten)]
    pub threads: ThreadArgs,
    #[command(flatten)]
    pub sampling: SamplingArgs,
    #[command(flatten)]
    pub placement: PlacementArgs,
    #[command(flatten)]
    pub spec: SpecArgs,
}

pub fn run(args: RunArgs, verbose: bool) -> Result<ExitCode> {
    let path = resolve_model(&args.model)?;
    // Read a piped prompt before loading, so a bad pipe fails fast.
    let prompt = match args.prompt.clone() {
        Some(p) => Some(p),
        None if !std::io::stdin().is_terminal() => {
            let mut s = String::new();
            std::io::stdin()
                .read_to_string(&mut s)
                .context("reading the prompt from stdin")?;
            if s.trim().is_empty() {
                bail!("stdin is not a terminal and gave an empty prompt");
            }
            Some(s)
        }
        None => None,
    };
    let tools = match &args.tools {
        Some(file) => {
            if prompt.is_none() {
                bail!("--tools needs a prompt (one-shot mode)");
            }
            read_tools(file)?
        }
        None => Vec::new(),
    };
    let label = path.display().to_string();
    let ctx = args.context.ctx.map(u64::from);
    let spec = args.spec.choice(&args.model, &path)?;
    if let (
        true,
        SpecChoice::Draft {
            path: dp,
            label: dl,
            limits,
        },
    ) = (args.plan_only, &spec)
    {
        let pair = plan_pair_for(
            &path,
            &label,
            dp,
            dl,
            &args.placement,
            ctx,
            1,
            limits.max,
            verbose,
        )?;
        print!("{}", pair_report(&pair));
        return Ok(if pair.target.plan.fits {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        });
    }
    if args.plan_only {
        let planned = plan_for(&path, &label, &args.placement, ctx, 1, verbose)?;
        print!("{}", plan_report(&planned));
        return Ok(if planned.plan.fits {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        });
    }

    let interactive = prompt.is_none();
    let opts = LoadOptions {
        verbose,
        progress: interactive || args.stats,
    };
    let template = args.template.choice()?;
    let loaded = plan_and_load_with_draft(&path, &label, &args.placement, ctx, 1, &opts, &spec)?;
    let (planned, mut model) = (loaded.planned, loaded.model);
    apply_template(&mut model, template.as_ref())?;
    let threads = args.threads.get();
    let mut session = model.new_session(&planned.context(threads))?;
    session.set_speculation(match (&spec, &loaded.draft) {
        (SpecChoice::Draft { limits, .. }, Some((draft_plan, draft))) => Some(
            Speculation::with_model(draft, &draft_plan.context(threads), *limits)?,
        ),
        (SpecChoice::Lookup(limits), _) => Some(Speculation::lookup(*limits)),
        _ => None,
    });

    let mode = model.template.caps().thinking;
    if args.think == Some(OnOff::Off) && mode == ThinkingMode::Always {
        eprintln!("edge: note: this model always thinks; --think off has no effect");
    }
    let settings = ChatSettings {
        system: args.system.clone(),
        think: args.think.map(|t| t == OnOff::On),
        think_budget: args.think_budget,
        max_tokens: args.max_tokens.unwrap_or(DEFAULT_MAX_TOKENS),
        sampling: args.sampling.overrides(),
        tools: tools.clone(),
    };
    let tool_format = if tools.is_empty() {
        None
    } else {
        Some(
            ToolFormat::detect(model.template.source())
                .ok_or_else(|| anyhow::anyhow!("this model's template does not support tools"))?,
        )
    };
    let mut chat = ChatSession::new(session, settings);
    let stop = super::signals::interrupt_flag()?;
    let printer = Printer {
        show_thinking: !args.hide_thinking,
        color: stderr_color(),
    };

    if let (Some(prompt), Some(format)) = (&prompt, tool_format) {
        let out = chat
            .send(prompt.trim_end_matches('\n'), &stop, &mut |s| {
                if matches!(s, Segment::Reasoning(_)) {
                    printer.print(s)
                }
            })
            .map_err(with_hints)?;
        let specs: Vec<ToolSpec> = tools.iter().filter_map(ToolSpec::from_openai).collect();
        let parsed = parse_calls(format, &specs, &out.answer);
        if !parsed.content.trim().is_empty() {
            println!("{}", serde_json::json!({"content": parsed.content.trim()}));
        }
        for call in &parsed.calls {
            println!("{}", call.to_openai(None));
        }
        return Ok(match out.stop {
            StopReason::Interrupted => ExitCode::from(130),
            _ => ExitCode::SUCCESS,
        });
    }
    if let Some(prompt) = prompt {
        let out = chat
            .send(prompt.trim_end_matches('\n'), &stop, &mut |s| {
                printer.print(s)
            })
            .map_err(with_hints)?;
        printer.end_of_reply(&out);
        if args.stats {
            print_stats(&model, &out);
        }
        return Ok(match out.stop {
            StopReason::Interrupted => ExitCode::from(130),
            _ => ExitCode::SUCCESS,
        });
    }
    repl(&mut chat, &stop, &printer, args.stats)?;
    Ok(ExitCode::SUCCESS)
}

/// The tools in `file`, validated as a request's `tools` would be.
fn read_tools(file: &std::path::Path) -> Result<Vec<serde_json::Value>> {
    let text = std::fs::read_to_string(file)
        .with_context(|| format!("cannot read tools file {}", file.display()))?;
    let v: serde_json::Value = serde_json::from_str(&text)
        .with_context(|| format!("{} is not valid JSON", file.display()))?;
    let list = match v {
        serde_json::Value::Object(mut o) if o.contains_key("tools") => {
            o.remove("tools").unwrap_or_default()
        }
        other => other,
    };
    let mut body = serde_json::Map::new();
    body.insert("tools".into(), list);
    let (tools, _, _) = crate::request::parse_tools(&body)
        .map_err(|e| anyhow::anyhow!("{}: {}", file.display(), e.message))?;
    if tools.is_empty() {
        bail!("{} lists no tools", file.display());
    }
    Ok(tools)
}

struct Printer {
    show_thinking: bool,
    color: bool,
}

impl Printer {
    fn print(&self, seg: &Segment) {
        match seg {
            Segment::Reasoning(t) => {
                if self.show_thinking {
                    eprint!("{}", dim(t, self.color));
                    let _ = std::io::stderr().flush();
                }
            }
            Segment::Answer(t) => {
                print!("{t}");
                let _ = std::io::stdout().flush();
            }
        }
    }

    fn end_of_reply(&self, out: &GenOutput) {
        if self.show_thinking && !out.reasoning.is_empty() && out.answer.is_empty() {
            eprintln!();
        }
        println!();
        match out.stop {
            StopReason::ContextFull => eprintln!(
                "edge: the context is full ({} tokens); /clear to start over, or run with a larger --ctx",
                out.n_prompt_new + out.n_generated
            ),
            StopReason::MaxTokens => eprintln!("edge: stopped at --max-tokens"),
            StopReason::Interrupted => eprintln!("edge: interrupted"),
            StopReason::EndOfTurn => {}
        }
    }
}

fn print_stats(model: &Model, out: &GenOutput) {
    let rate = |n: usize, ms: f64| {
        if ms > 0.0 {
            n as f64 * 1000.0 / ms
        } else {
            0.0
        }
    };
    eprintln!(
        "load {:.0} ms | prompt {} tokens, {:.1} tok/s | generation {} tokens, {:.1} tok/s",
        model.load_ms,
        out.n_prompt_new,
        rate(out.n_prompt_new, out.prompt_ms),
        out.n_generated,
        rate(out.n_generated, out.gen_ms)
    );
    if let Some(spec) = &out.spec {
        eprintln!("speculation: {}", spec.summary());
    }
}

const HELP: &str = "\
/bye             leave
/clear           forget the conversation
/think           turn thinking on (models that support it)
/no_think        turn thinking off
/set NAME VALUE  temp, top_k, top_p, min_p, seed, max_tokens, think_budget, system
/set             show the current settings
/help            this text
Ctrl-C stops a reply; Ctrl-D or /bye leaves.";

fn repl(
    chat: &mut ChatSession<'_>,
    stop: &AtomicBool,
    printer: &Printer,
    stats: bool,
) -> Result<()> {
    // rustyline installs its own SIGINT handler for as long as an editor lives, which
    // would swallow the Ctrl-C meant to stop a reply. So an editor lives only while a
    // line is read; history is carried between editors in memory and in a file.
    let history = history_path();
    let mut lines: Vec<String> = history
        .as_ref()
        .and_then(|h| std::fs::read_to_string(h).ok())
        .map(|t| {
            t.lines()
                .filter(|l| !l.starts_with("#V"))
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    let mode = chat.thinking_mode();
    eprintln!(
        "edge: chatting with {} (thinking: {}). /help for commands.",
        chat.session.model.path.display(),
        match mode {
            ThinkingMode::None => "not supported",
            ThinkingMode::Always => "always on",
            ThinkingMode::Switchable if chat.thinking_on() => "on",
            ThinkingMode::Switchable => "off",
        }
    );
    loop {
        let read = read_line(&lines);
        let line = match read {
            Ok(line) => line,
            Err(rustyline::error::ReadlineError::Interrupted) => continue,
            Err(rustyline::error::ReadlineError::Eof) => break,
            Err(e) => return Err(e).context("reading input"),
        };
        let input = line.trim();
        if input.is_empty() {
            continue;
        }
        lines.push(input.to_string());
        if let Some(cmd) = input.strip_prefix('/') {
            match handle_command(chat, cmd) {
                Ok(CommandOutcome::Quit) => break,
                Ok(CommandOutcome::Continue) => {}
                Err(e) => eprintln!("edge: {e}"),
            }
            continue;
        }
        stop.store(false, Ordering::SeqCst);
        match chat.send(input, stop, &mut |s| printer.print(s)) {
            Ok(out) => {
                printer.end_of_reply(&out);
                if stats {
                    print_stats(chat.session.model, &out);
                }
            }
            Err(e) => eprintln!("edge: error: {:#}", with_hints(e)),
        }
        stop.store(false, Ordering::SeqCst);
    }
    if let Some(h) = &history {
        let keep = lines.len().saturating_sub(1000);
        let _ = std::fs::write(h, lines[keep..].join("\n") + "\n");
    }
    Ok(())
}

/// Reads one line with a short-lived editor that knows the history so far.
fn read_line(history: &[String]) -> rustyline::Result<String> {
    let mut editor = rustyline::DefaultEditor::new()?;
    for entry in history {
        let _ = editor.add_history_entry(entry.as_str());
    }
    editor.readline(">>> ")
}

enum CommandOutcome {
    Continue,
    Quit,
}

fn handle_command(chat: &mut ChatSession<'_>, cmd: &str) -> Result<CommandOutcome> {
    let mut words = cmd.split_whitespace();
    let name = words.next().unwrap_or("");
    match name {
        "bye" | "exit" | "quit" => return Ok(CommandOutcome::Quit),
        "clear" => {
            chat.clear();
            eprintln!("edge: conversation cleared");
        }
        "think" | "no_think" => {
            let on = name == "think";
            match chat.thinking_mode() {
                ThinkingMode::None => bail!("this model has no thinking mode"),
                ThinkingMode::Always => bail!("this model always thinks; it cannot be switched"),
                ThinkingMode::Switchable => {
                    chat.settings.think = Some(on);
                    eprintln!("edge: thinking {}", if on { "on" } else { "off" });
                }
            }
        }
        "help" | "?" => eprintln!("{HELP}"),
        "set" => {
            let key = words.next();
            let value: Vec<&str> = words.collect();
            match key {
                None => eprintln!("{:#?}", chat.settings),
                Some(key) => set_value(chat, key, &value.join(" "))?,
            }
        }
        other => bail!("unknown command /{other}; /help lists them"),
    }
    Ok(CommandOutcome::Continue)
}

fn set_value(chat: &mut ChatSession<'_>, key: &str, value: &str) -> Result<()> {
    fn num<T: std::str::FromStr>(key: &str, v: &str) -> Result<T> {
        v.parse()
            .map_err(|_| anyhow::anyhow!("/set {key}: '{v}' is not a valid number"))
    }
    let s = &mut chat.settings;
    match key {
        "temp" => s.sampling.temp = Some(num::<f32>(key, value)?.max(0.0)),
        "top_k" => s.sampling.top_k = Some(num(key, value)?),
        "top_p" => s.sampling.top_p = Some(num::<f32>(key, value)?.clamp(0.0, 1.0)),
        "min_p" => s.sampling.min_p = Some(num::<f32>(key, value)?.clamp(0.0, 1.0)),
        "seed" => s.sampling.seed = Some(num(key, value)?),
        "max_tokens" => s.max_tokens = num::<u32>(key, value)?.max(1),
        "think_budget" => s.think_budget = Some(num(key, value)?),
        "system" => {
            s.system = (!value.is_empty()).then(|| value.to_string());
            chat.clear();
            eprintln!("edge: system prompt set; conversation cleared");
            return Ok(());
        }
        other => bail!("/set: unknown setting '{other}'"),
    }
    eprintln!("edge: {key} = {value}");
    Ok(())
}

fn history_path() -> Option<std::path::PathBuf> {
    let dirs = directories::ProjectDirs::from("", "", "edge")?;
    let dir = dirs.data_dir();
    std::fs::create_dir_all(dir).ok()?;
    Some(dir.join("chat_history.txt"))
}
