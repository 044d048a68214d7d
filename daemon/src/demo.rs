//! `murmur demo` (and the process harness the integration tests share): start N `murmur run`
//! processes on 127.0.0.1, bootstrap them all to the first, train the bundled digits shards,
//! then report per-peer accuracy, consensus and bytes against dense, and stop them cleanly.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::http;
use crate::status::Status;

/// A running `murmur run` child process.
#[derive(Debug)]
pub struct Node {
    /// The process.
    pub child: Child,
    /// Its data directory.
    pub dir: PathBuf,
    /// Its peer id.
    pub peer_id: String,
    /// Its listen multiaddr (with `/p2p/<id>`) on the swarm's transport.
    pub addr: String,
    /// Its HTTP endpoint.
    pub http: String,
}

/// The transport a local swarm's nodes listen and dial on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Transport {
    /// TCP with noise and yamux (the default).
    #[default]
    Tcp,
    /// QUIC v1 only: the nodes open no TCP listener at all.
    Quic,
}

impl Transport {
    /// The loopback listen multiaddr (port chosen by the OS).
    pub fn listen_addr(self) -> &'static str {
        match self {
            Transport::Tcp => "/ip4/127.0.0.1/tcp/0",
            Transport::Quic => "/ip4/127.0.0.1/udp/0/quic-v1",
        }
    }

    /// Whether a listen multiaddr from `node.json` is of this transport.
    fn is_mine(self, addr: &str) -> bool {
        match self {
            Transport::Tcp => addr.contains("/tcp/"),
            Transport::Quic => addr.contains("/quic-v1"),
        }
    }
}

/// Starts `murmur run --data-dir <dir> <args>` with loopback listen and HTTP addresses, and
/// waits (up to `timeout`) until it wrote `node.json` with a TCP address.
pub fn spawn_node(binary: &Path, dir: &Path, args: &[String], timeout: Duration) -> Result<Node> {
    spawn_node_on(binary, dir, args, timeout, Transport::Tcp)
}

