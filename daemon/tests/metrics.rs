//! A running node's `/metrics` as a Prometheus operator sees it: `promtool check metrics`
//! clean (where promtool is installed), libp2p's metrics under one `libp2p_` prefix, and every
//! counter present from the start (rejections at 0 before the first one).

mod common;

use std::time::Duration;

use common::{TempDir, args, promtool_clean, run_to_exit, start, wait_for};
use murmur_daemon::status::Metrics;

#[test]
fn metrics_pass_promtool_with_one_libp2p_prefix_and_every_counter_from_start() {
    let dir = TempDir::new("metrics");
    let node = start(&dir.join("n"), &[]);
    wait_for(&node, Duration::from_secs(30), "a few rounds", |s| {
        s.round > 5
    });
    let text = murmur_daemon::http::get(&node.http, "/metrics", Duration::from_secs(5)).unwrap();

    assert!(!text.contains("libp2p_libp2p_"), "double prefix:\n{text}");
    assert!(text.contains("libp2p_swarm_"), "{text}");
    for reason in Metrics::reject_reasons() {
        let series = format!("murmur_rejected_total{{reason=\"{reason}\"}} 0");
        assert!(
            text.contains(&series),
            "{series} missing before any rejection:\n{text}"
        );
    }
    for counter in [
        "murmur_bytes_sent_total",
        "murmur_checkpoints_total",
        "murmur_duplicates_dropped_total",
        "murmur_wait_seconds_total",
    ] {
        assert!(
            text.contains(&format!("# HELP {counter} ")),
            "{counter} has no HELP line in the classic format:\n{text}"
        );
    }

    promtool_clean(
        &text,
        "the metric checks above ran, the promtool lint did not",
    );
}

/// The metric names a PromQL expression uses (identifiers followed by `{`, `[`, `)` or
/// space that start with `murmur_` or `libp2p_`).
fn metric_names(expr: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut current = String::new();
    for c in expr.chars().chain(std::iter::once(' ')) {
        if c.is_ascii_alphanumeric() || c == '_' || c == ':' {
            current.push(c);
        } else {
            if current.starts_with("murmur_") || current.starts_with("libp2p_") {
                names.push(std::mem::take(&mut current));
            }
            current.clear();
        }
    }
    names
}

fn exprs(value: &serde_json::Value, out: &mut Vec<String>) {
    match value {
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                match (k.as_str(), v) {
                    ("expr" | "query", serde_json::Value::String(e)) => out.push(e.clone()),
                    _ => exprs(v, out),
                }
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|v| exprs(v, out)),
        _ => {}
    }
}

#[test]
fn per_link_families_pass_promtool_and_the_grafana_dashboard_uses_only_exported_names() {
    let dir = TempDir::new("metrics-links");
    let a = start(&dir.join("a"), &[]);
    let b = start(&dir.join("b"), &args(&["--bootstrap", &a.addr]));
    let linked = |s: &murmur_daemon::status::Status| {
        s.round > 5 && !s.links.is_empty() && !s.link_rtt_ms.is_empty()
    };
    wait_for(
        &a,
        Duration::from_secs(60),
        "a link with traffic and an RTT",
        linked,
    );
    wait_for(
        &b,
        Duration::from_secs(60),
        "a link with traffic and an RTT",
        linked,
    );
    // `murmur status` prints the link's figures on the neighbour's line.
    let out = run_to_exit(&["status", "--addr", &a.http], Duration::from_secs(10));
    let line = out
        .stdout
        .lines()
        .find(|l| l.contains(&b.peer_id))
        .unwrap_or_else(|| panic!("no line for the neighbour:\n{}", out.stdout));
    for part in [
        "(direct): sent ",
        " B, received ",
        "bits/entry (bound ",
        ", rtt ",
    ] {
        assert!(line.contains(part), "{part:?} missing: {line}");
    }
    assert!(
        out.stdout.contains("residual |x - x_hat|"),
        "{}",
        out.stdout
    );
    let text = murmur_daemon::http::get(&a.http, "/metrics", Duration::from_secs(5)).unwrap();
    let peer = format!("peer=\"{}\"", b.peer_id);
    for family in [
        "murmur_link_bytes_sent_total",
        "murmur_link_bytes_received_total",
        "murmur_link_updates_sent_total",
        "murmur_link_updates_applied_total",
        "murmur_link_bytes_per_entry",
        "murmur_link_entropy_bound_bytes_per_entry",
        "murmur_link_staleness_rounds",
        "murmur_link_rejected_total",
        "murmur_link_rtt_seconds",
    ] {
        let line = text
            .lines()
            .find(|l| l.starts_with(&format!("{family}{{")) && l.contains(&peer))
            .unwrap_or_else(|| panic!("no {family} series for {peer}:\n{text}"));
        assert!(
            !line.contains(&a.peer_id),
            "a node has no series for itself: {line}"
        );
    }
    for gauge in [
        "murmur_residual_norm",
        "murmur_update_density",
        "murmur_resident_bytes",
        "murmur_model_bytes",
    ] {
        let value: f64 = text
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{gauge} ")))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("{gauge} missing:\n{text}"));
        assert!(value > 0.0, "{gauge} = {value}");
    }
    promtool_clean(
        &text,
        "the per-link series checks above ran, the promtool lint did not",
    );

    // Every metric the Grafana dashboard queries is one the node exports.
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/grafana-dashboard.json");
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let mut all = Vec::new();
    exprs(&dashboard, &mut all);
    let exported: std::collections::BTreeSet<&str> = text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split(['{', ' ']).next())
        .collect();
    let mut used = std::collections::BTreeSet::new();
    for expr in &all {
        for name in metric_names(expr) {
            assert!(
                exported.contains(name.as_str()),
                "{} queries {name}, which the node does not export (expression: {expr})",
                path.display()
            );
            used.insert(name);
        }
    }
    assert!(
        used.iter()
            .filter(|n| n.starts_with("murmur_link_"))
            .count()
            >= 6
            && used.len() >= 15,
        "the dashboard covers the per-link families: {used:?}"
    );
}
