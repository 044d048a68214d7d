//! The node's HTTP endpoint, on axum: the dashboard (`GET /`, its script and style compiled
//! into the binary), `GET /status` (JSON), `GET /history` (the charts' samples, JSON),
//! `GET /metrics` (Prometheus text, or OpenMetrics when asked for) and `GET /model` (the
//! current parameters as safetensors, the checkpoint's layout: one named, shaped tensor per
//! layer). Plus the blocking client (ureq) used by `murmur status` and `murmur demo`.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get as route_get;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;

use crate::checkpoint::{self, ModelInfo};
use crate::status::{SharedHistory, SharedStatus};

/// The dashboard page; it loads the two assets below and polls `/status` and `/history`.
const DASHBOARD_HTML: &str = include_str!("dashboard/index.html");
/// The dashboard's script (charts and the swarm drawing in plain SVG, no library).
const DASHBOARD_JS: &str = include_str!("dashboard/dashboard.js");
/// The dashboard's style sheet.
const DASHBOARD_CSS: &str = include_str!("dashboard/dashboard.css");

/// The newest model the training thread published.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PublishedModel {
    /// The round it is the model of.
    pub round: u64,
    /// The flat parameter vector.
    pub values: Vec<f32>,
}

/// What the endpoint serves.
#[derive(Clone, Debug)]
pub struct Endpoint {
    /// Prometheus registry (murmur + libp2p metrics).
    pub registry: Arc<Registry>,
    /// The status document.
    pub status: SharedStatus,
    /// The samples the dashboard charts.
    pub history: SharedHistory,
    /// The newest model, published by the training thread.
    pub model: Arc<Mutex<PublishedModel>>,
    /// Its spec and named tensors.
    pub model_info: Arc<ModelInfo>,
    /// This node's peer id and model fingerprint (the safetensors metadata).
    pub peer_id: String,
    /// The model fingerprint.
    pub fingerprint: u64,
}

/// The routes.
pub fn router(endpoint: Endpoint) -> Router {
    Router::new()
        .route("/", route_get(dashboard))
        .route("/dashboard.js", route_get(dashboard_js))
        .route("/dashboard.css", route_get(dashboard_css))
        .route("/status", route_get(status))
        .route("/history", route_get(history))
        .route("/metrics", route_get(metrics))
        .route("/model", route_get(model))
        .fallback(|| async { (StatusCode::NOT_FOUND, "not found\n") })
        .with_state(endpoint)
}

/// Serves `endpoint` on `listener` until the task is dropped.
pub async fn serve(listener: TcpListener, endpoint: Endpoint) {
    if let Err(e) = axum::serve(listener, router(endpoint)).await {
        tracing::warn!(error = %e, "http endpoint stopped");
    }
}

async fn dashboard() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        DASHBOARD_HTML,
    )
}

async fn dashboard_js() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        DASHBOARD_JS,
    )
}

async fn dashboard_css() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        DASHBOARD_CSS,
    )
}

