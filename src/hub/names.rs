//! Pure model-reference logic, kept apart from all I/O so it can be unit-tested:
//! parsing what the user typed, validating repo ids and file names that come from the
//! network, recognising quant types and split GGUFs in file names, and choosing a quant.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Quant order used when no quant is named and the catalog entry's own list has none of
/// the repo's files. The planner issue replaces this with a fit check; until then the
/// first quant here that the repo has wins (roughly: the common 4-bit K-quants first,
/// then higher quality, then smaller, with float weights last).
pub const DEFAULT_QUANT_ORDER: &[&str] = &[
    "Q4_K_M",
    "UD-Q4_K_XL",
    "Q4_K_S",
    "Q5_K_M",
    "IQ4_XS",
    "IQ4_NL",
    "Q4_0",
    "Q4_1",
    "Q5_K_S",
    "Q5_0",
    "Q5_1",
    "Q6_K",
    "UD-Q6_K_XL",
    "Q8_0",
    "UD-Q8_K_XL",
    "UD-Q3_K_XL",
    "Q3_K_L",
    "Q3_K_M",
    "Q3_K_S",
    "UD-Q2_K_XL",
    "Q2_K",
    "Q2_K_L",
    "UD-IQ2_XXS",
    "UD-IQ1_S",
];

/// A Hugging Face model repository id, `ORG/NAME`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RepoId {
    org: String,
    name: String,
}

impl RepoId {
    /// Parses and validates `ORG/NAME` with the Hub's own rules (letters, digits, `-`,
    /// `_`, `.`; no `--` or `..`; `-` and `.` neither first nor last; at most 96 chars).
    pub fn parse(s: &str) -> Result<RepoId, String> {
        let Some((org, name)) = s.split_once('/') else {
            return Err(format!("'{s}' is not a Hugging Face repo id (ORG/NAME)"));
        };
        for part in [org, name] {
            check_repo_part(part).map_err(|why| format!("invalid repo id '{s}': {why}"))?;
        }
        Ok(RepoId {
            org: org.to_string(),
            name: name.to_string(),
        })
    }

    pub fn org(&self) -> &str {
        &self.org
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The folder name in the Hugging Face cache layout: `models--ORG--NAME`.
    pub fn cache_folder(&self) -> String {
        format!("models--{}--{}", self.org, self.name)
    }
}

impl fmt::Display for RepoId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.org, self.name)
    }
}

fn check_repo_part(p: &str) -> Result<(), &'static str> {
    if p.is_empty() {
        return Err("empty name part");
    }
    if p.len() > 96 {
        return Err("longer than 96 characters");
    }
    if !p
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return Err("only letters, digits, '-', '_' and '.' are allowed");
    }
    if p.contains("--") || p.contains("..") {
        return Err("'--' and '..' are not allowed");
    }
    if p.starts_with(['-', '.']) || p.ends_with(['-', '.']) {
        return Err("'-' and '.' cannot start or end a name");
    }
    Ok(())
}

/// What the user typed as MODEL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelRef {
    /// A file on disk (it exists, or the text looks like a path).
    Path(PathBuf),
    /// `hf.co/ORG/REPO[:QUANT]`: any GGUF repo on the Hub.
    Hf { repo: RepoId, quant: Option<String> },
    /// `NAME[:QUANT]`: a catalog short name or an imported name (lowercased).
    Name { name: String, quant: Option<String> },
}

impl fmt::Display for ModelRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (base, quant) = match self {
            ModelRef::Path(p) => return write!(f, "{}", p.display()),
            ModelRef::Hf { repo, quant } => (format!("hf.co/{repo}"), quant),
            ModelRef::Name { name, quant } => (name.clone(), quant),
        };
        match quant {
            Some(q) => write!(f, "{base}:{q}"),
            None => write!(f, "{base}"),
        }
    }
}

const NAME_HELP: &str =
    "use a catalog name such as qwen3-0.6b, hf.co/ORG/REPO[:QUANT], or a path to a .gguf";

