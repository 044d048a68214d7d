//! Shared pieces of the daemon reliability tests (`reliability_*.rs`): a swarm of `murmur run`
//! processes started by hand, so single nodes can be killed, restarted or moved, and the
//! figures those tests print.

#![allow(dead_code, unreachable_pub)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use murmur_daemon::demo::{Node, spawn_node};
use murmur_daemon::status::Status;

pub fn binary() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_murmur"))
}

/// A fresh directory under the system temp dir, removed when dropped.
#[derive(Debug)]
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(name: &str) -> Self {
        let dir =
            std::env::temp_dir().join(format!("murmur-reliability-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    pub fn join(&self, p: &str) -> PathBuf {
        self.0.join(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if std::env::var_os("MURMUR_KEEP_TEST_DIRS").is_none() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

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

/// Polls `node` until `pred` holds; panics after `timeout` with the last status.
pub fn wait_for(
    node: &Node,
    timeout: Duration,
    what: &str,
    pred: impl Fn(&Status) -> bool,
) -> Status {
    let start = Instant::now();
    let mut last = None;
    while start.elapsed() < timeout {
        if let Ok(s) = node.status() {
            if pred(&s) {
                return s;
            }
            last = Some(s);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let log = std::fs::read_to_string(node.dir.join("node.log")).unwrap_or_default();
    let tail: String = log.lines().rev().take(20).collect::<Vec<_>>().join("\n");
    panic!("timed out waiting for {what}; last status {last:#?}\nlog tail (newest first):\n{tail}");
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
