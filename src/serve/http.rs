//! The HTTP server: state shared by the handlers, the router, the API-key and metrics
//! middleware, and the accept loop with its timeouts and graceful shutdown.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use serde_json::json;
use subtle::ConstantTimeEq;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::timeout::RequestBodyTimeoutLayer;

use super::metrics::{Gauges, Metrics};
use super::protocol::ApiError;
use super::state::{
    AppState, BODY_TIMEOUT, HEADER_TIMEOUT, LOADING, MAX_BODY_BYTES, READY, SHUTDOWN_GRACE,
    STOPPING,
};
use super::worker::{serve_jobs, JobQueue};
use super::{ollama_routes, openai_routes};
use crate::engine::{BatchSpeculation, ContextSpec, Model};
use crate::hub::store::now_unix;
use crate::request::prepare::JobDefaults;
use crate::speculative::DraftLimits;

/// What the engine thread loads: the model, and the draft model with its context
/// when speculation uses one.
pub struct ServedModels {
    pub model: Model,
    pub draft: Option<(Model, ContextSpec)>,
}

/// Everything `edge serve` was asked for.
pub struct ServeConfig {
    pub host: String,
    pub port: u16,
    /// The id clients see in `/v1/models` and responses.
    pub model_id: String,
    pub model_path: PathBuf,
    pub api_key: Option<String>,
    pub max_queue: usize,
    pub cors: Option<String>,
    pub defaults: JobDefaults,
    /// The context the plan chose (one sequence per slot).
    pub spec: ContextSpec,
    /// `sha256` of the model file when the store already knows it.
    pub known_sha256: Option<String>,
    /// Draft limits when the server speculates (with the draft model `load` gives, or
    /// by lookup without one).
    pub speculation: Option<DraftLimits>,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut resp = (status, axum::Json(self.body())).into_response();
        if let Some(secs) = self.retry_after {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        resp
    }
}

async fn require_key(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    if let Some(key) = &state.api_key {
        let given = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        if !bool::from(given.as_bytes().ct_eq(key.as_bytes())) {
            return ApiError::unauthorized().into_response();
        }
    }
    next.run(req).await
}

/// Refuses a body over the limit from its `Content-Length`, before reading it (and
/// before `Expect: 100-continue` invites the client to send it).
async fn limit_body(req: Request, next: Next) -> Response {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > MAX_BODY_BYTES as u64) {
        let mut resp = ApiError::too_large(MAX_BODY_BYTES).into_response();
        // The unread body cannot be skipped: end the connection after this answer.
        resp.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        return resp;
    }
    next.run(req).await
}

async fn count_status(State(state): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let resp = next.run(req).await;
    state.metrics.request(resp.status().as_u16());
    resp
}

async fn health(State(state): State<Arc<AppState>>) -> Response {
    match state.ready_model() {
        Ok(_) => axum::Json(json!({"status": "ok"})).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    let text = state.metrics.render(Gauges {
        queue_depth: state.queue.waiting(),
        slots_total: state.slots,
    });
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

async fn root() -> &'static str {
    "edge is running"
}

async fn not_found(req: Request) -> ApiError {
    ApiError::not_found(format!(
        "no route for {} {}",
        req.method(),
        req.uri().path()
    ))
}

async fn wrong_method(req: Request) -> ApiError {
    ApiError::new(
        405,
        "invalid_request_error",
        format!("{} is not allowed on {}", req.method(), req.uri().path()),
    )
}

fn router(state: Arc<AppState>, cors: Option<&str>) -> Result<Router> {
    let protected = Router::new()
        .route(
            "/v1/chat/completions",
            post(openai_routes::chat_completions),
        )
        .route("/chat/completions", post(openai_routes::chat_completions))
        .route("/v1/completions", post(openai_routes::completions))
        .route("/completions", post(openai_routes::completions))
        .route("/v1/models", get(openai_routes::models))
        .route("/models", get(openai_routes::models))
        .route("/metrics", get(metrics))
        .route("/api/chat", post(ollama_routes::chat))
        .route("/api/generate", post(ollama_routes::generate))
        .route("/api/tags", get(ollama_routes::tags))
        .route("/api/show", post(ollama_routes::show))
        .route("/api/version", get(ollama_routes::version))
        .route_layer(middleware::from_fn_with_state(state.clone(), require_key));
    let mut app = protected
        .route("/health", get(health))
        .route("/v1/health", get(health))
        .route("/", get(root))
        .fallback(not_found)
        .method_not_allowed_fallback(wrong_method)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(RequestBodyTimeoutLayer::new(BODY_TIMEOUT))
        .layer(middleware::from_fn(limit_body));
    if let Some(origin) = cors {
        let allow = if origin == "*" {
            AllowOrigin::any()
        } else {
            AllowOrigin::exact(
                HeaderValue::from_str(origin)
                    .with_context(|| format!("--cors '{origin}' is not a valid origin"))?,
            )
        };
        app = app.layer(
            CorsLayer::new()
                .allow_origin(allow)
                .allow_methods([Method::GET, Method::POST, Method::OPTIONS])
                .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE]),
        );
    }
    Ok(app
        .layer(middleware::from_fn_with_state(state.clone(), count_status))
        .with_state(state))
}