impl ModelRef {
    /// Parses MODEL. `exists` tells whether a path exists (injected to keep this pure).
    ///
    /// Order: `hf.co/…` (also `huggingface.co/…`, with or without `https://`), then an
    /// existing path, then anything path-like (a separator, `.gguf`, a leading `.` or
    /// `~`), then `NAME[:QUANT]`.
    pub fn parse(input: &str, exists: impl Fn(&Path) -> bool) -> Result<ModelRef, String> {
        let s = input.trim();
        if s.is_empty() {
            return Err("no model given".into());
        }
        let lower = s.to_ascii_lowercase();
        let no_scheme = lower
            .strip_prefix("https://")
            .or_else(|| lower.strip_prefix("http://"));
        let unschemed = no_scheme.unwrap_or(&lower);
        for host in ["hf.co/", "huggingface.co/"] {
            if unschemed.starts_with(host) {
                let skip = (s.len() - unschemed.len()) + host.len();
                return parse_hf(&s[skip..]).map_err(|e| format!("{e} (in '{s}')"));
            }
        }
        if no_scheme.is_some() {
            return Err(format!(
                "'{s}': only Hugging Face references (hf.co/ORG/REPO[:QUANT]) can be downloaded"
            ));
        }
        if exists(Path::new(s)) {
            return Ok(ModelRef::Path(PathBuf::from(s)));
        }
        let path_like = s.contains('/')
            || s.contains('\\')
            || lower.ends_with(".gguf")
            || s.starts_with('.')
            || s.starts_with('~');
        if path_like {
            return Ok(ModelRef::Path(PathBuf::from(s)));
        }
        let (name, quant) = match s.split_once(':') {
            Some((n, q)) => (n, Some(q)),
            None => (s, None),
        };
        let name = name.to_ascii_lowercase();
        check_model_name(&name)
            .map_err(|why| format!("invalid model name '{s}': {why}; {NAME_HELP}"))?;
        let quant = match quant {
            Some(q) => Some(normalize_quant(q).map_err(|why| format!("'{s}': {why}"))?),
            None => None,
        };
        Ok(ModelRef::Name { name, quant })
    }
}

fn parse_hf(rest: &str) -> Result<ModelRef, String> {
    let (repo, quant) = match rest.split_once(':') {
        Some((r, q)) => (r, Some(q)),
        None => (rest, None),
    };
    let repo = repo.trim_end_matches('/');
    if repo.matches('/').count() != 1 {
        return Err(format!("expected hf.co/ORG/REPO[:QUANT], got hf.co/{rest}"));
    }
    let repo = RepoId::parse(repo)?;
    let quant = match quant {
        Some(q) => Some(normalize_quant(q)?),
        None => None,
    };
    Ok(ModelRef::Hf { repo, quant })
}

/// A catalog or imported model name: lowercase letters, digits, `.`, `_`, `-`; starts
/// with a letter or digit; at most 64 characters.
pub fn check_model_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("empty name".into());
    }
    if name.len() > 64 {
        return Err("longer than 64 characters".into());
    }
    if !name.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit()) {
        return Err("must start with a letter or digit".into());
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-')))
    {
        return Err(format!("character {c:?} is not allowed"));
    }
    if name.contains("..") {
        return Err("'..' is not allowed".into());
    }
    Ok(())
}

/// Normalises a quant tag (`q4_k_m` → `Q4_K_M`); rejects anything but letters, digits,
/// `_`, `-` and `.`, up to 32 characters.
pub fn normalize_quant(q: &str) -> Result<String, String> {
    let q = q.trim();
    if q.is_empty() {
        return Err("empty quant after ':'".into());
    }
    if q.len() > 32
        || !q
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
    {
        return Err(format!("invalid quant '{q}'"));
    }
    Ok(q.to_ascii_uppercase())
}

/// Checks a file path from a repo listing before it is used as a local path: relative,
/// `/`-separated, no empty, `.` or `..` components, no backslashes, drive letters (`:`)
/// or control characters, at most 1024 bytes.
pub fn check_repo_path(p: &str) -> Result<(), String> {
    let bad = |why: &str| {
        Err(format!(
            "unsafe file name {p:?} in the repo listing ({why})"
        ))
    };
    if p.is_empty() {
        return bad("empty");
    }
    if p.len() > 1024 {
        return bad("too long");
    }
    if p.starts_with('/') {
        return bad("absolute path");
    }
    if p.contains('\\') || p.contains(':') {
        return bad("'\\' and ':' are not allowed");
    }
    if p.chars().any(|c| c.is_control()) {
        return bad("control character");
    }
    for comp in p.split('/') {
        match comp {
            "" => return bad("empty path component"),
            "." | ".." => return bad("path traversal"),
            _ => {}
        }
    }
    Ok(())
}

