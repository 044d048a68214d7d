//! A running node's `/metrics` as a Prometheus operator sees it: `promtool check metrics`
//! clean (where promtool is installed), libp2p's metrics under one `libp2p_` prefix, and every
//! counter present from the start (rejections at 0 before the first one).

mod common;

use std::time::Duration;

use common::{TempDir, promtool_clean, start, wait_for};
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
