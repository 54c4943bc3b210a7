//! Progress bars of the commands.

use std::path::Path;

use indicatif::ProgressBar;

/// A 0–100 bar for loading a model.
pub fn load_bar(path: &Path) -> ProgressBar {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let bar = crate::term::progress_bar(100, "loading {msg} [{bar:30}] {pos}%", false);
    bar.set_message(name);
    bar
}
