//! `edge list [--json]`: the installed models (name, quant, size, path);
//! `edge list --catalog`: the short names edge knows.

use std::process::ExitCode;

use anyhow::Result;
use serde_json::json;

use crate::catalog::Catalog;
use crate::hub::installed;
use crate::hub::store::ModelSource;
use crate::term::human_bytes;
use crate::term::print_table;

#[derive(Debug, clap::Args)]
pub struct ListArgs {
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// List the catalog's short names instead of the installed models.
    #[arg(long)]
    pub catalog: bool,
}

pub fn run(args: ListArgs, _verbose: bool) -> Result<ExitCode> {
    if args.catalog {
        return list_catalog(args.json);
    }
    let models = installed()?;
    if args.json {
        let rows: Vec<_> = models
            .iter()
            .map(|(m, ok)| {
                let (source, repo, commit) = match &m.source {
                    ModelSource::Hf { repo, commit, .. } => ("hf", Some(repo), Some(commit)),
                    ModelSource::Import { .. } => ("import", None, None),
                };
                json!({
                    "name": m.name,
                    "quant": m.quant,
                    "size": m.size,
                    "path": m.path,
                    "present": ok,
                    "source": source,
                    "repo": repo,
                    "commit": commit,
                    "files": m.files,
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(ExitCode::SUCCESS);
    }
    if models.is_empty() {
        println!("no models installed (try `edge pull qwen3-0.6b`, or `edge list --catalog`)");
        return Ok(ExitCode::SUCCESS);
    }
    let rows: Vec<[String; 4]> = models
        .iter()
        .map(|(m, ok)| {
            let path = if *ok {
                m.path.display().to_string()
            } else {
                format!("{} (missing)", m.path.display())
            };
            [
                m.name.clone(),
                m.quant.clone().unwrap_or_else(|| "-".into()),
                human_bytes(m.size),
                path,
            ]
        })
        .collect();
    print_table(&["NAME", "QUANT", "SIZE", "PATH"], &rows);
    Ok(ExitCode::SUCCESS)
}

fn list_catalog(json: bool) -> Result<ExitCode> {
    let catalog = Catalog::load()?;
    if json {
        println!("{}", serde_json::to_string_pretty(catalog.entries())?);
        return Ok(ExitCode::SUCCESS);
    }
    let rows: Vec<[String; 4]> = catalog
        .entries()
        .iter()
        .map(|e| {
            let params = if e.active_params_b < e.params_b {
                format!("{}B-A{}B", e.params_b, e.active_params_b)
            } else {
                format!("{}B", e.params_b)
            };
            let think = match (e.thinking, e.thinking_switchable) {
                (true, true) => "switchable",
                (true, false) => "always",
                _ => "no",
            };
            [
                e.name.clone(),
                params,
                think.to_string(),
                e.repos.first().cloned().unwrap_or_default(),
            ]
        })
        .collect();
    print_table(&["NAME", "PARAMS", "THINKING", "REPO"], &rows);
    Ok(ExitCode::SUCCESS)
}
