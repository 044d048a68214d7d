//! Network namespaces for the daemon's lab tests: creating and removing them, veth links, and
//! `murmur run` / `murmur status` inside them through `ip netns exec`. Tests that use them
//! print `SKIPPED:` with the reason where namespaces cannot be made.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use super::binary;

/// Runs `ip <args>`; the error carries the command and what it printed.
pub(crate) fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("ip {}: {e}", args.join(" ")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Runs `cmd` inside namespace `ns`; the error carries the command and what it printed.
pub(crate) fn exec(ns: &str, cmd: &[&str]) -> Result<String, String> {
    let out = Command::new("ip")
        .args(["netns", "exec", ns])
        .args(cmd)
        .output()
        .map_err(|e| format!("ip netns exec {ns} {}: {e}", cmd.join(" ")))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "ip netns exec {ns} {}: {}",
            cmd.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Why namespaces cannot be used here (`None`: they can): they need root.
pub(crate) fn unavailable() -> Option<String> {
    let root = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false);
    (!root).then(|| "network namespaces need root (this test runs as uid != 0)".to_string())
}

/// Namespaces this test created; removed on drop (their veth ends go with them).
#[derive(Debug, Default)]
pub(crate) struct Namespaces {
    pub(crate) names: Vec<String>,
}

impl Namespaces {
    /// Creates namespace `name` with its loopback up.
    pub(crate) fn add(&mut self, name: &str) -> Result<(), String> {
        ip(&["netns", "add", name])?;
        self.names.push(name.to_string());
        ip(&["-n", name, "link", "set", "lo", "up"])
    }
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        for name in &self.names {
            let _ = ip(&["netns", "del", name]);
        }
    }
}

/// A veth pair `a` in namespace `ns_a` with `addr_a` (CIDR) and `b` in `ns_b` with `addr_b`,
/// both up.
pub(crate) fn veth(
    (ns_a, a, addr_a): (&str, &str, &str),
    (ns_b, b, addr_b): (&str, &str, &str),
) -> Result<(), String> {
    ip(&["link", "add", a, "type", "veth", "peer", "name", b])?;
    for (ns, dev, addr) in [(ns_a, a, addr_a), (ns_b, b, addr_b)] {
        ip(&["link", "set", dev, "netns", ns])?;
        ip(&["-n", ns, "addr", "add", addr, "dev", dev])?;
        ip(&["-n", ns, "link", "set", dev, "up"])?;
    }
    Ok(())
}

/// A `murmur run` started inside a namespace; killed on drop.
#[derive(Debug)]
pub(crate) struct NsNode {
    pub(crate) child: Child,
    pub(crate) ns: String,
    pub(crate) dir: PathBuf,
}

impl Drop for NsNode {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `murmur run --data-dir <dir> --http 127.0.0.1:0 <args>` in `ns`, logging to
/// `<dir>/node.log`.
pub(crate) fn spawn_in(ns: &str, dir: &Path, args: &[String]) -> NsNode {
    std::fs::create_dir_all(dir).unwrap();
    let logfile = std::fs::File::create(dir.join("node.log")).unwrap();
    let child = Command::new("ip")
        .args(["netns", "exec", ns])
        .arg(binary())
        .arg("run")
        .arg("--data-dir")
        .arg(dir)
        .args(["--http", "127.0.0.1:0"])
        .args(args)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(logfile.try_clone().unwrap())
        .stderr(logfile)
        .spawn()
        .expect("ip netns exec murmur run");
    NsNode {
        child,
        ns: ns.to_string(),
        dir: dir.to_path_buf(),
    }
}

/// The node's stdout/stderr log so far.
pub(crate) fn log(node: &NsNode) -> String {
    std::fs::read_to_string(node.dir.join("node.log")).unwrap_or_default()
}

/// The node's `node.json` (peer id, listen addresses, HTTP endpoint), once written.
pub(crate) fn node_file(node: &NsNode) -> Option<serde_json::Value> {
    let text = std::fs::read_to_string(node.dir.join("node.json")).ok()?;
    serde_json::from_str(&text).ok()
}

/// The node's `/status` as JSON, fetched from inside its namespace by `murmur status`.
pub(crate) fn status(node: &NsNode) -> Option<serde_json::Value> {
    let http = node_file(node)?["http"].as_str()?.to_string();
    let out = exec(
        &node.ns,
        &[binary().to_str()?, "status", "--json", "--addr", &http],
    )
    .ok()?;
    serde_json::from_str(&out).ok()
}

/// Polls every node until each status is `done`, returning them in order; panics with the
/// last statuses and the logs after `timeout` (`what` says what was awaited) or if a node
/// exits.
pub(crate) fn wait_done(
    nodes: &mut [NsNode],
    timeout: std::time::Duration,
    what: &str,
) -> Vec<serde_json::Value> {
    let deadline = std::time::Instant::now() + timeout;
    let mut finished = vec![None; nodes.len()];
    while finished.iter().any(Option::is_none) {
        for (i, node) in nodes.iter_mut().enumerate() {
            if let Some(exit) = node.child.try_wait().unwrap() {
                panic!("node {i} exited with {exit}:\n{}", log(node));
            }
            if finished[i].is_none()
                && let Some(s) = status(node)
                && s["done"].as_bool() == Some(true)
            {
                finished[i] = Some(s);
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "not every node finished {what}; last statuses {:#?}\nlogs:\n{}",
            nodes.iter().map(status).collect::<Vec<_>>(),
            nodes.iter().map(log).collect::<Vec<_>>().join("\n---\n")
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    finished.into_iter().map(Option::unwrap).collect()
}