/// True for a lowercase or uppercase 64-digit hex string (an LFS sha256).
pub fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// True for a git commit id as the Hub returns it (40 hex digits; 64 accepted for
/// sha256 repos).
pub fn is_commit_hex(s: &str) -> bool {
    (s.len() == 40 || s.len() == 64) && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// A file in a repo listing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoteFile {
    /// Path inside the repo (`/`-separated, checked with [`check_repo_path`]).
    pub path: String,
    pub size: u64,
    /// LFS sha256 (lowercase hex); `None` for files stored in git itself.
    pub sha256: Option<String>,
}

/// The shard numbering of a split GGUF (`PREFIX-00001-of-00003.gguf`, as llama.cpp's
/// `llama_split_path` writes it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SplitName {
    /// The path without `-0000i-of-0000n.gguf`.
    pub prefix: String,
    pub index: u32,
    pub count: u32,
}

pub fn split_name(path: &str) -> Option<SplitName> {
    let stem = strip_gguf(path)?;
    // "-00001-of-00003" is 15 bytes.
    if stem.len() < 16 || !stem.is_char_boundary(stem.len() - 15) {
        return None;
    }
    let (prefix, tail) = stem.split_at(stem.len() - 15);
    let b = tail.as_bytes();
    if b[0] != b'-' || &tail[6..10] != "-of-" {
        return None;
    }
    let digits = |s: &str| s.len() == 5 && s.bytes().all(|c| c.is_ascii_digit());
    if !digits(&tail[1..6]) || !digits(&tail[10..15]) {
        return None;
    }
    let index: u32 = tail[1..6].parse().ok()?;
    let count: u32 = tail[10..15].parse().ok()?;
    if index == 0 || count == 0 || index > count {
        return None;
    }
    Some(SplitName {
        prefix: prefix.to_string(),
        index,
        count,
    })
}

fn strip_gguf(path: &str) -> Option<&str> {
    let n = path.len();
    if n > 5 && path.is_char_boundary(n - 5) && path[n - 5..].eq_ignore_ascii_case(".gguf") {
        Some(&path[..n - 5])
    } else {
        None
    }
}

fn is_quant_token(t: &str) -> bool {
    let t = t.to_ascii_uppercase();
    if matches!(
        t.as_str(),
        "F32" | "F16" | "BF16" | "FP16" | "FP32" | "MXFP4" | "MXFP4_MOE"
    ) {
        return true;
    }
    let rest = t
        .strip_prefix("IQ")
        .or_else(|| t.strip_prefix("TQ"))
        .or_else(|| t.strip_prefix('Q'));
    let Some(rest) = rest else { return false };
    let mut groups = rest.split('_');
    let first = groups.next().unwrap_or("");
    if first.len() != 1 || !first.as_bytes()[0].is_ascii_digit() {
        return false;
    }
    let mut n = 0;
    for g in groups {
        n += 1;
        if n > 4 || g.is_empty() || g.len() > 4 || !g.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return false;
        }
    }
    true
}

/// The quant type named in a GGUF path: the last quant-looking token of the file name
/// (tokens split at `-` and `.`, with Unsloth's `UD-` prefix kept), else of its folder.
/// `Qwen3-8B-Q4_K_M.gguf` → `Q4_K_M`; `UD-Q4_K_XL/…-00001-of-00002.gguf` → `UD-Q4_K_XL`.
pub fn quant_of_path(path: &str) -> Option<String> {
    let stem = match split_name(path) {
        Some(s) => s.prefix,
        None => strip_gguf(path).unwrap_or(path).to_string(),
    };
    let mut parts = stem.rsplit('/');
    let file = parts.next().unwrap_or("");
    if let Some(q) = quant_in(file) {
        return Some(q);
    }
    parts.next().and_then(quant_in)
}

fn quant_in(name: &str) -> Option<String> {
    let tokens: Vec<&str> = name.split(['-', '.']).collect();
    for i in (0..tokens.len()).rev() {
        if is_quant_token(tokens[i]) {
            let q = tokens[i].to_ascii_uppercase();
            if i > 0 && tokens[i - 1].eq_ignore_ascii_case("UD") {
                return Some(format!("UD-{q}"));
            }
            return Some(q);
        }
    }
    None
}

