//! Partial output files: the temporary name a write uses before its rename, and their
//! removal when the user interrupts (Ctrl-C) a write.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, Once};

/// The temporary file a quantization writes before it is renamed to `out`.
pub fn temp_path(out: &Path) -> PathBuf {
    let name = out
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "out.gguf".into());
    out.with_file_name(format!(".{name}.edge-partial-{}", std::process::id()))
}

/// Partial files to remove if the user interrupts (Ctrl-C) a write.
static PARTIALS: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

/// Remembers a partial file, to be removed on Ctrl-C (the handler exits as a shell
/// would, with 130).
pub(crate) fn track_partial(p: &Path) {
    static HANDLER: Once = Once::new();
    HANDLER.call_once(|| {
        let _ = ctrlc::set_handler(|| {
            if let Ok(ps) = PARTIALS.lock() {
                for p in ps.iter() {
                    let _ = std::fs::remove_file(p);
                }
            }
            eprintln!();
            std::process::exit(130);
        });
    });
    if let Ok(mut ps) = PARTIALS.lock() {
        ps.push(p.to_path_buf());
    }
}

pub(crate) fn untrack_partial(p: &Path) {
    if let Ok(mut ps) = PARTIALS.lock() {
        ps.retain(|q| q != p);
    }
}
