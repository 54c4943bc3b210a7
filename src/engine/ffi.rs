//! The only place edge calls llama.cpp's C API directly (through `llama-cpp-sys-2`),
//! for what the safe `llama-cpp-2` crate does not cover: log routing and build facts.
//! Every `unsafe` block states why it is sound.

use std::ffi::{c_char, c_void, CStr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

static VERBOSE: AtomicBool = AtomicBool::new(false);
/// Recent warning/error lines from llama.cpp, so a failed load can say why even when
/// logs are hidden (llama.cpp reports most load failures only through its log).
static RECENT_ERRORS: Mutex<Vec<String>> = Mutex::new(Vec::new());
const MAX_RECENT: usize = 16;

extern "C" fn log_callback(
    level: llama_cpp_sys_2::ggml_log_level,
    text: *const c_char,
    _: *mut c_void,
) {
    if text.is_null() {
        return;
    }
    // SAFETY: llama.cpp passes a valid NUL-terminated string that lives for the call.
    let line = unsafe { CStr::from_ptr(text) }.to_string_lossy();
    if VERBOSE.load(Ordering::Relaxed) {
        eprint!("{line}");
    }
    let is_problem = level == llama_cpp_sys_2::GGML_LOG_LEVEL_ERROR
        || level == llama_cpp_sys_2::GGML_LOG_LEVEL_WARN;
    if is_problem {
        let trimmed = line.trim();
        if !trimmed.is_empty() {
            if let Ok(mut recent) = RECENT_ERRORS.lock() {
                if recent.len() == MAX_RECENT {
                    recent.remove(0);
                }
                recent.push(trimmed.to_string());
            }
        }
    }
}

/// Routes llama.cpp and ggml logs through edge: printed to stderr only when `verbose`,
/// otherwise kept (warnings and errors only) for error messages.
pub fn install_log_callback(verbose: bool) {
    VERBOSE.store(verbose, Ordering::Relaxed);
    // SAFETY: the callback is a plain `extern "C" fn` with 'static lifetime and no user
    // data; llama_log_set/ggml_log_set only store the pointers.
    unsafe {
        llama_cpp_sys_2::llama_log_set(Some(log_callback), std::ptr::null_mut());
        llama_cpp_sys_2::ggml_log_set(Some(log_callback), std::ptr::null_mut());
    }
}

/// Drains the warnings and errors llama.cpp logged since the last call.
pub fn take_recent_errors() -> Vec<String> {
    RECENT_ERRORS
        .lock()
        .map(|mut recent| std::mem::take(&mut *recent))
        .unwrap_or_default()
}

/// llama.cpp's own system-info line (compiled CPU features such as AVX2, FMA, F16C).
pub fn system_info() -> String {
    // SAFETY: returns a pointer to a static buffer inside llama.cpp, valid until the next
    // call; we copy it out immediately and edge never calls it concurrently.
    unsafe {
        let ptr = llama_cpp_sys_2::llama_print_system_info();
        if ptr.is_null() {
            return String::new();
        }
        CStr::from_ptr(ptr).to_string_lossy().trim().to_string()
    }
}

/// Names of the ggml backends compiled into this binary (CPU, CUDA, Metal, Vulkan, …).
pub fn backend_names() -> Vec<String> {
    let mut names = Vec::new();
    // SAFETY: registry count/get/name are read-only queries on ggml's static backend
    // registry; the returned name pointers are static strings.
    unsafe {
        for i in 0..llama_cpp_sys_2::ggml_backend_reg_count() {
            let reg = llama_cpp_sys_2::ggml_backend_reg_get(i);
            if reg.is_null() {
                continue;
            }
            let name = llama_cpp_sys_2::ggml_backend_reg_name(reg);
            if !name.is_null() {
                names.push(CStr::from_ptr(name).to_string_lossy().into_owned());
            }
        }
    }
    names
}

/// ggml's version and commit as compiled into this binary.
pub fn ggml_version() -> String {
    // SAFETY: both return pointers to static strings compiled into ggml.
    unsafe {
        let v = llama_cpp_sys_2::ggml_version();
        let c = llama_cpp_sys_2::ggml_commit();
        let v = if v.is_null() {
            "?".into()
        } else {
            CStr::from_ptr(v).to_string_lossy()
        };
        let c = if c.is_null() {
            "?".into()
        } else {
            CStr::from_ptr(c).to_string_lossy()
        };
        format!("ggml {v} (commit {c})")
    }
}