/// One downloadable model in a repo: a single GGUF or all shards of a split one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GgufOption {
    /// Upper-case quant (`Q4_K_M`), or empty when the name has none.
    pub quant: String,
    /// The files in shard order (one for an unsplit GGUF).
    pub files: Vec<RemoteFile>,
    pub size: u64,
}

impl GgufOption {
    /// The file llama.cpp is given (the first shard).
    pub fn main_path(&self) -> &str {
        &self.files[0].path
    }
}

fn is_model_gguf(path: &str) -> bool {
    let base = path.rsplit('/').next().unwrap_or(path).to_ascii_lowercase();
    strip_gguf(path).is_some() && !base.starts_with("mmproj") && !base.contains("imatrix")
}

/// Groups a listing into model options: every `.gguf` that is not a vision projector
/// (`mmproj*`) or an imatrix, with split shards gathered in order. A split set with a
/// missing or duplicate shard is left out. Sorted by path.
pub fn gguf_options(files: &[RemoteFile]) -> Vec<GgufOption> {
    use std::collections::BTreeMap;
    let mut singles = Vec::new();
    let mut splits: BTreeMap<(String, u32), Vec<(u32, &RemoteFile)>> = BTreeMap::new();
    for f in files.iter().filter(|f| is_model_gguf(&f.path)) {
        match split_name(&f.path) {
            Some(s) => splits
                .entry((s.prefix, s.count))
                .or_default()
                .push((s.index, f)),
            None => singles.push(GgufOption {
                quant: quant_of_path(&f.path).unwrap_or_default(),
                files: vec![f.clone()],
                size: f.size,
            }),
        }
    }
    for ((_, count), mut shards) in splits {
        shards.sort_by_key(|(i, _)| *i);
        let complete = shards.len() == count as usize
            && shards
                .iter()
                .enumerate()
                .all(|(k, (i, _))| *i == k as u32 + 1);
        if !complete {
            continue;
        }
        let files: Vec<RemoteFile> = shards.into_iter().map(|(_, f)| f.clone()).collect();
        singles.push(GgufOption {
            quant: quant_of_path(&files[0].path).unwrap_or_default(),
            size: files.iter().map(|f| f.size).sum(),
            files,
        });
    }
    singles.sort_by(|a, b| a.main_path().cmp(b.main_path()));
    singles
}

/// Why no option was chosen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChooseError {
    /// The repo has no model GGUF at all.
    NoGguf,
    /// The named quant is not there; `available` lists what is.
    QuantNotFound {
        want: String,
        available: Vec<String>,
    },
    /// Nothing fits the size budget.
    NoneFits { budget: u64, smallest: u64 },
}

impl fmt::Display for ChooseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ChooseError::NoGguf => write!(f, "no GGUF model files"),
            ChooseError::QuantNotFound { want, available } => {
                write!(f, "no {want} GGUF (available: {})", available.join(", "))
            }
            ChooseError::NoneFits { budget, smallest } => write!(
                f,
                "no quant fits this machine ({} for weights; the smallest file is {}); name one with :QUANT to pull it anyway, or see `edge plan`",
                crate::term::human_bytes(*budget),
                crate::term::human_bytes(*smallest)
            ),
        }
    }
}

fn quant_eq(a: &str, b: &str) -> bool {
    a.eq_ignore_ascii_case(b)
}

fn strip_ud(q: &str) -> &str {
    if q.len() > 3 && q[..3].eq_ignore_ascii_case("UD-") {
        &q[3..]
    } else {
        q
    }
}

