//! Shared helpers for the daemon's process tests: temporary directories, starting nodes and
//! waiting on their status. Everything binds to 127.0.0.1 with ephemeral ports.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use murmur_daemon::demo::{Node, spawn_node};
use murmur_daemon::status::Status;

pub(crate) fn binary() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_murmur"))
}

/// A fresh directory under the system temp dir, removed when dropped.
#[derive(Debug)]
pub(crate) struct TempDir(pub(crate) PathBuf);

impl TempDir {
    pub(crate) fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("murmur-test-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    pub(crate) fn join(&self, p: &str) -> PathBuf {
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

pub(crate) fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

pub(crate) fn start(dir: &Path, extra: &[String]) -> Node {
    spawn_node(binary(), dir, extra, Duration::from_secs(60)).expect("node starts")
}

/// Polls `node`'s status until `pred` holds; panics with the last status after `timeout`.
pub(crate) fn wait_for(
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
    let tail: String = log.lines().rev().take(30).collect::<Vec<_>>().join("\n");
    panic!("timed out waiting for {what}; last status {last:#?}\nlog tail (newest first):\n{tail}");
}

/// The node's stdout/stderr log so far.
pub(crate) fn log(node: &Node) -> String {
    std::fs::read_to_string(node.dir.join("node.log")).unwrap_or_default()
}
