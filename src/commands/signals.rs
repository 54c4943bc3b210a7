//! Ctrl-C handling shared by the commands that generate.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::{Context, Result};

/// Ctrl-C sets the returned flag, which generation loops check between tokens; a
/// second Ctrl-C before the first was handled exits at once (130). During line editing
/// the terminal is in raw mode, so Ctrl-C reaches rustyline as a key instead.
pub fn interrupt_flag() -> Result<Arc<AtomicBool>> {
    let flag = Arc::new(AtomicBool::new(false));
    let handler_flag = flag.clone();
    ctrlc::set_handler(move || {
        if handler_flag.swap(true, Ordering::SeqCst) {
            std::process::exit(130);
        }
    })
    .context("installing the Ctrl-C handler")?;
    Ok(flag)
}