fn json<T: serde::Serialize>(value: &T) -> Response {
    match serde_json::to_string(value) {
        Ok(body) => ([(header::CONTENT_TYPE, "application/json")], body).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

/// `value`'s current state as JSON (its lock held only for the clone).
fn locked_json<T: Clone + serde::Serialize>(value: &Mutex<T>, what: &str) -> Response {
    let copy = value.lock().map(|v| v.clone());
    match copy {
        Ok(v) => json(&v),
        Err(_) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("{what} lock poisoned"),
        )
            .into_response(),
    }
}

async fn status(State(e): State<Endpoint>) -> Response {
    locked_json(&e.status, "status")
}

async fn history(State(e): State<Endpoint>) -> Response {
    locked_json(&e.history, "history")
}

async fn metrics(State(e): State<Endpoint>, headers: HeaderMap) -> Response {
    let mut text = String::new();
    if let Err(err) = prometheus_client::encoding::text::encode(&mut text, &e.registry) {
        return (StatusCode::INTERNAL_SERVER_ERROR, err.to_string()).into_response();
    }
    let wants_openmetrics = headers
        .get_all(header::ACCEPT)
        .iter()
        .any(|v| v.to_str().is_ok_and(|v| v.contains("openmetrics")));
    if wants_openmetrics {
        (
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            text,
        )
            .into_response()
    } else {
        (
            [(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            openmetrics_to_prometheus_text(&text),
        )
            .into_response()
    }
}

async fn model(State(e): State<Endpoint>) -> Response {
    let Ok(model) = e.model.lock().map(|m| m.clone()) else {
        return (StatusCode::INTERNAL_SERVER_ERROR, "model lock poisoned").into_response();
    };
    // Serializing a large model takes a while: off the async workers.
    let built = tokio::task::spawn_blocking(move || {
        checkpoint::safetensors_bytes(
            &model.values,
            model.round,
            e.fingerprint,
            &e.peer_id,
            &e.model_info,
        )
        .map(|bytes| (model.round, bytes))
    })
    .await;
    match built {
        Ok(Ok((round, bytes))) => (
            [
                (header::CONTENT_TYPE, "application/octet-stream".to_string()),
                (
                    header::CONTENT_DISPOSITION,
                    format!("attachment; filename=\"model-{round}.safetensors\""),
                ),
            ],
            bytes,
        )
            .into_response(),
        Ok(Err(err)) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{err:#}")).into_response(),
        Err(err) => (StatusCode::INTERNAL_SERVER_ERROR, err.to_string()).into_response(),
    }
}

/// The classic Prometheus text format (0.0.4) from OpenMetrics text, for clients that do not
/// ask for OpenMetrics (curl, `promtool check metrics`, older scrapers). OpenMetrics names a
/// counter family `x` and its sample `x_total`; the classic format wants HELP and TYPE on
/// `x_total` itself, or the counter reads as undocumented. `# UNIT` and `# EOF` do not exist
/// there.
pub fn openmetrics_to_prometheus_text(text: &str) -> String {
    let counters: std::collections::HashSet<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE ")?.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        if line.starts_with("# UNIT ") || line == "# EOF" {
            continue;
        }
        let renamed = ["# HELP ", "# TYPE "].iter().find_map(|tag| {
            let rest = line.strip_prefix(tag)?;
            let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
            counters
                .contains(name)
                .then(|| format!("{tag}{name}_total {tail}"))
        });
        out.push_str(renamed.as_deref().unwrap_or(line).trim_end());
        out.push('\n');
    }
    out
}

/// `GET path` from `addr` (host:port, a host name such as `localhost` included) as text;
/// see [`get_bytes`].
pub fn get(addr: &str, path: &str, timeout: Duration) -> Result<String> {
    let bytes = get_bytes(addr, path, timeout)?;
    String::from_utf8(bytes).with_context(|| format!("{addr}{path} did not answer with text"))
}

/// `GET path` from `addr`; returns the body of a 200 response (any size: a model download
/// included). Every error names the address and what to check.
pub fn get_bytes(addr: &str, path: &str, timeout: Duration) -> Result<Vec<u8>> {
    use std::net::ToSocketAddrs;
    addr.to_socket_addrs().with_context(|| {
        format!("{addr:?} is not host:port (e.g. 127.0.0.1:9464 or localhost:9464)")
    })?;
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_connect(Some(timeout))
        .timeout_recv_response(Some(timeout))
        .http_status_as_error(false)
        .build()
        .into();
    let response = agent
        .get(format!("http://{addr}{path}"))
        .call()
        .map_err(|e| match e {
            ureq::Error::Timeout(_) => anyhow::anyhow!(
                "{addr} accepted the connection but sent no answer within {timeout:.0?}: is it \
                 a murmur node's HTTP endpoint?"
            ),
            ureq::Error::ConnectionFailed | ureq::Error::HostNotFound | ureq::Error::Io(_) => {
                anyhow::anyhow!(
                    "cannot connect to {addr} ({e}): is the node running, and is this its \
                     `http` address (printed at start, `http.listen` in its config)?"
                )
            }
            ureq::Error::Protocol(_) => anyhow::anyhow!(
                "{addr} did not answer with HTTP: is it a murmur node's HTTP endpoint?"
            ),
            other => anyhow::anyhow!("reading {path} from {addr}: {other}"),
        })?;
    let code = response.status();
    if code != ureq::http::StatusCode::OK {
        bail!("{addr}{path}: {code}");
    }
    let mut body = response.into_body();
    body.with_config()
        .limit(u64::MAX)
        .read_to_vec()
        .with_context(|| format!("reading {path} from {addr}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::{History, Sample, Status};

    fn endpoint() -> Endpoint {
        let status = Arc::new(Mutex::new(Status {
            round: 42,
            ..Status::default()
        }));
        let mut registry = Registry::default();
        let metrics = crate::status::Metrics::default();
        metrics.register(&mut registry);
        metrics.round.set(42);
        let mut history = History::default();
        history.push(Sample {
            round: 1,
            loss: Some(2.5),
            ..Sample::default()
        });
        let info = ModelInfo {
            spec: "linear".to_string(),
            layout: murmur_gossip::layout::ParamLayout::new(vec![
                ("bias".to_string(), vec![1]),
                ("weight".to_string(), vec![1, 2]),
            ]),
        };
        Endpoint {
            registry: Arc::new(registry),
            status,
            history: Arc::new(Mutex::new(history)),
            model: Arc::new(Mutex::new(PublishedModel {
                round: 7,
                values: vec![1.5, -2.0, 0.25],
            })),
            model_info: Arc::new(info),
            peer_id: "me".to_string(),
            fingerprint: 0xabc,
        }
    }

    /// Serves `endpoint` on a loopback port from a runtime of its own thread.
    fn spawn(endpoint: Endpoint) -> String {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
                tx.send(listener.local_addr().unwrap().to_string()).unwrap();
                serve(listener, endpoint).await;
            });
        });
        rx.recv().unwrap()
    }

    #[test]
    fn serves_the_dashboard_status_history_metrics_and_model_and_refuses_the_rest() {
        let addr = spawn(endpoint());
        let t = Duration::from_secs(5);
        let status: Status = serde_json::from_str(&get(&addr, "/status", t).unwrap()).unwrap();
        assert_eq!(status.round, 42);
        let history: History = serde_json::from_str(&get(&addr, "/history", t).unwrap()).unwrap();
        assert_eq!(history.points.len(), 1);
        assert_eq!(history.points[0].loss, Some(2.5));
        assert!(
            get(&addr, "/metrics", t)
                .unwrap()
                .contains("murmur_round 42")
        );
        let page = get(&addr, "/", t).unwrap();
        for asset in ["/dashboard.js", "/dashboard.css"] {
            assert!(page.contains(asset), "the page loads {asset}");
            assert!(!get(&addr, asset, t).unwrap().is_empty());
        }
        // The model is the checkpoint's safetensors layout: named, shaped tensors.
        let bytes = get_bytes(&addr, "/model", t).unwrap();
        let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
        let weight = st.tensor("weight").unwrap();
        assert_eq!(weight.shape(), &[1, 2]);
        assert_eq!(
            checkpoint::model_from_bytes(&bytes).unwrap(),
            vec![1.5, -2.0, 0.25]
        );
        let (_, header) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
        let meta = header.metadata().as_ref().unwrap();
        assert_eq!(meta["round"], "7");
        assert_eq!(meta["model"], "linear");
        let err = get(&addr, "/nope", t).unwrap_err().to_string();
        assert!(err.contains("404"), "{err}");
        let port = addr.rsplit(':').next().unwrap();
        let by_name = get(&format!("localhost:{port}"), "/status", t).unwrap();
        assert!(by_name.contains("\"round\":42"), "{by_name}");
    }

    #[test]
    fn the_classic_format_puts_help_and_type_on_the_counter_sample_name() {
        let open = "# HELP murmur_bytes_sent Gossip bytes sent.\n# TYPE murmur_bytes_sent counter\n\
                    murmur_bytes_sent_total 5\n# HELP murmur_round Next round.\n\
                    # TYPE murmur_round gauge\nmurmur_round 3\n# UNIT x_seconds seconds\n# EOF\n";
        assert_eq!(
            openmetrics_to_prometheus_text(open),
            "# HELP murmur_bytes_sent_total Gossip bytes sent.\n\
             # TYPE murmur_bytes_sent_total counter\nmurmur_bytes_sent_total 5\n\
             # HELP murmur_round Next round.\n# TYPE murmur_round gauge\nmurmur_round 3\n"
        );
    }

    #[test]
    fn a_silent_server_and_a_closed_port_are_named_with_their_address() {
        let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = silent.local_addr().unwrap().to_string();
        let err = get(&addr, "/status", Duration::from_millis(200))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(&addr)
                && err.contains("sent no answer within")
                && !err.contains("os error"),
            "{err}"
        );
        drop(silent);
        let err = get(&addr, "/status", Duration::from_millis(200))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(&format!("cannot connect to {addr}"))
                && err.contains("is the node running"),
            "{err}"
        );
    }
}
