//! The model catalog: short names (`qwen3-0.6b`) for Hugging Face GGUF repos, with the
//! facts the planner needs. Pure data (`src/catalog.toml`, embedded); a user file can
//! add entries or replace entries of the same name.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::hub::names::{check_model_name, normalize_quant, RepoId};

/// The embedded catalog.
pub const BUILTIN_TOML: &str = include_str!("catalog.toml");

/// One short name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CatalogEntry {
    pub name: String,
    #[serde(default)]
    pub aliases: Vec<String>,
    #[serde(default)]
    pub description: String,
    /// GGUF repos, tried in order.
    pub repos: Vec<String>,
    /// Preferred quants when none is named, best first.
    #[serde(default)]
    pub quants: Vec<String>,
    pub arch: String,
    /// Total parameters, billions.
    pub params_b: f64,
    /// Parameters active per token, billions.
    pub active_params_b: f64,
    pub context_length: u64,
    pub thinking: bool,
    pub thinking_switchable: bool,
    /// A catalog model with this one's vocabulary that drafts for it (`--draft auto`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub draft: Option<String>,
}

impl CatalogEntry {
    /// The repos as validated ids.
    pub fn repo_ids(&self) -> Vec<RepoId> {
        // Validated when the catalog was loaded.
        self.repos
            .iter()
            .filter_map(|r| RepoId::parse(r).ok())
            .collect()
    }

