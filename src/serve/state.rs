//! State shared by the HTTP handlers and the engine thread, and the helpers every
//! route uses.

use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::http::StatusCode;
use serde_json::{Map, Value};

use super::metrics::Metrics;
use super::protocol::ApiError;
use super::worker::JobQueue;
use crate::engine::Model;
use crate::hub::store::InstalledModel;
use crate::request::prepare::JobDefaults;

/// The largest request body accepted.
pub const MAX_BODY_BYTES: usize = 32 << 20;
/// A client must send its request head within this, and each body chunk within
/// [`BODY_TIMEOUT`].
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
pub const BODY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long in-flight requests get to wind down at shutdown.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// SSE keep-alive comment interval (also how soon a vanished queued client is noticed).
pub const KEEP_ALIVE: Duration = Duration::from_secs(2);

pub const LOADING: u8 = 0;
pub const READY: u8 = 1;
pub const STOPPING: u8 = 2;

/// State shared by every handler and the engine thread.
pub struct AppState {
    pub model_id: String,
    pub model: OnceLock<Arc<Model>>,
    pub status: AtomicU8,
    pub queue: JobQueue,
    pub metrics: Metrics,
    pub stop: Arc<AtomicBool>,
    pub ctx_per_seq: usize,
    pub slots: usize,
    pub defaults: JobDefaults,
    pub api_key: Option<String>,
    pub sha256: Arc<OnceLock<String>>,
    pub started_unix: u64,
}

impl AppState {
    /// The store's models whose files are all there, except the one being served
    /// (`/v1/models` and `/api/tags` list them after it).
    pub async fn other_installed(&self) -> Vec<InstalledModel> {
        tokio::task::spawn_blocking(crate::hub::installed)
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or_default()
            .into_iter()
            .filter(|(m, present)| *present && m.id() != self.model_id)
            .map(|(m, _)| m)
            .collect()
    }

    /// The loaded model, or 503 while it loads or the server stops.
    pub fn ready_model(&self) -> Result<Arc<Model>, ApiError> {
        match self.status.load(Ordering::SeqCst) {
            READY => self.model.get().cloned().ok_or_else(ApiError::loading),
            STOPPING => Err(ApiError::shutting_down()),
            _ => Err(ApiError::loading()),
        }
    }

    pub fn stopping(&self) -> bool {
        self.status.load(Ordering::SeqCst) == STOPPING
    }

    /// `edge-VERSION-SHA12`: which build served which model file.
    pub fn fingerprint(&self) -> String {
        match self.sha256.get() {
            Some(sha) => format!(
                "edge-{}-{}",
                env!("CARGO_PKG_VERSION"),
                &sha[..12.min(sha.len())]
            ),
            None => format!("edge-{}", env!("CARGO_PKG_VERSION")),
        }
    }

    pub fn sha256(&self) -> Option<&str> {
        self.sha256.get().map(String::as_str)
    }
}

/// The body as a JSON object, or the client's mistake as an error.
pub fn json_body(body: Result<Bytes, BytesRejection>) -> Result<Map<String, Value>, ApiError> {
    let bytes = body.map_err(|r| {
        if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::too_large(MAX_BODY_BYTES)
        } else if r.body_text().contains("timeout") {
            ApiError::new(
                408,
                "invalid_request_error",
                format!(
                    "the request body did not arrive within {} s",
                    BODY_TIMEOUT.as_secs()
                ),
            )
        } else {
            ApiError::invalid(format!("cannot read the request body: {}", r.body_text()))
        }
    })?;
    match serde_json::from_slice::<Value>(&bytes) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(ApiError::invalid("the request body must be a JSON object")),
        Err(e) => Err(ApiError::bad_json(e)),
    }
}