/// Picks the option to download.
///
/// - `want` (a quant the user named) must match, case-insensitively; `Q4_K_XL` also
///   matches Unsloth's `UD-Q4_K_XL` when only that exists.
/// - Otherwise the first of `preferred` (the catalog entry's list), then
///   [`DEFAULT_QUANT_ORDER`], then other quantized files, then float weights; smaller
///   first within a rank.
/// - `max_bytes` (the planner's budget, `None` until it lands) drops what does not fit.
pub fn choose_option<'a>(
    options: &'a [GgufOption],
    want: Option<&str>,
    preferred: &[String],
    max_bytes: Option<u64>,
) -> Result<&'a GgufOption, ChooseError> {
    if options.is_empty() {
        return Err(ChooseError::NoGguf);
    }
    if let Some(want) = want {
        let exact = options.iter().filter(|o| quant_eq(&o.quant, want));
        let loose = options
            .iter()
            .filter(|o| quant_eq(strip_ud(&o.quant), strip_ud(want)));
        let pick = |it: &mut dyn Iterator<Item = &'a GgufOption>| {
            it.min_by(|a, b| {
                let depth = |o: &GgufOption| o.main_path().matches('/').count();
                (depth(a), a.main_path()).cmp(&(depth(b), b.main_path()))
            })
        };
        if let Some(o) = pick(&mut exact.clone()).or_else(|| pick(&mut loose.clone())) {
            return Ok(o);
        }
        return Err(ChooseError::QuantNotFound {
            want: want.to_string(),
            available: available_quants(options),
        });
    }
    let rank = |o: &GgufOption| -> usize {
        if let Some(i) = preferred.iter().position(|p| quant_eq(p, &o.quant)) {
            return i;
        }
        let base = preferred.len();
        if let Some(i) = DEFAULT_QUANT_ORDER
            .iter()
            .position(|p| quant_eq(p, &o.quant))
        {
            return base + i;
        }
        let base = base + DEFAULT_QUANT_ORDER.len();
        let float = matches!(o.quant.as_str(), "F32" | "F16" | "BF16" | "FP16" | "FP32");
        if o.quant.is_empty() {
            base + 2
        } else if float {
            base + 1
        } else {
            base
        }
    };
    let fits: Vec<&GgufOption> = options
        .iter()
        .filter(|o| max_bytes.is_none_or(|b| o.size <= b))
        .collect();
    if fits.is_empty() {
        return Err(ChooseError::NoneFits {
            budget: max_bytes.unwrap_or(0),
            smallest: options.iter().map(|o| o.size).min().unwrap_or(0),
        });
    }
    Ok(fits
        .into_iter()
        .min_by(|a, b| (rank(a), a.size, a.main_path()).cmp(&(rank(b), b.size, b.main_path())))
        .expect("non-empty"))
}

/// The distinct quants of a listing, in path order.
pub fn available_quants(options: &[GgufOption]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for o in options {
        let q = if o.quant.is_empty() {
            o.main_path().to_string()
        } else {
            o.quant.clone()
        };
        if !out.contains(&q) {
            out.push(q);
        }
    }
    out
}

