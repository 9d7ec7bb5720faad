//! The admin HTTP listener: `/metrics` (Prometheus text), `/healthz`, `/readyz`, `/stats`.
//!
//! It binds loopback by default (`admin.listen`): metrics and stats describe tenants' traffic
//! and are not for the whole network unless the operator says so. The listener knows nothing
//! of tenants; it asks a [`Status`] for readiness and stats, so the host decides what "ready"
//! means and tests can serve any state.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use prometheus::{Encoder, Registry, TextEncoder};
use serde::Serialize;
use tokio::net::TcpListener;

/// What the admin endpoints report; implemented by the host.
pub trait Status: Send + Sync + 'static {
    /// `Ok` when the process should receive traffic; otherwise every reason it should not.
    fn readiness(&self) -> Result<(), Vec<String>>;
    /// The `/stats` document.
    fn stats(&self) -> serde_json::Value;
}

#[derive(Clone)]
struct AdminState {
    registry: Registry,
    status: Arc<dyn Status>,
}

/// Serves the admin endpoints on `listener` until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    registry: Registry,
    status: Arc<dyn Status>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = router(AdminState { registry, status });
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}

fn router(state: AdminState) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/stats", get(stats))
        .with_state(state)
}

async fn metrics(State(state): State<AdminState>) -> Response {
    let encoder = TextEncoder::new();
    let mut body = Vec::new();
    match encoder.encode(&state.registry.gather(), &mut body) {
        Ok(()) => ([(header::CONTENT_TYPE, encoder.format_type())], body).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

/// Alive: the process answers. Liveness must not depend on Kafka or plugins, or an outage
/// there would get a healthy host restarted in a loop.
async fn healthz() -> &'static str {
    "ok\n"
}

#[derive(Serialize)]
struct Readiness {
    ready: bool,
    reasons: Vec<String>,
}

async fn readyz(State(state): State<AdminState>) -> Response {
    let (code, reasons) = match state.status.readiness() {
        Ok(()) => (StatusCode::OK, Vec::new()),
        Err(reasons) => (StatusCode::SERVICE_UNAVAILABLE, reasons),
    };
    let ready = code == StatusCode::OK;
    (code, axum::Json(Readiness { ready, reasons })).into_response()
}

async fn stats(State(state): State<AdminState>) -> Response {
    axum::Json(state.status.stats()).into_response()
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};

    use prometheus::{IntCounter, Opts};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    struct FakeStatus {
        ready: AtomicBool,
    }

    impl Status for FakeStatus {
        fn readiness(&self) -> Result<(), Vec<String>> {
            if self.ready.load(Ordering::SeqCst) {
                Ok(())
            } else {
                Err(vec!["tenant orders has no assignment yet".into()])
            }
        }
        fn stats(&self) -> serde_json::Value {
            serde_json::json!({ "tenants": { "orders": { "processed": 7 } } })
        }
    }

    /// A plain HTTP/1.1 GET, so the test exercises the real listener and nothing else.
    async fn get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
        let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.expect("write");
        let mut response = String::new();
        stream.read_to_string(&mut response).await.expect("read");
        let code = response[9..12].parse().expect("status code");
        let body = response
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_owned())
            .unwrap_or_default();
        (code, body)
    }

    async fn start(status: Arc<FakeStatus>) -> std::net::SocketAddr {
        let registry = Registry::new();
        let counter = IntCounter::with_opts(Opts::new("burrow_test_total", "a test counter"))
            .expect("counter");
        registry
            .register(Box::new(counter.clone()))
            .expect("register");
        counter.inc_by(3);
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(serve(listener, registry, status, std::future::pending()));
        addr
    }

    /// Every endpoint answers on a real socket with the content the host gave it.
    #[tokio::test]
    async fn endpoints_answer_with_the_hosts_state() {
        let status = Arc::new(FakeStatus {
            ready: AtomicBool::new(false),
        });
        let addr = start(status.clone()).await;

        let (code, body) = get(addr, "/metrics").await;
        assert_eq!(code, 200);
        assert!(body.contains("burrow_test_total 3"), "{body}");

        assert_eq!(get(addr, "/healthz").await.0, 200);

        let (code, body) = get(addr, "/readyz").await;
        assert_eq!(code, 503);
        assert!(body.contains("no assignment yet"), "{body}");
        status.ready.store(true, Ordering::SeqCst);
        assert_eq!(get(addr, "/readyz").await.0, 200);

        let (code, body) = get(addr, "/stats").await;
        assert_eq!(code, 200);
        let json: serde_json::Value = serde_json::from_str(&body).expect("json");
        assert_eq!(json["tenants"]["orders"]["processed"], 7);

        assert_eq!(get(addr, "/nope").await.0, 404);
    }
}
