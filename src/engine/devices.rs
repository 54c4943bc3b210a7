//! The devices ggml can compute on (CPU, GPUs, RPC servers), and registering RPC
//! servers as devices.

use llama_cpp_2::{list_llama_ggml_backend_devices, LlamaBackendDeviceType};

use super::backend::backend;
use super::error::EngineError;
use super::ffi;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceKind {
    Cpu,
    Gpu,
    IntegratedGpu,
    Accelerator,
    Unknown,
}

/// One ggml device, as llama.cpp reports it.
#[derive(Debug, Clone)]
pub struct DeviceInfo {
    /// e.g. "CUDA0", "RPC0".
    pub name: String,
    /// e.g. "NVIDIA GeForce RTX 4060".
    pub description: String,
    /// e.g. "CUDA", "Metal", "RPC", "CPU".
    pub backend: String,
    pub memory_total: u64,
    pub memory_free: u64,
    pub kind: DeviceKind,
}

/// Every device ggml has registered (initialising llama.cpp quietly if needed).
pub fn devices() -> Result<Vec<DeviceInfo>, EngineError> {
    backend(false)?;
    Ok(list_llama_ggml_backend_devices()
        .into_iter()
        .map(|d| DeviceInfo {
            name: d.name,
            description: d.description,
            backend: d.backend,
            memory_total: d.memory_total as u64,
            memory_free: d.memory_free as u64,
            kind: match d.device_type {
                LlamaBackendDeviceType::Cpu => DeviceKind::Cpu,
                LlamaBackendDeviceType::Gpu => DeviceKind::Gpu,
                LlamaBackendDeviceType::IntegratedGpu => DeviceKind::IntegratedGpu,
                LlamaBackendDeviceType::Accelerator => DeviceKind::Accelerator,
                LlamaBackendDeviceType::Unknown => DeviceKind::Unknown,
            },
        })
        .collect())
}

/// Registers ggml RPC servers (`HOST:PORT`) as devices, once per endpoint per process,
/// and returns the free memory they report in total.
pub fn add_rpc_servers(endpoints: &[String], verbose: bool) -> Result<u64, EngineError> {
    static ADDED: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
    backend(verbose)?;
    let rpc_err = |ep: &str, reason: String| EngineError::Rpc {
        endpoint: ep.to_string(),
        reason,
    };
    let mut added = ADDED
        .lock()
        .map_err(|_| rpc_err("", "the RPC registry lock is poisoned".into()))?;
    for ep in endpoints {
        if ep
            .rsplit_once(':')
            .and_then(|(_, p)| p.parse::<u16>().ok())
            .is_none()
        {
            return Err(rpc_err(ep, "expected HOST:PORT".into()));
        }
        if !added.contains(ep) {
            // Fail fast with a clear message when nothing listens there.
            let addr = std::net::ToSocketAddrs::to_socket_addrs(ep.as_str())
                .map_err(|e| rpc_err(ep, e.to_string()))?
                .next()
                .ok_or_else(|| rpc_err(ep, "no address".into()))?;
            std::net::TcpStream::connect_timeout(&addr, std::time::Duration::from_secs(5))
                .map_err(|e| rpc_err(ep, format!("cannot reach it: {e}")))?;
            ffi::rpc_add_server(ep)?;
            added.push(ep.clone());
        }
    }
    Ok(devices()?
        .into_iter()
        .filter(|d| d.backend.eq_ignore_ascii_case("RPC"))
        .map(|d| d.memory_free)
        .sum())
}
