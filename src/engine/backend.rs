//! llama.cpp's process-wide initialisation, and the default thread count.

use std::sync::OnceLock;

use llama_cpp_2::llama_backend::LlamaBackend;

use super::error::EngineError;
use super::ffi;

static BACKEND: OnceLock<LlamaBackend> = OnceLock::new();

/// Initialises llama.cpp once per process. Logs go to stderr only when `verbose`.
pub fn backend(verbose: bool) -> Result<&'static LlamaBackend, EngineError> {
    if let Some(b) = BACKEND.get() {
        // An earlier quiet start (device detection for the plan, say) must not hide the
        // logs a later verbose caller asked for.
        if verbose {
            ffi::install_log_callback(true);
        }
        return Ok(b);
    }
    ffi::install_log_callback(verbose);
    let b = LlamaBackend::init().map_err(|e| EngineError::Backend(e.to_string()))?;
    Ok(BACKEND.get_or_init(|| b))
}

/// Default thread count: physical cores, as llama.cpp's own tools do.
pub fn default_threads() -> u32 {
    num_cpus::get_physical().max(1) as u32
}
