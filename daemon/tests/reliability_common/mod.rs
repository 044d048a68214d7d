//! Shared pieces of the daemon reliability tests (`reliability_*.rs`): a swarm of `murmur run`
//! processes started by hand, so single nodes can be killed, restarted or moved, and the
//! figures those tests print.

#![allow(dead_code, unreachable_pub)]

use std::time::{Duration, Instant};

use murmur_daemon::demo::{Node, spawn_node};
use murmur_daemon::status::Status;

// The process-test basics (binary path, temp dirs, status polling) are the ones the other
// daemon tests use.
#[path = "../common/mod.rs"]
mod common;
// Each test binary uses a different subset (as with `dead_code` above).
#[allow(unused_imports)]
pub(crate) use common::{TempDir, binary, wait_for};

/// Arguments of node `i` of an `n`-node digits swarm training `rounds` rounds.
pub fn node_args(i: usize, n: usize, rounds: u64, extra: &[&str]) -> Vec<String> {
    let mut a: Vec<String> = [
        "--shard",
        &i.to_string(),
        "--shards",
        &n.to_string(),
        "--min-peers",
        &n.to_string(),
        "--max-rounds",
        &rounds.to_string(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    a.extend(extra.iter().map(|s| s.to_string()));
    a
}

/// Starts node `i` in `dir/node-i`, bootstrapping to `bootstrap` when given.
pub fn start_node(dir: &TempDir, i: usize, args: &[String], bootstrap: Option<&str>) -> Node {
    let mut a = args.to_vec();
    if let Some(b) = bootstrap {
        a.extend(["--bootstrap".to_string(), b.to_string()]);
    }
    spawn_node(
        binary(),
        &dir.join(&format!("node-{i}")),
        &a,
        Duration::from_secs(60),
    )
    .unwrap_or_else(|e| panic!("node {i} starts: {e:#}"))
}

/// Starts an `n`-node swarm (everyone bootstraps to node 0).
pub fn start_swarm(dir: &TempDir, n: usize, rounds: u64, extra: &[&str]) -> Vec<Node> {
    let first = start_node(dir, 0, &node_args(0, n, rounds, extra), None);
    let boot = first.addr.clone();
    let mut nodes = vec![first];
    for i in 1..n {
        nodes.push(start_node(
            dir,
            i,
            &node_args(i, n, rounds, extra),
            Some(&boot),
        ));
    }
    nodes
}

/// Polls every live node until all are done; panics after `timeout` with their rounds.
pub fn wait_all_done(nodes: &[Node], timeout: Duration) -> Vec<Status> {
    let start = Instant::now();
    loop {
        let statuses: Vec<Option<Status>> = nodes.iter().map(|n| n.status().ok()).collect();
        if statuses.iter().all(|s| s.as_ref().is_some_and(|s| s.done)) {
            return statuses.into_iter().map(Option::unwrap).collect();
        }
        assert!(
            start.elapsed() < timeout,
            "swarm not done after {timeout:?}: rounds {:?}",
            statuses
                .iter()
                .map(|s| s.as_ref().map(|s| s.round))
                .collect::<Vec<_>>()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Mean and worst final accuracy.
pub fn accuracy(statuses: &[Status]) -> (f32, f32) {
    let acc: Vec<f32> = statuses
        .iter()
        .map(|s| s.accuracy.expect("evaluated at the end"))
        .collect();
    let mean = acc.iter().sum::<f32>() / acc.len() as f32;
    let worst = acc.iter().copied().fold(f32::INFINITY, f32::min);
    (mean, worst)
}

/// SIGTERM every node (clean exit), returning how many exited cleanly.
pub fn stop_all(nodes: &mut [Node]) -> usize {
    nodes
        .iter_mut()
        .map(|n| n.stop(Duration::from_secs(10)).unwrap_or(false))
        .filter(|clean| *clean)
        .count()
}
