//! `edge --version`: edge's version plus the llama.cpp build and compiled backends.

/// The pinned llama-cpp-sys-2 version (see Cargo.toml); it fixes the llama.cpp commit.
pub const LLAMA_CPP_SYS_VERSION: &str = "0.1.161";

/// The long version text. Initialises llama.cpp (quietly) to list its backends.
pub fn long_version() -> String {
    let _ = crate::engine::backend(false);
    let backends = crate::engine::ffi::backend_names();
    format!(
        "edge {}\nllama.cpp: bundled with llama-cpp-sys-2 {}, {}\nbackends: {}\ncpu features: {}",
        env!("CARGO_PKG_VERSION"),
        LLAMA_CPP_SYS_VERSION,
        crate::engine::ffi::ggml_version(),
        if backends.is_empty() {
            "CPU".to_string()
        } else {
            backends.join(", ")
        },
        crate::engine::ffi::system_info()
    )
}