    fn validate(&mut self) -> Result<(), String> {
        self.name = self.name.to_ascii_lowercase();
        check_model_name(&self.name).map_err(|e| format!("name '{}': {e}", self.name))?;
        for a in &mut self.aliases {
            *a = a.to_ascii_lowercase();
            check_model_name(a).map_err(|e| format!("alias '{a}': {e}"))?;
        }
        if self.repos.is_empty() {
            return Err("no repos".into());
        }
        for r in &self.repos {
            RepoId::parse(r)?;
        }
        for q in &mut self.quants {
            *q = normalize_quant(q)?;
        }
        if self.arch.trim().is_empty() {
            return Err("empty arch".into());
        }
        let params_ok = self.params_b.is_finite()
            && self.params_b > 0.0
            && self.active_params_b.is_finite()
            && self.active_params_b > 0.0
            && self.active_params_b <= self.params_b;
        if !params_ok {
            return Err("params_b and active_params_b must be > 0 with active <= total".into());
        }
        if self.context_length == 0 {
            return Err("context_length must be > 0".into());
        }
        if self.thinking_switchable && !self.thinking {
            return Err("thinking_switchable needs thinking = true".into());
        }
        Ok(())
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CatalogFile {
    #[serde(default)]
    model: Vec<CatalogEntry>,
}

/// Parses catalog TOML (`[[model]]` tables) and validates every entry.
pub fn parse_catalog(text: &str) -> Result<Vec<CatalogEntry>, String> {
    let file: CatalogFile = toml::from_str(text).map_err(|e| e.to_string().replace('\n', " "))?;
    let mut out: Vec<CatalogEntry> = Vec::new();
    for mut e in file.model {
        let name = e.name.clone();
        e.validate()
            .map_err(|why| format!("model '{name}': {why}"))?;
        if out.iter().any(|o| o.name == e.name) {
            return Err(format!("model '{}' is listed twice", e.name));
        }
        out.push(e);
    }
    Ok(out)
}

/// The catalog in effect: the embedded entries, then the user's.
#[derive(Debug, Clone)]
pub struct Catalog {
    entries: Vec<CatalogEntry>,
}

impl Catalog {
    /// The embedded catalog alone.
    pub fn builtin() -> Result<Catalog> {
        let entries = parse_catalog(BUILTIN_TOML)
            .map_err(anyhow::Error::msg)
            .context("the built-in catalog is invalid")?;
        Ok(Catalog { entries })
    }

    /// Adds `user` entries; an entry with the name of an existing one replaces it.
    pub fn with_overrides(mut self, user: Vec<CatalogEntry>) -> Catalog {
        for u in user {
            // A user name may also shadow an alias of a built-in entry.
            for e in &mut self.entries {
                e.aliases.retain(|a| *a != u.name);
            }
            match self.entries.iter_mut().find(|e| e.name == u.name) {
                Some(e) => *e = u,
                None => self.entries.push(u),
            }
        }
        self
    }

    /// The embedded catalog plus the user file, when there is one.
    pub fn load() -> Result<Catalog> {
        let builtin = Catalog::builtin()?;
        match user_catalog_path() {
            Some(p) => builtin.with_user_file(&p),
            None => Ok(builtin),
        }
    }

    fn with_user_file(self, path: &Path) -> Result<Catalog> {
        let explicit = std::env::var_os("EDGE_CATALOG").is_some();
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !explicit => return Ok(self),
            Err(e) => {
                return Err(e).with_context(|| format!("reading the catalog {}", path.display()))
            }
        };
        let user = parse_catalog(&text)
            .map_err(anyhow::Error::msg)
            .with_context(|| format!("invalid catalog {}", path.display()))?;
        Ok(self.with_overrides(user))
    }

    /// The entry for a name or alias (case-insensitive).
    pub fn find(&self, name: &str) -> Option<&CatalogEntry> {
        let name = name.to_ascii_lowercase();
        self.entries
            .iter()
            .find(|e| e.name == name)
            .or_else(|| self.entries.iter().find(|e| e.aliases.contains(&name)))
    }

    pub fn entries(&self) -> &[CatalogEntry] {
        &self.entries
    }
}

/// The user catalog: `$EDGE_CATALOG`, else `$EDGE_HOME/catalog.toml`, else
/// `catalog.toml` in edge's config dir (`~/.config/edge` on Linux).
pub fn user_catalog_path() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("EDGE_CATALOG").filter(|v| !v.is_empty()) {
        return Some(PathBuf::from(p));
    }
    if let Some(home) = crate::hub::store::edge_home_override() {
        return Some(home.join("catalog.toml"));
    }
    directories::ProjectDirs::from("", "", "edge").map(|d| d.config_dir().join("catalog.toml"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_catalog_parses_and_has_the_required_models() {
        let c = Catalog::builtin().unwrap();
        for name in [
            "qwen3-0.6b",
            "qwen3-1.7b",
            "qwen3-4b",
            "qwen3-8b",
            "qwen3-14b",
            "qwen3-32b",
            "qwen3-30b-a3b",
            "qwen3-235b-a22b",
            "qwen3-4b-instruct-2507",
            "qwen3-4b-thinking-2507",
            "qwen3-30b-a3b-instruct-2507",
            "qwen3-30b-a3b-thinking-2507",
            "qwen3-235b-a22b-instruct-2507",
            "qwen3-235b-a22b-thinking-2507",
            "llama4-scout",
            "llama4-maverick",
            "smollm2-135m",
        ] {
            let e = c.find(name).unwrap_or_else(|| panic!("{name} missing"));
            assert!(!e.repos.is_empty());
            assert_eq!(e.repo_ids().len(), e.repos.len(), "{name}");
        }
        assert_eq!(c.find("Qwen3-8B").unwrap().name, "qwen3-8b");
        assert_eq!(c.find("llama-4-scout").unwrap().name, "llama4-scout");
        assert!(c.find("qwen3-9b").is_none());
    }

    #[test]
    fn builtin_facts_are_consistent() {
        let c = Catalog::builtin().unwrap();
        let e = c.find("qwen3-30b-a3b").unwrap();
        assert_eq!(e.arch, "qwen3moe");
        assert!(e.active_params_b < e.params_b);
        assert!(e.thinking && e.thinking_switchable);
        let t = c.find("qwen3-4b-thinking-2507").unwrap();
        assert!(t.thinking && !t.thinking_switchable);
        let i = c.find("qwen3-4b-instruct-2507").unwrap();
        assert!(!i.thinking);
        assert_eq!(i.context_length, 262144);
        let s = c.find("llama4-scout").unwrap();
        assert_eq!(s.arch, "llama4");
        assert!(!s.repos.iter().any(|r| r.starts_with("meta-llama/")));
        // Names and aliases are unique across entries.
        let mut all: Vec<&str> = c
            .entries()
            .iter()
            .flat_map(|e| {
                std::iter::once(e.name.as_str()).chain(e.aliases.iter().map(|a| a.as_str()))
            })
            .collect();
        let n = all.len();
        all.sort();
        all.dedup();
        assert_eq!(all.len(), n);
        // Every draft is a smaller catalog model of the same family (Qwen 3's models
        // share one vocabulary); Llama 4 has none, so `--draft auto` is lookup there.
        for e in c.entries() {
            if let Some(d) = &e.draft {
                let d = c
                    .find(d)
                    .unwrap_or_else(|| panic!("{}: draft {d} missing", e.name));
                assert!(d.arch.starts_with("qwen3") && e.arch.starts_with("qwen3"));
                assert!(
                    d.params_b * 4.0 <= e.params_b,
                    "{} drafts for {}",
                    d.name,
                    e.name
                );
            }
        }
        assert_eq!(
            c.find("qwen3-8b").unwrap().draft.as_deref(),
            Some("qwen3-0.6b")
        );
        assert!(c.find("llama4-scout").unwrap().draft.is_none());
    }

    #[test]
    fn user_entries_add_and_override() {
        let user = parse_catalog(
            r#"
            [[model]]
            name = "Qwen3-8B"
            repos = ["me/my-qwen3-8b-GGUF"]
            quants = ["q6_k"]
            arch = "qwen3"
            params_b = 8.2
            active_params_b = 8.2
            context_length = 32768
            thinking = true
            thinking_switchable = true

            [[model]]
            name = "tiny"
            repos = ["me/tiny-GGUF"]
            arch = "llama"
            params_b = 0.1
            active_params_b = 0.1
            context_length = 2048
            thinking = false
            thinking_switchable = false
            "#,
        )
        .unwrap();
        let c = Catalog::builtin().unwrap().with_overrides(user);
        let e = c.find("qwen3-8b").unwrap();
        assert_eq!(e.repos, ["me/my-qwen3-8b-GGUF"]);
        assert_eq!(e.quants, ["Q6_K"]);
        assert!(c.find("tiny").is_some());
        assert!(c.find("qwen3-0.6b").is_some());
    }

    #[test]
    fn invalid_entries_are_reported() {
        let base = r#"
            [[model]]
            name = "x"
            repos = ["a/b"]
            arch = "llama"
            params_b = 1.0
            active_params_b = 1.0
            context_length = 2048
            thinking = false
            thinking_switchable = false
        "#;
        parse_catalog(base).unwrap();
        for (from, to, needle) in [
            ("name = \"x\"", "name = \"bad name\"", "not allowed"),
            ("repos = [\"a/b\"]", "repos = [\"../b\"]", "invalid repo id"),
            ("repos = [\"a/b\"]", "repos = []", "no repos"),
            ("active_params_b = 1.0", "active_params_b = 2.0", "active"),
            (
                "thinking_switchable = false",
                "thinking_switchable = true",
                "thinking",
            ),
            ("arch = \"llama\"", "arch = \"llama\"\nbogus = 1", "bogus"),
        ] {
            let text = base.replace(from, to);
            let e = parse_catalog(&text).unwrap_err();
            assert!(e.contains(needle), "{needle}: {e}");
        }
        let twice = format!("{base}{base}");
        assert!(parse_catalog(&twice).unwrap_err().contains("twice"));
    }
}
