//! The admin HTTP listener: `/metrics` (Prometheus text), `/healthz`, `/readyz`, `/stats`, and
//! the control endpoints `POST /tenants/{name}/pause`, `/resume`, `/promote` and `/rollback`.
//!
//! Reading endpoints are open (on loopback by default). Control endpoints answer only a request
//! bearing `Authorization: Bearer <admin.token>`; with no token configured they refuse every
//! request, so a host is never controllable by accident. The token is compared in constant time.
//!
//! It binds loopback by default (`admin.listen`): metrics and stats describe tenants' traffic
//! and are not for the whole network unless the operator says so. The listener knows nothing
//! of tenants; it asks a [`Status`] for readiness and stats, so the host decides what "ready"
//! means and tests can serve any state.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing;
use std::collections::BTreeMap;

use prometheus::proto::MetricFamily;
use prometheus::{Encoder, TextEncoder};
use serde::Serialize;
use subtle::ConstantTimeEq as _;
use tokio::net::TcpListener;

/// What the admin endpoints report; implemented by the host.
pub trait Status: Send + Sync + 'static {
    /// `Ok` when the process should receive traffic; otherwise every reason it should not.
    fn readiness(&self) -> Result<(), Vec<String>>;
    /// The `/stats` document.
    fn stats(&self) -> serde_json::Value;
    /// Every metric to expose. Families of the same name from several sources (one registry
    /// per tenant) are merged before encoding.
    fn metrics(&self) -> Vec<MetricFamily>;
    /// Does `action` to tenant `tenant`; `Err` says why not.
    fn control(&self, tenant: &str, action: Control) -> Result<(), Refused>;
}

/// What a control endpoint (`POST /tenants/{name}/{action}`) asks of a tenant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    /// Take no new message (see `burrow_pool::Pauser`).
    Pause,
    Resume,
    /// Make the canary's candidate the live version.
    Promote,
    /// Throw the canary's candidate out; the live version serves every key.
    RollBack,
}

impl Control {
    /// The action named by the endpoint's last path segment.
    fn from_path(action: &str) -> Option<Self> {
        Some(match action {
            "pause" => Self::Pause,
            "resume" => Self::Resume,
            "promote" => Self::Promote,
            "rollback" => Self::RollBack,
            _ => return None,
        })
    }

    fn done(self) -> &'static str {
        match self {
            Self::Pause => "paused",
            Self::Resume => "resumed",
            Self::Promote => "canary promoted",
            Self::RollBack => "canary rolled back",
        }
    }
}

/// Why a control action was not done.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    /// No such tenant runs: 404.
    #[error("{0}")]
    NoTenant(String),
    /// The tenant cannot do it now (no canary, or it has ended): 409.
    #[error("{0}")]
    Conflict(String),
}

#[derive(Clone)]
struct AdminState {
    status: Arc<dyn Status>,
    /// `admin.token`; `None` turns the control endpoints off.
    token: Option<Arc<str>>,
}

/// Serves the admin endpoints on `listener` until `shutdown` completes; `token` (the config's
/// `admin.token`) opens the control endpoints.
pub async fn serve(
    listener: TcpListener,
    status: Arc<dyn Status>,
    token: Option<String>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = router(AdminState {
        status,
        token: token.map(Arc::from),
    });
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}

fn router(state: AdminState) -> Router {
    Router::new()
        .route("/metrics", routing::get(metrics))
        .route("/healthz", routing::get(healthz))
        .route("/readyz", routing::get(readyz))
        .route("/stats", routing::get(stats))
        .route("/tenants/{name}/{action}", routing::post(control))
        .with_state(state)
}