/// [`spawn_node`] listening on `transport` only; `Node::addr` is that listen address.
pub fn spawn_node_on(
    binary: &Path,
    dir: &Path,
    args: &[String],
    timeout: Duration,
    transport: Transport,
) -> Result<Node> {
    std::fs::create_dir_all(dir)?;
    let node_file = dir.join("node.json");
    let _ = std::fs::remove_file(&node_file);
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("node.log"))?;
    let child = Command::new(binary)
        .arg("run")
        .arg("--data-dir")
        .arg(dir)
        .args(["--listen", transport.listen_addr(), "--http", "127.0.0.1:0"])
        .args(args)
        .env(
            "RUST_LOG",
            std::env::var("MURMUR_CHILD_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .with_context(|| format!("starting {}", binary.display()))?;
    let mut node = Node {
        child,
        dir: dir.to_path_buf(),
        peer_id: String::new(),
        addr: String::new(),
        http: String::new(),
    };
    let start = Instant::now();
    loop {
        if let Ok(text) = std::fs::read_to_string(&node_file)
            && let Ok(doc) = serde_json::from_str::<serde_json::Value>(&text)
            && let Some(addr) = doc["listen"].as_array().and_then(|a| {
                a.iter()
                    .filter_map(|v| v.as_str())
                    .find(|s| transport.is_mine(s))
            })
            && let Some(http) = doc["http"].as_str()
        {
            node.peer_id = doc["peer_id"].as_str().unwrap_or_default().to_string();
            node.addr = addr.to_string();
            node.http = http.to_string();
            return Ok(node);
        }
        if let Some(exit) = node.child.try_wait()? {
            bail!(
                "murmur run --data-dir {} exited with {exit} before listening:\n{}",
                dir.display(),
                log_tail(&dir.join("node.log"))
            );
        }
        if start.elapsed() > timeout {
            let _ = node.child.kill();
            bail!(
                "murmur run --data-dir {} did not start listening within {timeout:?}:\n{}",
                dir.display(),
                log_tail(&dir.join("node.log"))
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Lines of a node's log shown when it failed.
const LOG_TAIL_LINES: usize = 12;

/// The last lines of a node's log, indented, plus where the rest is: a failed start shows its
/// reason right away instead of only naming a file.
pub fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let tail = &lines[lines.len().saturating_sub(LOG_TAIL_LINES)..];
    let mut out: String = tail.iter().map(|l| format!("    {l}\n")).collect();
    out.push_str(&format!("(full log: {})", path.display()));
    out
}

impl Node {
    /// The node's status.
    pub fn status(&self) -> Result<Status> {
        let body = http::get(&self.http, "/status", Duration::from_secs(5))?;
        Ok(serde_json::from_str(&body)?)
    }

    /// Bytes libp2p wrote to the network (every transport, with stream negotiation, noise
    /// and yamux framing), from the node's Prometheus metrics.
    pub fn wire_bytes_out(&self) -> Result<u64> {
        let text = http::get(&self.http, "/metrics", Duration::from_secs(5))?;
        Ok(text
            .lines()
            .filter(|l| l.starts_with("libp2p_bandwidth_bytes_total") && l.contains("Outbound"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>() as u64)
    }

    /// The node's current model (its `/model` safetensors, flattened).
    pub fn model(&self) -> Result<Vec<f32>> {
        let bytes = http::get_bytes(&self.http, "/model", Duration::from_secs(30))?;
        crate::checkpoint::model_from_bytes(&bytes)
    }

    /// Sends a signal with the system `kill` command (`TERM`, `KILL`, ...).
    pub fn signal(&self, name: &str) -> Result<()> {
        let ok = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.child.id().to_string())
            .status()?
            .success();
        if !ok {
            bail!("kill -{name} {} failed", self.child.id());
        }
        Ok(())
    }

    /// SIGTERM, then waits up to `timeout` for a clean exit (SIGKILL after that). Returns
    /// whether the exit was clean (status 0 within the timeout).
    pub fn stop(&mut self, timeout: Duration) -> Result<bool> {
        if self.child.try_wait()?.is_some() {
            return Ok(false);
        }
        self.signal("TERM")?;
        let start = Instant::now();
        while start.elapsed() < timeout {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status.success());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        Ok(false)
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Consensus distance of a set of models: (1/n) Σ‖x_i − x̄‖², and ‖x̄‖² (the one definition,
/// [`murmur_gossip::consensus::Consensus`], that the simulator reports too).
pub fn consensus(models: &[Vec<f32>]) -> (f64, f64) {
    let c = murmur_gossip::consensus::Consensus::of(models);
    (c.distance, c.mean_norm_sq)
}

/// Options of `murmur demo`.
#[derive(Clone, Debug)]
pub struct DemoOptions {
    /// Processes to start.
    pub peers: usize,
    /// Rounds each trains.
    pub rounds: u64,
    /// Extra `murmur run` flags for every node.
    pub extra: Vec<String>,
    /// Working directory (default: a fresh temporary one, removed afterwards).
    pub dir: Option<PathBuf>,
    /// Keep the working directory.
    pub keep: bool,
    /// Give up after this long.
    pub timeout: Duration,
    /// What the nodes listen and dial on.
    pub transport: Transport,
}

/// Per-peer results of a local swarm run.
#[derive(Clone, Debug)]
pub struct SwarmReport {
    /// Final status of every node.
    pub statuses: Vec<Status>,
    /// Consensus distance and squared norm of the mean model.
    pub consensus: (f64, f64),
    /// Nodes that exited cleanly after SIGTERM (`None` while they are kept running).
    pub clean_exits: Option<usize>,
    /// Wall time from the first start to the last node done.
    pub train_secs: f64,
    /// Bytes libp2p wrote in total (all nodes, transport framing included).
    pub wire_bytes: u64,
    /// CPU the daemons used over the steady part of the run (see [`SteadyCpu`]); `None`
    /// where `/proc` does not report it or the run was too short to have a steady part.
    pub steady_cpu: Option<SteadyCpu>,
}

/// CPU time of all daemons (user + system, from `/proc/<pid>/stat`) between the first poll
/// at which every node is a quarter of the way through and the poll at which all are done,
/// with the rounds completed in between: start-up, discovery and the final evaluation stay
/// out of the per-round figure.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SteadyCpu {
    /// CPU seconds, all daemons together.
    pub cpu_secs: f64,
    /// Rounds completed, all daemons together.
    pub peer_rounds: u64,
}

impl SteadyCpu {
    /// Microseconds of CPU per peer-round.
    pub fn us_per_peer_round(&self) -> f64 {
        1e6 * self.cpu_secs / self.peer_rounds.max(1) as f64
    }
}

/// CPU seconds used so far by every node together and the rounds they completed.
fn cpu_sample(nodes: &[Node], statuses: &[Status]) -> Option<(f64, u64)> {
    let cpu = nodes
        .iter()
        .map(|n| crate::status::process_cpu_secs(n.child.id()))
        .sum::<Option<f64>>()?;
    Some((cpu, statuses.iter().map(|s| s.round).sum()))
}

impl SwarmReport {
    /// Privacy on: the peer with the largest ε (each is for its own data), with its δ.
    pub fn privacy(&self) -> Option<&crate::status::PrivacyStatus> {
        self.statuses
            .iter()
            .filter_map(|s| s.privacy.as_ref())
            .max_by(|a, b| a.epsilon.total_cmp(&b.epsilon))
    }

    /// Worst test accuracy.
    pub fn worst_accuracy(&self) -> f32 {
        self.statuses
            .iter()
            .map(|s| s.accuracy.unwrap_or(0.0))
            .fold(f32::INFINITY, f32::min)
    }

    /// Consensus distance relative to ‖x̄‖².
    pub fn relative_consensus(&self) -> f64 {
        murmur_gossip::consensus::Consensus {
            distance: self.consensus.0,
            mean_norm_sq: self.consensus.1,
        }
        .relative()
    }

    /// Dense-equivalent bytes of the updates over every gossip byte actually sent.
    pub fn bytes_saved(&self) -> f64 {
        let dense: u64 = self.statuses.iter().map(|s| s.dense_update_bytes).sum();
        let sent: u64 = self.statuses.iter().map(|s| s.bytes_sent).sum();
        dense as f64 / sent.max(1) as f64
    }

    /// Dense-equivalent bytes of the updates over the bytes libp2p actually wrote.
    pub fn wire_saved(&self) -> f64 {
        let dense: u64 = self.statuses.iter().map(|s| s.dense_update_bytes).sum();
        dense as f64 / self.wire_bytes.max(1) as f64
    }

    /// Mean share of the training thread's time spent waiting on the network.
    pub fn wait_share(&self) -> f64 {
        let n = self.statuses.len().max(1) as f64;
        self.statuses
            .iter()
            .map(|s| s.timing.wait_share())
            .sum::<f64>()
            / n
    }

    /// Mean share spent in local SGD steps.
    pub fn compute_share(&self) -> f64 {
        let n = self.statuses.len().max(1) as f64;
        self.statuses
            .iter()
            .map(|s| s.timing.compute_share())
            .sum::<f64>()
            / n
    }
}

/// Arguments every node of a local swarm gets.
fn swarm_args(i: usize, opts: &DemoOptions, bootstrap: Option<&str>) -> Vec<String> {
    let mut args = vec![
        "--shard".into(),
        i.to_string(),
        "--shards".into(),
        opts.peers.to_string(),
        "--min-peers".into(),
        opts.peers.to_string(),
        "--max-rounds".into(),
        opts.rounds.to_string(),
    ];
    if let Some(b) = bootstrap {
        args.extend(["--bootstrap".into(), b.to_string()]);
    }
    args.extend(opts.extra.iter().cloned());
    args
}

/// Starts the swarm, waits for every node to finish its rounds, collects the results and stops
/// every node with SIGTERM. `progress` gets a line now and then.
pub fn run_swarm(
    binary: &Path,
    opts: &DemoOptions,
    progress: impl FnMut(&str),
) -> Result<SwarmReport> {
    run_swarm_then(binary, opts, progress, |_, _| Ok(()))
}

/// [`run_swarm`], calling `before_stop` with the report (no clean exits counted yet) and the
/// nodes once training is done and before they are stopped: `murmur demo --keep` prints the
/// report and the dashboards there and waits for Ctrl-C.
pub fn run_swarm_then(
    binary: &Path,
    opts: &DemoOptions,
    mut progress: impl FnMut(&str),
    before_stop: impl FnOnce(&SwarmReport, &[Node]) -> Result<()>,
) -> Result<SwarmReport> {
    let dir = match &opts.dir {
        Some(d) => d.clone(),
        None => std::env::temp_dir().join(format!("murmur-demo-{}", std::process::id())),
    };
    let _ = std::fs::remove_dir_all(&dir);
    let start = Instant::now();
    let boot = Duration::from_secs(30);
    let mut nodes = vec![spawn_node_on(
        binary,
        &dir.join("node-0"),
        &swarm_args(0, opts, None),
        boot,
        opts.transport,
    )?];
    let bootstrap = nodes[0].addr.clone();
    for i in 1..opts.peers {
        let args = swarm_args(i, opts, Some(&bootstrap));
        nodes.push(spawn_node_on(
            binary,
            &dir.join(format!("node-{i}")),
            &args,
            boot,
            opts.transport,
        )?);
    }
    progress(&format!(
        "started {} daemons in {:.1}s (bootstrap {bootstrap})",
        nodes.len(),
        start.elapsed().as_secs_f64()
    ));
    for (i, node) in nodes.iter().enumerate() {
        progress(&format!("node {i} dashboard: http://{}/", node.http));
    }
    let mut last_print = Instant::now();
    let mut steady_from = None;
    let mut steady_cpu = None;
    let statuses = loop {
        for node in &mut nodes {
            if let Some(exit) = node.child.try_wait()? {
                bail!(
                    "the node in {} exited with {exit} while training:\n{}",
                    node.dir.display(),
                    log_tail(&node.dir.join("node.log"))
                );
            }
        }
        let statuses: Vec<Status> = nodes.iter().map(|n| n.status()).collect::<Result<_>>()?;
        let slowest = statuses.iter().map(|s| s.round).min().unwrap_or(0);
        if steady_from.is_none() && slowest > 0 && slowest >= opts.rounds / 4 {
            steady_from = cpu_sample(&nodes, &statuses);
        }
        if statuses.iter().all(|s| s.done) {
            if let (Some((cpu0, rounds0)), Some((cpu1, rounds1))) =
                (steady_from, cpu_sample(&nodes, &statuses))
                && rounds1 > rounds0
            {
                steady_cpu = Some(SteadyCpu {
                    cpu_secs: cpu1 - cpu0,
                    peer_rounds: rounds1 - rounds0,
                });
            }
            break statuses;
        }
        if start.elapsed() > opts.timeout {
            bail!(
                "the swarm did not finish {} rounds within {:?} (rounds reached: {:?}; logs in \
                 {}): pass --timeout <secs> to wait longer, or --rounds to train fewer",
                opts.rounds,
                opts.timeout,
                statuses.iter().map(|s| s.round).collect::<Vec<_>>(),
                dir.display()
            );
        }
        if last_print.elapsed() > Duration::from_secs(2) {
            last_print = Instant::now();
            let min = statuses.iter().map(|s| s.round).min().unwrap_or(0);
            let max = statuses.iter().map(|s| s.round).max().unwrap_or(0);
            let acc: Vec<f32> = statuses.iter().filter_map(|s| s.accuracy).collect();
            let accuracy = if acc.is_empty() {
                "not evaluated yet".to_string()
            } else {
                let mean = acc.iter().sum::<f32>() / acc.len() as f32;
                format!(
                    "mean accuracy {mean:.3} ({} of {} evaluated)",
                    acc.len(),
                    statuses.len()
                )
            };
            progress(&format!(
                "t={:>5.1}s rounds {min}..{max} of {}, {accuracy}",
                start.elapsed().as_secs_f64(),
                opts.rounds
            ));
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let train_secs = start.elapsed().as_secs_f64();
    let models: Vec<Vec<f32>> = nodes.iter().map(|n| n.model()).collect::<Result<_>>()?;
    let wire_bytes = nodes
        .iter()
        .map(|n| n.wire_bytes_out())
        .sum::<Result<u64>>()?;
    let mut report = SwarmReport {
        statuses,
        consensus: consensus(&models),
        clean_exits: None,
        train_secs,
        wire_bytes,
        steady_cpu,
    };
    before_stop(&report, &nodes)?;
    let mut clean_exits = 0;
    for node in &mut nodes {
        if node.stop(Duration::from_secs(10))? {
            clean_exits += 1;
        }
    }
    if !opts.keep && opts.dir.is_none() {
        let _ = std::fs::remove_dir_all(&dir);
    }
    report.clean_exits = Some(clean_exits);
    Ok(report)
}

/// Human-readable byte count.
fn bytes(n: u64) -> String {
    if n >= 10 << 20 {
        format!("{:.1} MiB", n as f64 / (1u64 << 20) as f64)
    } else if n >= 10 << 10 {
        format!("{:.1} KiB", n as f64 / 1024.0)
    } else {
        format!("{n} B")
    }
}

/// Prints the per-peer table, the totals and the `summary:` line.
pub fn print_report(report: &SwarmReport, wall: f64) {
    println!(
        "{:<6} {:<14} {:>6} {:>9} {:>5} {:>11} {:>11} {:>8} {:>8} {:>8}",
        "peer", "id", "round", "accuracy", "nbrs", "sent", "dense", "saved", "compute", "wait"
    );
    for (i, s) in report.statuses.iter().enumerate() {
        let id = s
            .peer_id
            .get(s.peer_id.len().saturating_sub(12)..)
            .unwrap_or("");
        println!(
            "{:<6} ..{:<12} {:>6} {:>9.4} {:>5} {:>11} {:>11} {:>7.1}x {:>7.1}% {:>7.1}%",
            i,
            id,
            s.round,
            s.accuracy.unwrap_or(f32::NAN),
            s.neighbours.len(),
            bytes(s.bytes_sent),
            bytes(s.dense_update_bytes),
            s.dense_update_bytes as f64 / s.bytes_sent.max(1) as f64,
            100.0 * s.timing.compute_share(),
            100.0 * s.timing.wait_share(),
        );
    }
    let (dist, norm) = report.consensus;
    println!(
        "consensus distance {dist:.3e} = {:.4}% of |mean model|^2 ({norm:.3e})",
        100.0 * report.relative_consensus()
    );
    let sent: u64 = report.statuses.iter().map(|s| s.bytes_sent).sum();
    let dense: u64 = report.statuses.iter().map(|s| s.dense_update_bytes).sum();
    println!(
        "bytes: {} sent in total, {} as dense f32 updates: {:.1}x fewer",
        bytes(sent),
        bytes(dense),
        report.bytes_saved()
    );
    println!(
        "wire: {} written by libp2p in total (stream negotiation and transport framing \
         included): {:.1}x fewer than the dense updates alone",
        bytes(report.wire_bytes),
        report.wire_saved()
    );
    println!(
        "round time: {:.1}% local compute, {:.1}% waiting on the network (mean over peers)",
        100.0 * report.compute_share(),
        100.0 * report.wait_share()
    );
    match report.clean_exits {
        Some(clean) => println!(
            "clean exits after SIGTERM: {clean}/{}; training {:.1}s, total {wall:.1}s",
            report.statuses.len(),
            report.train_secs
        ),
        None => println!(
            "the {} daemons keep running; training {:.1}s, total {wall:.1}s",
            report.statuses.len(),
            report.train_secs
        ),
    }
    if let Some(p) = report.privacy() {
        println!(
            "privacy: epsilon {:.4} at delta {:e} for each peer's whole local dataset (the \
             largest over the peers), after {} noised updates (clip {}, noise multiplier {})",
            p.epsilon, p.delta, p.rounds, p.clip, p.noise_multiplier
        );
    }
    println!("{}", summary_line(report, wall));
}

/// The `summary:` line of a local swarm run.
pub fn summary_line(report: &SwarmReport, wall: f64) -> String {
    let privacy_kv = report.privacy().map_or(String::new(), |p| {
        format!(" epsilon={:.4} delta={:e}", p.epsilon, p.delta)
    });
    format!(
        "summary: peers={} worst_accuracy={:.4} consensus={:.6} bytes_saved={:.1} wire_saved={:.1} wait_share={:.3} compute_share={:.3}{privacy_kv} seconds={:.1}",
        report.statuses.len(),
        report.worst_accuracy(),
        report.relative_consensus(),
        report.bytes_saved(),
        report.wire_saved(),
        report.wait_share(),
        report.compute_share(),
        wall
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consensus_of_equal_models_is_zero_and_of_spread_models_is_the_variance() {
        let (d, n) = consensus(&[vec![1.0, 2.0], vec![1.0, 2.0]]);
        assert_eq!((d, n), (0.0, 5.0));
        let (d, n) = consensus(&[vec![0.0], vec![2.0]]);
        assert_eq!((d, n), (1.0, 1.0));
    }
}