fn is_loopback(host: &str) -> bool {
    host == "localhost"
        || host
            .trim_matches(|c| c == '[' || c == ']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Waits for SIGINT or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}

/// Binds, loads the model on the engine thread (`load`; `/health` answers 503 until
/// it is ready), and serves until SIGINT/SIGTERM. Returns an error when the address is
/// taken or the model fails to load.
pub fn serve(
    config: ServeConfig,
    load: Box<dyn FnOnce() -> Result<ServedModels> + Send>,
    on_ready: Box<dyn FnOnce(&Model) + Send>,
) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(serve_async(config, load, on_ready))
}

async fn serve_async(
    config: ServeConfig,
    load: Box<dyn FnOnce() -> Result<ServedModels> + Send>,
    on_ready: Box<dyn FnOnce(&Model) + Send>,
) -> Result<()> {
    let addr = format!("{}:{}", config.host, config.port);
    let listener = tokio::net::TcpListener::bind(&addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    let local: SocketAddr = listener.local_addr().context("reading the bound address")?;
    if !is_loopback(&config.host) && config.api_key.is_none() {
        eprintln!(
            "edge: warning: listening on {} without --api-key: anyone who can reach this port can use the model",
            config.host
        );
    }
    let (queue, queue_rx) = JobQueue::new(config.max_queue);
    let stop = Arc::new(AtomicBool::new(false));
    let sha256 = Arc::new(OnceLock::new());
    if let Some(sha) = &config.known_sha256 {
        let _ = sha256.set(sha.clone());
    } else {
        // Hashing a large file takes a while: fingerprints carry it once known.
        let (path, cell) = (config.model_path.clone(), sha256.clone());
        std::thread::spawn(move || {
            let hidden = indicatif::ProgressBar::hidden();
            if let Ok(sha) = crate::hub::download::sha256_file(&path, &hidden) {
                let _ = cell.set(sha);
            }
        });
    }
    let state = Arc::new(AppState {
        model_id: config.model_id.clone(),
        model: OnceLock::new(),
        status: AtomicU8::new(LOADING),
        queue,
        metrics: Metrics::default(),
        stop: stop.clone(),
        ctx_per_seq: config.spec.ctx_per_seq() as usize,
        slots: config.spec.n_seq.max(1) as usize,
        defaults: config.defaults.clone(),
        api_key: config.api_key.clone(),
        sha256,
        started_unix: now_unix(),
    });
    let app = router(state.clone(), config.cors.as_deref())?;
    eprintln!("edge: listening on http://{local} (loading the model)");

    // The engine thread: load, then serve jobs until stopped.
    let load_failed: Arc<Mutex<Option<anyhow::Error>>> = Arc::default();
    let (engine_done_tx, mut engine_done) = tokio::sync::watch::channel(false);
    let engine = {
        let (state, failed, spec) = (state.clone(), load_failed.clone(), config.spec.clone());
        let speculation = config.speculation;
        std::thread::Builder::new()
            .name("edge-engine".into())
            .spawn(move || {
                match load() {
                    Ok(ServedModels { model, draft }) => {
                        let model = Arc::new(model);
                        let speculation = speculation.map(|limits| BatchSpeculation {
                            draft: draft.as_ref().map(|(m, spec)| (m, spec.clone())),
                            limits,
                        });
                        let _ = state.model.set(model.clone());
                        on_ready(&model);
                        state.status.store(READY, Ordering::SeqCst);
                        if let Err(e) = serve_jobs(
                            &model,
                            &spec,
                            queue_rx,
                            &state.metrics,
                            &state.stop,
                            speculation.as_ref(),
                            &|e| {
                                eprintln!(
                                    "edge: {e}; the requests in flight failed, serving goes on"
                                )
                            },
                        ) {
                            *failed.lock().unwrap_or_else(|p| p.into_inner()) = Some(e.into());
                        }
                    }
                    Err(e) => *failed.lock().unwrap_or_else(|p| p.into_inner()) = Some(e),
                }
                let _ = engine_done_tx.send(true);
            })
            .context("cannot start the engine thread")?
    };

    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let signal = shutdown_signal();
    tokio::pin!(signal);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let _ = stream.set_nodelay(true);
                let service = TowerToHyperService::new(app.clone());
                let conn = hyper::server::conn::http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(HEADER_TIMEOUT)
                    .serve_connection(TokioIo::new(stream), service);
                let conn = graceful.watch(conn);
                tokio::spawn(async move {
                    let _ = conn.await;
                });
            }
            _ = &mut signal => {
                eprintln!("edge: stopping");
                break;
            }
            _ = engine_done.changed() => break,
        }
    }
    drop(listener);
    state.status.store(STOPPING, Ordering::SeqCst);
    stop.store(true, Ordering::SeqCst);
    let _ = tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown()).await;
    // The engine stops within a decode step; don't tear llama.cpp down under it.
    let deadline = Instant::now() + SHUTDOWN_GRACE;
    while !engine.is_finished() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    if engine.is_finished() {
        let _ = engine.join();
    }
    if let Some(e) = load_failed.lock().unwrap_or_else(|p| p.into_inner()).take() {
        return Err(e);
    }
    Ok(())
}
