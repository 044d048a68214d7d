//! Shared helpers for the daemon's process tests: temporary directories, starting nodes and
//! waiting on their status. Everything binds to 127.0.0.1 with ephemeral ports.

#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use murmur_daemon::demo::{Node, spawn_node};
use murmur_daemon::status::Status;

pub(crate) mod netns;

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

/// What a command that is expected to exit by itself printed.
#[derive(Debug)]
pub(crate) struct Exited {
    pub(crate) success: bool,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
}

/// Runs `murmur <args>` to completion; panics (after killing it) if it is still running after
/// `timeout`, so a command that should refuse to start but does not fails the test instead of
/// hanging it.
pub(crate) fn run_to_exit(args: &[&str], timeout: Duration) -> Exited {
    use std::process::{Command, Stdio};
    let dir = std::env::temp_dir().join(format!(
        "murmur-test-exit-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let (out, err) = (dir.join("stdout"), dir.join("stderr"));
    let mut child = Command::new(binary())
        .args(args)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::fs::File::create(&err).unwrap())
        .spawn()
        .unwrap();
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if start.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "murmur {args:?} still running after {timeout:?}; stdout:\n{}\nstderr:\n{}",
                std::fs::read_to_string(&out).unwrap_or_default(),
                std::fs::read_to_string(&err).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let exited = Exited {
        success: status.success(),
        stdout: std::fs::read_to_string(&out).unwrap_or_default(),
        stderr: std::fs::read_to_string(&err).unwrap_or_default(),
    };
    let _ = std::fs::remove_dir_all(&dir);
    exited
}

static COUNTER: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Asserts that `murmur <args>` fails at once and its error contains every one of `expected`.
pub(crate) fn assert_refused(args: &[&str], expected: &[&str]) -> String {
    let exited = run_to_exit(args, Duration::from_secs(20));
    assert!(!exited.success, "murmur {args:?} succeeded: {exited:?}");
    for text in expected {
        assert!(
            exited.stderr.contains(text),
            "murmur {args:?}: {text:?} missing from stderr:\n{}",
            exited.stderr
        );
    }
    exited.stderr
}

/// Lints a `/metrics` text with `promtool check metrics`: passes only when promtool exits 0
/// and prints nothing. Without promtool it prints `SKIPPED:` naming what went unlinted.
pub(crate) fn promtool_clean(text: &str, unlinted: &str) {
    let Ok(mut promtool) = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    else {
        println!(
            "SKIPPED: promtool not installed (Debian: apt-get install prometheus); {unlinted}"
        );
        return;
    };
    promtool
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    assert_silent_success(
        &promtool.wait_with_output().unwrap(),
        "promtool check metrics",
    );
}

/// A checking tool (`what`) exited 0 and printed nothing: anything on stdout or stderr is a
/// finding, shown in the failure.
pub(crate) fn assert_silent_success(out: &std::process::Output, what: &str) {
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && report.trim().is_empty(),
        "{what}:\n{report}"
    );
}

/// The body of the first fenced block of `lang` in `docs/deploy.md` (tests keep the guide's
/// commands and files true).
pub(crate) fn doc_block(lang: &str) -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/deploy.md");
    let text = std::fs::read_to_string(path).expect("docs/deploy.md");
    let fence = format!("```{lang}\n");
    let start = text
        .find(&fence)
        .unwrap_or_else(|| panic!("no {fence} block in docs/deploy.md"))
        + fence.len();
    let len = text[start..].find("```").expect("a closed block");
    text[start..start + len].to_string()
}