async fn metrics(State(state): State<AdminState>) -> Response {
    let encoder = TextEncoder::new();
    let mut body = Vec::new();
    match encoder.encode(&merge(state.status.metrics()), &mut body) {
        Ok(()) => ([(header::CONTENT_TYPE, encoder.format_type())], body).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

/// One family per metric name: the text format allows a name's `# TYPE` line once, and each
/// tenant's registry has its own family of every pool metric.
fn merge(families: Vec<MetricFamily>) -> Vec<MetricFamily> {
    let mut merged: BTreeMap<String, MetricFamily> = BTreeMap::new();
    for mut family in families {
        match merged.get_mut(family.name()) {
            Some(existing) => existing.mut_metric().extend(family.take_metric()),
            None => {
                merged.insert(family.name().to_owned(), family);
            }
        }
    }
    merged.into_values().collect()
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

/// `POST /tenants/{name}/{action}`: checks the bearer token, then does the action.
async fn control(
    State(state): State<AdminState>,
    Path((tenant, action)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let Some(token) = &state.token else {
        return (
            StatusCode::FORBIDDEN,
            "control endpoints are off: set admin.token (or BURROW__ADMIN__TOKEN) to use them\n",
        )
            .into_response();
    };
    let offered = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    if !bool::from(offered.as_bytes().ct_eq(token.as_bytes())) {
        return (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            "a valid `Authorization: Bearer <admin.token>` header is required\n",
        )
            .into_response();
    }
    let Some(action) = Control::from_path(&action) else {
        return (
            StatusCode::NOT_FOUND,
            format!("no action {action:?}: pause, resume, promote or rollback\n"),
        )
            .into_response();
    };
    match state.status.control(&tenant, action) {
        Ok(()) => (
            StatusCode::OK,
            format!("tenant {tenant}: {}\n", action.done()),
        )
            .into_response(),
        Err(refused) => {
            let code = match refused {
                Refused::NoTenant(_) => StatusCode::NOT_FOUND,
                Refused::Conflict(_) => StatusCode::CONFLICT,
            };
            (code, format!("{refused}\n")).into_response()
        }
    }
}

/// A plain HTTP/1.1 GET of `path` from an admin listener, returning the body of a 200
/// response. For the demo and tests, which want the real listener and nothing in between.
pub async fn get(addr: std::net::SocketAddr, path: &str) -> std::io::Result<String> {
    let (code, body) = get_with_status(addr, path).await?;
    if code == 200 {
        Ok(body)
    } else {
        Err(std::io::Error::other(format!("GET {path}: HTTP {code}")))
    }
}

/// Like [`get`], returning the status code with the body whatever it is.
pub async fn get_with_status(
    addr: std::net::SocketAddr,
    path: &str,
) -> std::io::Result<(u16, String)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: burrow\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await?;
    let code = response
        .get(9..12)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| std::io::Error::other("not an HTTP response"))?;
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Ok((code, body))
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};

    use prometheus::{IntCounter, Opts, Registry};

    use super::*;

    struct FakeStatus {
        ready: AtomicBool,
        registries: Vec<Registry>,
        paused: AtomicBool,
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
        fn metrics(&self) -> Vec<MetricFamily> {
            self.registries.iter().flat_map(Registry::gather).collect()
        }
        fn control(&self, tenant: &str, action: Control) -> Result<(), Refused> {
            if tenant != "orders" {
                return Err(Refused::NoTenant(format!("no tenant {tenant}")));
            }
            if matches!(action, Control::Promote | Control::RollBack) {
                return Err(Refused::Conflict(format!("tenant {tenant} has no canary")));
            }
            self.paused
                .store(action == Control::Pause, Ordering::SeqCst);
            Ok(())
        }
    }

    /// A registry like a tenant's: one counter, labelled with the tenant.
    fn tenant_registry(tenant: &str, value: u64) -> Registry {
        let registry = Registry::new();
        let opts = Opts::new("burrow_test_total", "a test counter").const_label("tenant", tenant);
        let counter = IntCounter::with_opts(opts).expect("counter");
        registry
            .register(Box::new(counter.clone()))
            .expect("register");
        counter.inc_by(value);
        registry
    }

    async fn start(status: Arc<FakeStatus>, token: Option<&str>) -> std::net::SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(serve(
            listener,
            status,
            token.map(str::to_owned),
            std::future::pending(),
        ));
        addr
    }

    /// `POST path` with an optional bearer token: status code and body.
    async fn post(addr: std::net::SocketAddr, path: &str, token: Option<&str>) -> (u16, String) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
        let request = format!(
            "POST {path} HTTP/1.1\r\nHost: burrow\r\n{auth}Content-Length: 0\r\nConnection: close\r\n\r\n"
        );
        stream.write_all(request.as_bytes()).await.expect("write");
        let mut response = String::new();
        stream.read_to_string(&mut response).await.expect("read");
        let code = response[9..12].parse().expect("status");
        let body = response
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_owned())
            .unwrap_or_default();
        (code, body)
    }

    fn fake() -> Arc<FakeStatus> {
        Arc::new(FakeStatus {
            ready: AtomicBool::new(true),
            registries: Vec::new(),
            paused: AtomicBool::new(false),
        })
    }

    /// Without a configured token every control request is refused, whatever it carries.
    #[tokio::test]
    async fn control_is_off_without_a_token() {
        let status = fake();
        let addr = start(status.clone(), None).await;
        let (code, body) = post(addr, "/tenants/orders/pause", Some("anything")).await;
        assert_eq!(code, 403, "{body}");
        assert!(body.contains("set admin.token"), "{body}");
        assert!(!status.paused.load(Ordering::SeqCst));
    }

    /// With a token: no header or a wrong one is 401 and changes nothing; the right one
    /// pauses and resumes; an unknown tenant is 404; reading stays open.
    #[tokio::test]
    async fn control_needs_the_token() {
        let status = fake();
        let addr = start(status.clone(), Some("s3cret-token")).await;
        assert_eq!(post(addr, "/tenants/orders/pause", None).await.0, 401);
        assert_eq!(
            post(addr, "/tenants/orders/pause", Some("s3cret-tokeN"))
                .await
                .0,
            401
        );
        assert!(!status.paused.load(Ordering::SeqCst));

        let (code, body) = post(addr, "/tenants/orders/pause", Some("s3cret-token")).await;
        assert_eq!((code, body.as_str()), (200, "tenant orders: paused\n"));
        assert!(status.paused.load(Ordering::SeqCst));
        assert_eq!(
            post(addr, "/tenants/orders/resume", Some("s3cret-token"))
                .await
                .0,
            200
        );
        assert!(!status.paused.load(Ordering::SeqCst));
        assert_eq!(
            post(addr, "/tenants/nobody/pause", Some("s3cret-token"))
                .await
                .0,
            404
        );
        // An unknown action is 404; an action the tenant cannot do now is 409, saying why.
        let token = Some("s3cret-token");
        assert_eq!(post(addr, "/tenants/orders/restart", token).await.0, 404);
        let (code, body) = post(addr, "/tenants/orders/promote", token).await;
        assert_eq!(
            (code, body.as_str()),
            (409, "tenant orders has no canary\n")
        );
        assert_eq!(post(addr, "/tenants/orders/rollback", None).await.0, 401);
        assert_eq!(get_with_status(addr, "/stats").await.expect("get").0, 200);
    }

    /// Every endpoint answers on a real socket with the content the host gave it.
    #[tokio::test]
    async fn endpoints_answer_with_the_hosts_state() {
        let status = Arc::new(FakeStatus {
            ready: AtomicBool::new(false),
            registries: vec![tenant_registry("a", 3), tenant_registry("b", 5)],
            paused: AtomicBool::new(false),
        });
        let addr = start(status.clone(), None).await;

        let (code, body) = get_with_status(addr, "/metrics").await.expect("get");
        assert_eq!(code, 200);
        assert!(
            body.contains(r#"burrow_test_total{tenant="a"} 3"#),
            "{body}"
        );
        assert!(
            body.contains(r#"burrow_test_total{tenant="b"} 5"#),
            "{body}"
        );
        assert_eq!(
            body.matches("# TYPE burrow_test_total").count(),
            1,
            "one family per name: {body}"
        );

        assert_eq!(get_with_status(addr, "/healthz").await.expect("get").0, 200);

        let (code, body) = get_with_status(addr, "/readyz").await.expect("get");
        assert_eq!(code, 503);
        assert!(body.contains("no assignment yet"), "{body}");
        status.ready.store(true, Ordering::SeqCst);
        assert_eq!(get_with_status(addr, "/readyz").await.expect("get").0, 200);

        let (code, body) = get_with_status(addr, "/stats").await.expect("get");
        assert_eq!(code, 200);
        let json: serde_json::Value = serde_json::from_str(&body).expect("json");
        assert_eq!(json["tenants"]["orders"]["processed"], 7);

        assert_eq!(get_with_status(addr, "/nope").await.expect("get").0, 404);
    }
}
