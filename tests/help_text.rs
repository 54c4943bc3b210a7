//! Golden `--help` of every subcommand (tests/help/*.txt), so help text cannot drift
//! from behaviour unnoticed: a change to a flag or its description must update the
//! golden file in the same commit. Regenerate after a deliberate change with
//! `EDGE_UPDATE_HELP=1 cargo test --release --test help_text`.

mod common;

use std::path::{Path, PathBuf};

use clap::CommandFactory;
use common::*;

/// Every subcommand path, hidden ones included: `[]`, `["run"]`, `["profile", "list"]`…
fn command_paths() -> Vec<Vec<String>> {
    fn walk(cmd: &clap::Command, prefix: Vec<String>, out: &mut Vec<Vec<String>>) {
        out.push(prefix.clone());
        for sub in cmd.get_subcommands() {
            if sub.get_name() == "help" {
                continue;
            }
            let mut p = prefix.clone();
            p.push(sub.get_name().to_string());
            walk(sub, p, out);
        }
    }
    let mut out = Vec::new();
    walk(&edge::cli::Cli::command(), Vec::new(), &mut out);
    out
}

fn golden_path(path: &[String]) -> PathBuf {
    let name = if path.is_empty() {
        "edge".to_string()
    } else {
        format!("edge-{}", path.join("-"))
    };
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/help")
        .join(format!("{name}.txt"))
}

#[test]
fn every_subcommand_help_matches_its_golden_file() {
    let update = std::env::var_os("EDGE_UPDATE_HELP").is_some();
    let paths = command_paths();
    assert!(paths.len() > 15, "too few subcommands found: {paths:?}");
    let mut stale = Vec::new();
    for path in &paths {
        let mut args: Vec<&str> = path.iter().map(String::as_str).collect();
        args.push("--help");
        let o = edge().env("NO_COLOR", "1").args(&args).output().unwrap();
        assert!(o.status.success(), "edge {args:?}: {}", stderr(&o));
        let help = stdout(&o);
        assert!(help.contains("Usage: edge"), "edge {args:?}: {help}");
        let golden = golden_path(path);
        if update {
            std::fs::create_dir_all(golden.parent().unwrap()).unwrap();
            std::fs::write(&golden, &help).unwrap();
            continue;
        }
        match std::fs::read_to_string(&golden) {
            Ok(want) if want == help => {}
            Ok(_) => stale.push(format!("{} differs", golden.display())),
            Err(_) => stale.push(format!("{} is missing", golden.display())),
        }
    }
    // A golden file for a subcommand that no longer exists is stale too.
    let known: Vec<PathBuf> = paths.iter().map(|p| golden_path(p)).collect();
    for entry in
        std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/help")).unwrap()
    {
        let p = entry.unwrap().path();
        if !known.contains(&p) {
            stale.push(format!("{} belongs to no subcommand", p.display()));
        }
    }
    assert!(
        stale.is_empty(),
        "help text changed; review and rerun with EDGE_UPDATE_HELP=1:\n{}",
        stale.join("\n")
    );
}

/// The one default-context policy, stated where users read it.
#[test]
fn context_help_states_the_planner_policy() {
    for cmd in ["run", "batch", "plan"] {
        let o = run_edge(&[cmd, "--help"]);
        // Words, not line wrapping, are what users read.
        let help = stdout(&o).split_whitespace().collect::<Vec<_>>().join(" ");
        assert!(
            help.contains("up to 8192") && help.contains("until the plan fits"),
            "edge {cmd} --help: {help}"
        );
        assert!(
            !help.contains("capped at 4096"),
            "edge {cmd} --help: {help}"
        );
    }
}
