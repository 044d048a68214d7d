//! A deliberately tiny HTTP/1.1 endpoint (no framework): `GET /metrics` (Prometheus text),
//! `GET /status` (JSON) and `GET /model` (the current parameters as a JSON array), one
//! request per connection. Plus the matching client used by `murmur status` and `murmur demo`.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use prometheus_client::registry::Registry;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::status::SharedStatus;

/// Largest request head read.
const MAX_REQUEST: usize = 8 * 1024;

/// What the endpoint serves.
#[derive(Clone, Debug)]
pub struct Endpoint {
    /// Prometheus registry (murmur + libp2p metrics).
    pub registry: Arc<Registry>,
    /// The status document.
    pub status: SharedStatus,
    /// The newest model, published by the training thread.
    pub model: Arc<Mutex<Vec<f32>>>,
}

/// Serves `endpoint` on `listener` until the task is dropped.
pub async fn serve(listener: TcpListener, endpoint: Endpoint) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let endpoint = endpoint.clone();
        tokio::spawn(async move {
            if let Err(e) = handle(stream, &endpoint).await {
                tracing::debug!(error = %e, "http request failed");
            }
        });
    }
}

async fn handle(mut stream: TcpStream, endpoint: &Endpoint) -> Result<()> {
    let mut buf = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut chunk)).await??;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
        if buf.len() > MAX_REQUEST {
            bail!("request head too large");
        }
    }
    let head = String::from_utf8_lossy(&buf);
    let mut parts = head.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let wants_openmetrics = head
        .lines()
        .any(|l| l.to_ascii_lowercase().starts_with("accept:") && l.contains("openmetrics"));
    let (code, content_type, body) = match (method, path) {
        ("GET", "/metrics") => {
            let mut text = String::new();
            prometheus_client::encoding::text::encode(&mut text, &endpoint.registry)?;
            if wants_openmetrics {
                (
                    "200 OK",
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    text,
                )
            } else {
                (
                    "200 OK",
                    "text/plain; version=0.0.4; charset=utf-8",
                    openmetrics_to_prometheus_text(&text),
                )
            }
        }
        ("GET", "/status") => {
            let status = endpoint.status.lock().expect("status lock").clone();
            (
                "200 OK",
                "application/json",
                serde_json::to_string(&status)?,
            )
        }
        ("GET", "/model") => {
            let model = endpoint.model.lock().expect("model lock").clone();
            ("200 OK", "application/json", serde_json::to_string(&model)?)
        }
        ("GET", _) => ("404 Not Found", "text/plain", "not found\n".to_string()),
        _ => (
            "405 Method Not Allowed",
            "text/plain",
            "GET only\n".to_string(),
        ),
    };
    let response = format!(
        "HTTP/1.1 {code}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await?;
    Ok(())
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

/// `GET path` from `addr` (host:port, a host name such as `localhost` included); returns the
/// body of a 200 response. Every error names the address and what to check.
pub fn get(addr: &str, path: &str, timeout: Duration) -> Result<String> {
    use std::io::{Read, Write};
    use std::net::ToSocketAddrs;
    let candidates: Vec<std::net::SocketAddr> = addr
        .to_socket_addrs()
        .with_context(|| {
            format!("{addr:?} is not host:port (e.g. 127.0.0.1:9464 or localhost:9464)")
        })?
        .collect();
    let mut last = None;
    let mut stream = None;
    for sock in &candidates {
        match std::net::TcpStream::connect_timeout(sock, timeout) {
            Ok(s) => {
                stream = Some(s);
                break;
            }
            Err(e) => last = Some(e),
        }
    }
    let Some(mut stream) = stream else {
        let cause = last.map_or("no address".to_string(), |e| e.to_string());
        bail!(
            "cannot connect to {addr} ({cause}): is the node running, and is this its `http` \
             address (printed at start, `http.listen` in its config)?"
        );
    };
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    let exchange = |stream: &mut std::net::TcpStream| -> std::io::Result<String> {
        write!(
            stream,
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
        )?;
        let mut response = String::new();
        stream.read_to_string(&mut response)?;
        Ok(response)
    };
    let response = exchange(&mut stream).map_err(|e| match e.kind() {
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => anyhow::anyhow!(
            "{addr} accepted the connection but sent no answer within {:.0?}: is it a murmur \
             node's HTTP endpoint?",
            timeout
        ),
        _ => anyhow::anyhow!("reading {path} from {addr}: {e}"),
    })?;
    let (head, body) = response.split_once("\r\n\r\n").with_context(|| {
        format!("{addr} did not answer with HTTP: is it a murmur node's HTTP endpoint?")
    })?;
    let status_line = head.lines().next().unwrap_or("");
    if !status_line.contains(" 200 ") {
        bail!("{addr}{path}: {status_line}");
    }
    Ok(body.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::Status;

    #[test]
    fn serves_status_metrics_and_model_and_refuses_the_rest() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let status = Arc::new(Mutex::new(Status {
            round: 42,
            ..Status::default()
        }));
        let mut registry = Registry::default();
        let metrics = crate::status::Metrics::default();
        metrics.register(&mut registry);
        metrics.round.set(42);
        let endpoint = Endpoint {
            registry: Arc::new(registry),
            status,
            model: Arc::new(Mutex::new(vec![1.5, -2.0])),
        };
        let listener = rt.block_on(TcpListener::bind("127.0.0.1:0")).unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let _guard = rt.enter();
        let server = rt.spawn(serve(listener, endpoint));
        let rt = Arc::new(rt);
        let drive = {
            let rt = rt.clone();
            std::thread::spawn(move || {
                rt.block_on(async {
                    let _ = server.await;
                })
            })
        };
        let t = Duration::from_secs(5);
        let status: Status = serde_json::from_str(&get(&addr, "/status", t).unwrap()).unwrap();
        assert_eq!(status.round, 42);
        assert!(
            get(&addr, "/metrics", t)
                .unwrap()
                .contains("murmur_round 42")
        );
        let model: Vec<f32> = serde_json::from_str(&get(&addr, "/model", t).unwrap()).unwrap();
        assert_eq!(model, vec![1.5, -2.0]);
        let err = get(&addr, "/nope", t).unwrap_err().to_string();
        assert!(err.contains("404"), "{err}");
        let port = addr.rsplit(':').next().unwrap();
        let by_name = get(&format!("localhost:{port}"), "/status", t).unwrap();
        assert!(by_name.contains("\"round\":42"), "{by_name}");
        drop(drive);
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
