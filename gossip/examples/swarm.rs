//! A lock-step swarm of murmur peers on the bundled digits: 16 peers on Dirichlet(0.5) label-
//! skewed shards (the learning core's task, partitioner and `SgdLearner`), exponential graph,
//! softmax regression. Runs exact D-PSGD and CHOCO-SGD with
//! several codecs and storages on the same schedule, and prints accuracy, consensus and bytes.
//!
//! `cargo run --release -p murmur-gossip --example swarm -- [rounds] [local_steps]`

#[path = "../tests/peer_support/digits.rs"]
#[allow(dead_code, unreachable_pub)]
mod digits;

use std::time::Instant;

use digits::Digits;
use murmur_gossip::peer::testing::LockStep;
use murmur_gossip::peer::{Algorithm, CodecSpec, CopyStorage, Mode, Peer, PeerConfig};

const PEERS: u32 = 16;

fn exponential_edges(n: u32) -> Vec<(u32, u32)> {
    let mut edges = std::collections::BTreeSet::new();
    for i in 0..n {
        let mut k = 1;
        while k < n {
            let j = (i + k) % n;
            if j != i {
                edges.insert((i.min(j), i.max(j)));
            }
            k *= 2;
        }
    }
    edges.into_iter().collect()
}

struct Row {
    name: String,
    accuracy: f32,
    worst: f32,
    consensus: f64,
    bytes: u64,
    bytes_per_update: f64,
    vectors: usize,
    seconds: f64,
}

fn run(name: &str, config: PeerConfig, rounds: u64, h: u32) -> Row {
    let task = Digits::new(PEERS as usize, rounds, h);
    let peers = (0..PEERS)
        .map(|i| {
            let config = PeerConfig {
                local_steps: h,
                seed: i.into(),
                fingerprint: task.task.fingerprint(),
                ..config.clone()
            };
            let learner = task.learner(i as usize);
            Peer::new(i, config, Box::new(learner), task.task.init_params(0)).expect("valid config")
        })
        .collect();
    let start = Instant::now();
    let mut net = LockStep::new(peers, 1_000);
    net.start_with_edges(exponential_edges(PEERS));
    net.run_rounds(rounds, 4 * rounds as usize);
    let accuracies: Vec<f32> = net
        .peers()
        .iter()
        .map(|p| p.evaluate().accuracy.unwrap_or(0.0))
        .collect();
    let updates: u64 = net.peers().iter().map(|p| p.stats().updates_sent).sum();
    let bytes: u64 = net.peers().iter().map(|p| p.stats().bytes_sent).sum();
    Row {
        name: name.to_string(),
        accuracy: accuracies.iter().sum::<f32>() / accuracies.len() as f32,
        worst: accuracies.iter().copied().fold(1.0, f32::min),
        consensus: net.consensus_distance() / f64::from(PEERS),
        bytes,
        bytes_per_update: bytes as f64 / updates.max(1) as f64,
        vectors: net
            .peers()
            .iter()
            .map(|p| p.vectors_held())
            .max()
            .unwrap_or(0),
        seconds: start.elapsed().as_secs_f64(),
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let rounds: u64 = args.next().map_or(3_000, |a| a.parse().expect("rounds"));
    let h: u32 = args.next().map_or(2, |a| a.parse().expect("local steps"));
    let tagged = Mode::RoundTagged { timeout: 10_000 };
    let choco = |codec, gamma| PeerConfig {
        algorithm: Algorithm::Choco { codec, gamma },
        mode: tagged.clone(),
        ..PeerConfig::default()
    };
    let central = Digits::new(PEERS as usize, rounds, h).centralized_accuracy();

    let runs = vec![
        (
            "D-PSGD (dense f32)",
            PeerConfig {
                algorithm: Algorithm::Dpsgd,
                mode: tagged.clone(),
                ..PeerConfig::default()
            },
        ),
        (
            // The configuration of the digits test (peer_digits.rs), reported in the summary.
            "CHOCO adaptive-threshold 0.3%",
            choco(CodecSpec::AdaptiveThreshold { density: 0.003 }, 0.015),
        ),
        (
            "CHOCO adaptive-threshold 1%",
            choco(CodecSpec::AdaptiveThreshold { density: 0.01 }, 0.05),
        ),
        (
            "CHOCO adaptive-threshold 0.5%",
            choco(CodecSpec::AdaptiveThreshold { density: 0.005 }, 0.025),
        ),
        (
            "CHOCO threshold-sign tau=0.05",
            choco(CodecSpec::ThresholdSign { tau: 0.05 }, 0.3),
        ),
        (
            "CHOCO top-k 1%",
            choco(CodecSpec::TopK { density: 0.01 }, 0.05),
        ),
        (
            "CHOCO 0.5% aggregate storage",
            PeerConfig {
                copies: CopyStorage::Aggregate,
                ..choco(CodecSpec::AdaptiveThreshold { density: 0.005 }, 0.025)
            },
        ),
        (
            "CHOCO 0.5% async",
            PeerConfig {
                mode: Mode::Async {
                    max_staleness: 8,
                    damping: 0.9,
                    timeout: 1_000_000,
                },
                ..choco(CodecSpec::AdaptiveThreshold { density: 0.005 }, 0.025)
            },
        ),
    ];
    println!(
        "{PEERS} peers, digits (Dirichlet 0.5), exponential graph, {rounds} rounds x {h} local steps; centralized accuracy {central:.4}\n"
    );
    println!(
        "{:<32} {:>8} {:>8} {:>11} {:>13} {:>10} {:>8} {:>7} {:>6}",
        "run",
        "mean acc",
        "worst",
        "consensus",
        "bytes sent",
        "B/update",
        "saving",
        "vectors",
        "secs"
    );
    let mut rows = Vec::new();
    for (name, config) in runs {
        let row = run(name, config, rounds, h);
        let dense = rows.first().map_or(row.bytes, |r: &Row| r.bytes);
        println!(
            "{:<32} {:>8.4} {:>8.4} {:>11.2e} {:>13} {:>10.1} {:>7.1}x {:>7} {:>6.1}",
            row.name,
            row.accuracy,
            row.worst,
            row.consensus,
            row.bytes,
            row.bytes_per_update,
            dense as f64 / row.bytes as f64,
            row.vectors,
            row.seconds
        );
        rows.push(row);
    }
    let dense = &rows[0];
    let best = &rows[1];
    println!(
        "\nsummary: peers={PEERS} rounds={rounds} centralized_accuracy={central:.4} dpsgd_accuracy={:.4} choco_accuracy={:.4} choco_worst_accuracy={:.4} bytes_dpsgd={} bytes_choco={} bytes_saved={:.1}",
        dense.accuracy,
        best.accuracy,
        best.worst,
        dense.bytes,
        best.bytes,
        dense.bytes as f64 / best.bytes as f64
    );
}
