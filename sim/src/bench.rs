//! `murmur-sim bench`: how many peers × parameters × rounds the engine simulates per second,
//! and how much memory a simulated peer costs, on a swarm of softmax-regression peers over
//! synthetic data (CHOCO with threshold-sign compression on an exponential graph).

use std::time::Instant;

use clap::Args;

use crate::scenario::{self, Scenario};

/// Benchmark options.
#[derive(Args, Debug, Clone)]
pub struct BenchArgs {
    /// Peers.
    #[arg(long, default_value_t = 1024)]
    pub peers: usize,
    /// Rounds.
    #[arg(long, default_value_t = 30)]
    pub rounds: u64,
    /// Training samples per peer.
    #[arg(long, default_value_t = 100)]
    pub samples_per_peer: usize,
    /// Features of the synthetic problem.
    #[arg(long, default_value_t = 32)]
    pub features: usize,
    /// Classes.
    #[arg(long, default_value_t = 10)]
    pub classes: usize,
    /// Topology.
    #[arg(long, default_value = "exponential")]
    pub topology: String,
    /// Codec.
    #[arg(long, default_value = "threshold:0.05")]
    pub codec: String,
}

/// Resident set size of this process in bytes (Linux; 0 elsewhere).
pub fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

/// The benchmark scenario.
pub fn scenario(args: &BenchArgs) -> anyhow::Result<Scenario> {
    let train = args.peers * args.samples_per_peer;
    // 20 % held out for testing on top of the training samples.
    let samples = train + train / 4;
    let text = format!(
        r#"
name = "bench"
seed = 7
peers = {peers}
rounds = {rounds}
topology = "{topology}"
eval_every = {rounds}
eval_peers = 64
[task]
model = "softmax"
batch_size = 16
test_fraction = 0.2
partition = "iid"
[task.data]
kind = "synthetic"
problem = "softmax"
samples = {samples}
features = {features}
classes = {classes}
noise = 0.1
seed = 3
[task.optimizer]
lr = 0.2
momentum = 0.9
[gossip]
algorithm = "choco"
codec = "{codec}"
gamma = 0.2
[network]
latency = {{ kind = "uniform", min_ms = 5.0, max_ms = 15.0 }}
bandwidth_mbps = 100.0
[compute]
step_ms = 5.0
"#,
        peers = args.peers,
        rounds = args.rounds,
        topology = args.topology,
        codec = args.codec,
        features = args.features,
        classes = args.classes,
    );
    let table: toml::Table = toml::from_str(&text)?;
    Scenario::from_table(table)
}

/// Runs the benchmark and prints a table and a `summary:` line.
pub fn run(args: &BenchArgs) -> anyhow::Result<()> {
    let s = scenario(args)?;
    let task = s.prepare()?;
    let rss0 = rss_bytes();
    let build = Instant::now();
    let engine = s.engine(&task)?;
    let build_s = build.elapsed().as_secs_f64();
    let rss_built = rss_bytes();
    let start = Instant::now();
    let report = engine.run();
    let wall = start.elapsed().as_secs_f64();
    let rss_end = rss_bytes();
    let dim = report.dim;
    let last = &report.last;
    let rounds = last.round_mean;
    let rate = s.peers as f64 * dim as f64 * rounds / wall;
    let per_peer = rss_end.saturating_sub(rss0) as f64 / s.peers as f64;
    let vectors_bytes = report.vectors_per_peer * dim as f64 * 4.0;
    println!(
        "murmur-sim bench: {} peers, softmax dim {dim}, {} train samples per peer, {} rounds, topology {}, codec {}",
        s.peers, args.samples_per_peer, s.rounds, s.topology, s.gossip.codec
    );
    println!("{:<34} {:>16}", "metric", "value");
    let rows = [
        ("build (s)", format!("{build_s:.2}")),
        ("run wall (s)", format!("{wall:.2}")),
        ("simulated time (s)", format!("{:.2}", last.time_s)),
        ("events", report.events.to_string()),
        ("events/s", format!("{:.0}", report.events as f64 / wall)),
        (
            "compute slots run in parallel",
            format!("{}/{}", report.parallel_computes, report.computes),
        ),
        ("peers x params x rounds / s", format!("{rate:.3e}")),
        ("rounds/s (swarm)", format!("{:.2}", rounds / wall)),
        (
            "RSS after build (MiB)",
            format!("{:.1}", rss_built as f64 / 1048576.0),
        ),
        (
            "RSS end (MiB)",
            format!("{:.1}", rss_end as f64 / 1048576.0),
        ),
        (
            "memory per peer (KiB, RSS)",
            format!("{:.1}", per_peer / 1024.0),
        ),
        (
            "model vectors per peer",
            format!("{:.1}", report.vectors_per_peer),
        ),
        (
            "vector memory per peer (KiB)",
            format!("{:.1}", vectors_bytes / 1024.0),
        ),
        (
            "accuracy (average model)",
            format!("{:.4}", last.accuracy_avg),
        ),
        ("bytes sent", last.bytes.to_string()),
    ];
    for (k, v) in rows {
        println!("{k:<34} {v:>16}");
    }
    println!(
        "summary: peers={} dim={dim} rounds={rounds:.1} wall_s={wall:.2} peer_params_rounds_per_s={rate:.3e} mem_per_peer_kib={:.1} vector_mem_per_peer_kib={:.1} accuracy={:.4} threads={}",
        s.peers,
        per_peer / 1024.0,
        vectors_bytes / 1024.0,
        last.accuracy_avg,
        rayon::current_num_threads()
    );
    let _ = scenario::Baseline::Allreduce;
    Ok(())
}