/// Percent-encodes one path segment for a URL (RFC 3986 unreserved characters kept).
pub fn encode_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Percent-encodes a `/`-separated repo path, segment by segment.
pub fn encode_path(p: &str) -> String {
    p.split('/')
        .map(encode_segment)
        .collect::<Vec<_>>()
        .join("/")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<ModelRef, String> {
        ModelRef::parse(s, |_| false)
    }

    fn rf(path: &str, size: u64) -> RemoteFile {
        RemoteFile {
            path: path.into(),
            size,
            sha256: Some("a".repeat(64)),
        }
    }

    #[test]
    fn parses_catalog_names_with_and_without_quant() {
        assert_eq!(
            parse("qwen3-0.6b").unwrap(),
            ModelRef::Name {
                name: "qwen3-0.6b".into(),
                quant: None
            }
        );
        assert_eq!(
            parse("Qwen3-8B:q4_k_m").unwrap(),
            ModelRef::Name {
                name: "qwen3-8b".into(),
                quant: Some("Q4_K_M".into())
            }
        );
        assert_eq!(
            parse("qwen3-8b:Q4_K_M").unwrap().to_string(),
            "qwen3-8b:Q4_K_M"
        );
    }

    #[test]
    fn parses_hf_references() {
        for s in [
            "hf.co/unsloth/Qwen3-8B-GGUF:q8_0",
            "https://hf.co/unsloth/Qwen3-8B-GGUF:Q8_0",
            "huggingface.co/unsloth/Qwen3-8B-GGUF:Q8_0",
            "HF.CO/unsloth/Qwen3-8B-GGUF:Q8_0",
        ] {
            let r = parse(s).unwrap();
            let ModelRef::Hf { repo, quant } = &r else {
                panic!("{s}: {r:?}")
            };
            assert_eq!(repo.to_string(), "unsloth/Qwen3-8B-GGUF", "{s}");
            assert_eq!(quant.as_deref(), Some("Q8_0"), "{s}");
            assert_eq!(r.to_string(), "hf.co/unsloth/Qwen3-8B-GGUF:Q8_0");
        }
        let r = parse("hf.co/Qwen/Qwen3-0.6B-GGUF").unwrap();
        assert!(matches!(r, ModelRef::Hf { quant: None, .. }));
    }

    #[test]
    fn rejects_bad_hf_references() {
        for s in [
            "hf.co/",
            "hf.co/org",
            "hf.co/org/repo/extra",
            "hf.co/../etc",
            "hf.co/org/..",
            "hf.co/org/re po",
            "hf.co/org/repo:",
            "hf.co/org/repo:q4/../../x",
            "hf.co/-org/repo",
            "hf.co/org--x/repo",
            "https://example.com/model.gguf",
        ] {
            assert!(parse(s).is_err(), "{s} should be rejected: {:?}", parse(s));
        }
    }

    #[test]
    fn paths_stay_paths() {
        for s in [
            "model.gguf",
            "./m",
            "dir/m",
            "/abs/x.GGUF",
            "~/m",
            "C:\\m\\x.gguf",
        ] {
            assert!(matches!(parse(s).unwrap(), ModelRef::Path(_)), "{s}");
        }
        // An existing file wins over a name.
        let r = ModelRef::parse("qwen3-0.6b", |p| p == Path::new("qwen3-0.6b")).unwrap();
        assert_eq!(r, ModelRef::Path("qwen3-0.6b".into()));
    }

    #[test]
    fn rejects_bad_names() {
        for s in ["bad name", "x:", "-x", "naïve", "a:b c", "x!"] {
            let e = parse(s).unwrap_err();
            assert!(!e.is_empty(), "{s}");
        }
        assert_eq!(parse("  ").unwrap_err(), "no model given");
    }

    #[test]
    fn repo_paths_are_checked() {
        for ok in [
            "x.gguf",
            "Q4_K_M/x-00001-of-00002.gguf",
            "a b/c.gguf",
            "..x.gguf",
        ] {
            check_repo_path(ok).unwrap();
        }
        for bad in [
            "../x.gguf",
            "/etc/x",
            "a/../../x.gguf",
            "a//b.gguf",
            "./x.gguf",
            "a\\..\\x.gguf",
            "C:x.gguf",
            "x\n.gguf",
            "",
            "a/",
        ] {
            let e = check_repo_path(bad).unwrap_err();
            assert!(e.contains("unsafe file name"), "{bad}: {e}");
        }
    }

    #[test]
    fn quant_tokens_from_file_names() {
        let cases = [
            ("Qwen3-8B-Q4_K_M.gguf", Some("Q4_K_M")),
            ("qwen3-0.6b-q8_0.gguf", Some("Q8_0")),
            ("SmolLM2-135M-Instruct.Q4_1.gguf", Some("Q4_1")),
            ("smollm2-135m-instruct-q4_1.gguf", Some("Q4_1")),
            ("Qwen3-30B-A3B-IQ4_XS.gguf", Some("IQ4_XS")),
            ("Qwen3-8B-BF16.gguf", Some("BF16")),
            ("ggml-model-f16.gguf", Some("F16")),
            (
                "UD-Q4_K_XL/Llama-4-Scout-17B-16E-Instruct-UD-Q4_K_XL-00001-of-00002.gguf",
                Some("UD-Q4_K_XL"),
            ),
            ("Q4_K_M/shard-00001-of-00003.gguf", Some("Q4_K_M")),
            ("Qwen3-235B-A22B-Q4_0_4_4.gguf", Some("Q4_0_4_4")),
            ("Qwen3-8B-UD-IQ2_XXS.gguf", Some("UD-IQ2_XXS")),
            ("model.gguf", None),
            ("Qwen3-8B.gguf", None),
        ];
        for (p, want) in cases {
            assert_eq!(quant_of_path(p).as_deref(), want, "{p}");
        }
    }

    #[test]
    fn split_names() {
        assert_eq!(
            split_name("Q4_K_M/Llama-4-Scout-Q4_K_M-00002-of-00003.gguf"),
            Some(SplitName {
                prefix: "Q4_K_M/Llama-4-Scout-Q4_K_M".into(),
                index: 2,
                count: 3
            })
        );
        for no in [
            "x.gguf",
            "x-00000-of-00002.gguf",
            "x-00003-of-00002.gguf",
            "x-0001-of-00002.gguf",
            "x-00001-of-00002.bin",
            "-00001-of-00002.gguf",
        ] {
            assert_eq!(split_name(no), None, "{no}");
        }
    }

    #[test]
    fn options_group_splits_and_skip_projectors() {
        let files = vec![
            rf("README.md", 10),
            rf("mmproj-F16.gguf", 5),
            rf("M-Q8_0.gguf", 800),
            rf("Q4_K_M/M-Q4_K_M-00002-of-00002.gguf", 200),
            rf("Q4_K_M/M-Q4_K_M-00001-of-00002.gguf", 300),
            // incomplete split: left out
            rf("Q2_K/M-Q2_K-00001-of-00003.gguf", 100),
            rf("Q2_K/M-Q2_K-00003-of-00003.gguf", 100),
        ];
        let opts = gguf_options(&files);
        assert_eq!(opts.len(), 2, "{opts:?}");
        assert_eq!(opts[0].quant, "Q8_0");
        assert_eq!(opts[1].quant, "Q4_K_M");
        assert_eq!(opts[1].size, 500);
        assert_eq!(
            opts[1]
                .files
                .iter()
                .map(|f| f.path.as_str())
                .collect::<Vec<_>>(),
            [
                "Q4_K_M/M-Q4_K_M-00001-of-00002.gguf",
                "Q4_K_M/M-Q4_K_M-00002-of-00002.gguf"
            ]
        );
        assert_eq!(opts[1].main_path(), "Q4_K_M/M-Q4_K_M-00001-of-00002.gguf");
    }

    #[test]
    fn chooses_explicit_quant_case_insensitively() {
        let opts = gguf_options(&[
            rf("M-Q8_0.gguf", 800),
            rf("M-Q4_K_M.gguf", 400),
            rf("M-UD-Q4_K_XL.gguf", 450),
        ]);
        assert_eq!(
            choose_option(&opts, Some("q8_0"), &[], None).unwrap().quant,
            "Q8_0"
        );
        assert_eq!(
            choose_option(&opts, Some("Q4_K_XL"), &[], None)
                .unwrap()
                .quant,
            "UD-Q4_K_XL"
        );
        let e = choose_option(&opts, Some("Q2_K"), &[], None).unwrap_err();
        assert_eq!(
            e.to_string(),
            "no Q2_K GGUF (available: Q4_K_M, Q8_0, UD-Q4_K_XL)"
        );
    }

    #[test]
    fn default_choice_follows_preferred_then_default_order() {
        let opts = gguf_options(&[
            rf("M-BF16.gguf", 1600),
            rf("M-Q8_0.gguf", 800),
            rf("M-Q5_K_M.gguf", 500),
            rf("M-Q4_K_M.gguf", 400),
        ]);
        assert_eq!(
            choose_option(&opts, None, &[], None).unwrap().quant,
            "Q4_K_M"
        );
        let pref = vec!["Q8_0".to_string()];
        assert_eq!(
            choose_option(&opts, None, &pref, None).unwrap().quant,
            "Q8_0"
        );
        // A budget drops what does not fit.
        assert_eq!(
            choose_option(&opts, None, &pref, Some(600)).unwrap().quant,
            "Q4_K_M"
        );
        assert_eq!(
            choose_option(&opts, None, &[], Some(100)).unwrap_err(),
            ChooseError::NoneFits {
                budget: 100,
                smallest: 400
            }
        );
        // Float weights come last, unknown names after them.
        let opts = gguf_options(&[rf("M-F16.gguf", 10), rf("M-Q3_K_XS.gguf", 99)]);
        assert_eq!(
            choose_option(&opts, None, &[], None).unwrap().quant,
            "Q3_K_XS"
        );
        assert_eq!(
            choose_option(&[], None, &[], None).unwrap_err(),
            ChooseError::NoGguf
        );
    }

    #[test]
    fn repo_ids() {
        let r = RepoId::parse("Qwen/Qwen3-0.6B-GGUF").unwrap();
        assert_eq!(r.cache_folder(), "models--Qwen--Qwen3-0.6B-GGUF");
        for bad in [
            "Qwen", "a/b/c", "/x", "x/", "a/.x", "a/x.", "a/b..c", "a/b c",
        ] {
            assert!(RepoId::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn hex_checks_and_url_encoding() {
        assert!(is_sha256_hex(&"aB".repeat(32)));
        assert!(!is_sha256_hex("../../etc/passwd"));
        assert!(is_commit_hex(&"0".repeat(40)));
        assert!(!is_commit_hex("main"));
        assert_eq!(encode_path("Q4_K_M/a b+c.gguf"), "Q4_K_M/a%20b%2Bc.gguf");
    }
}
