//! Step time of the deep models, the cost of moving the flat parameter vector in and out of
//! candle, and the gossip work of a round against the step:
//! `cargo run --release -p murmur-gossip --example deep_bench [-- STEPS [ROUNDS]]`.
//!
//! Per model, two tables:
//! - one training step (copy in, forward, backward, copy out; median of STEPS after 5 warm-up
//!   steps, default 30), the two copies, their share of the step, and the copies against two
//!   plain memcpys of the same bytes;
//! - a lock-step swarm of real peers (8 on the exponential graph, CHOCO-SGD with the 1-bit
//!   threshold codec `threshold:0.02` (τ chosen per round so that 2% of the entries go),
//!   γ = 0.1, the task's own learner): ROUNDS rounds
//!   (default 10, after 2 warm-up rounds) timed as a whole, with the learners' steps timed
//!   inside. What is left — encoding the update, framing, decoding each neighbour's update and
//!   mixing — is the gossip work, per peer and round, reported as a share of the local step.
//!
//! Candle uses the current rayon pool: set `RAYON_NUM_THREADS=1` to time one thread.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use murmur_gossip::data::{self, TextCorpus};
use murmur_gossip::deep::{Batch, DeepModel, DeepSpec, StepProfile};
use murmur_gossip::learner::{Evaluation, LocalLearner};
use murmur_gossip::peer::testing::LockStep;
use murmur_gossip::peer::{Algorithm, CodecSpec, Mode, Peer, PeerConfig};
use murmur_gossip::task::{DataSource, TaskConfig};
use murmur_topology::Graph;

/// Peers of the swarm part.
const PEERS: usize = 8;

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

struct Row {
    name: &'static str,
    params: usize,
    step: Duration,
    copy: Duration,
    memcpy: Duration,
}

fn measure(name: &'static str, model: &DeepModel, batch: &Batch<'_>, steps: usize) -> Row {
    let params = model.init(0);
    let mut grad = vec![0f32; model.dim()];
    let mut dst = vec![0f32; model.dim()];
    let mut profiles: Vec<StepProfile> = Vec::new();
    let mut copies = Vec::new();
    for i in 0..steps + 5 {
        let profile = model.profile_step(&params, batch, &mut grad);
        let t = Instant::now();
        dst.copy_from_slice(std::hint::black_box(&params));
        std::hint::black_box(&mut dst);
        let memcpy = t.elapsed();
        if i >= 5 {
            profiles.push(profile);
            copies.push(memcpy);
        }
    }
    Row {
        name,
        params: model.dim(),
        step: median(profiles.iter().map(|p| p.total()).collect()),
        copy: median(profiles.iter().map(|p| p.copy_in + p.copy_out).collect()),
        memcpy: median(copies),
    }
}

/// A learner whose steps add their duration (ns) to a shared counter.
#[derive(Debug)]
struct Timed {
    inner: Box<dyn LocalLearner>,
    spent_ns: Arc<AtomicU64>,
}

impl LocalLearner for Timed {
    fn dim(&self) -> usize {
        self.inner.dim()
    }
    fn step(&mut self, params: &mut [f32]) -> f32 {
        let t = Instant::now();
        let loss = self.inner.step(params);
        self.spent_ns
            .fetch_add(t.elapsed().as_nanos() as u64, Ordering::Relaxed);
        loss
    }
    fn evaluate(&self, params: &[f32]) -> Evaluation {
        self.inner.evaluate(params)
    }
    fn save_state(&self) -> Vec<u8> {
        self.inner.save_state()
    }
    fn load_state(&mut self, bytes: &[u8]) -> Result<(), String> {
        self.inner.load_state(bytes)
    }
}

/// One round of the swarm, per peer.
struct RoundRow {
    name: &'static str,
    step: Duration,
    gossip: Duration,
    bytes_per_update: f64,
}

impl RoundRow {
    fn share(&self) -> f64 {
        self.gossip.as_secs_f64() / self.step.as_secs_f64()
    }
}

fn measure_round(name: &'static str, task: TaskConfig, rounds: u64) -> RoundRow {
    let task = task.prepare().expect("bench task");
    let spent_ns = Arc::new(AtomicU64::new(0));
    let config = PeerConfig {
        algorithm: Algorithm::Choco {
            codec: CodecSpec::AdaptiveThreshold { density: 0.02 },
            gamma: 0.1,
        },
        mode: Mode::RoundTagged {
            timeout: 10_000_000,
        },
        fingerprint: task.fingerprint(),
        ..PeerConfig::default()
    };
    let peers = task
        .peer_shards(PEERS)
        .iter()
        .enumerate()
        .map(|(i, shard)| {
            let learner = Timed {
                inner: task.learner_for(shard, i as u64).expect("learner"),
                spent_ns: spent_ns.clone(),
            };
            let config = PeerConfig {
                seed: i as u64,
                ..config.clone()
            };
            Peer::new(i as u32, config, Box::new(learner), task.init_params(0)).expect("peer")
        })
        .collect();
    let mut net = LockStep::new(peers, 1_000);
    net.start_with_edges(
        Graph::exponential(PEERS)
            .edges()
            .map(|(a, b)| (a as u32, b as u32))
            .collect::<Vec<_>>(),
    );
    let warm_up = 2;
    net.run_rounds(warm_up, 100);
    spent_ns.store(0, Ordering::Relaxed);
    let (bytes0, updates0) = traffic(&net);
    let t = Instant::now();
    net.run_rounds(rounds, 100 * rounds as usize);
    let wall = t.elapsed();
    let (bytes1, updates1) = traffic(&net);
    let reached = net.peers().iter().map(|p| p.round()).min().unwrap_or(0);
    assert!(
        reached >= warm_up + rounds,
        "the swarm stalled at round {reached}"
    );
    let step = Duration::from_nanos(spent_ns.load(Ordering::Relaxed));
    let per = (PEERS as u64 * rounds) as u32;
    RoundRow {
        name,
        step: step / per,
        gossip: wall.saturating_sub(step) / per,
        bytes_per_update: (bytes1 - bytes0) as f64 / (updates1 - updates0).max(1) as f64,
    }
}

fn traffic(net: &LockStep) -> (u64, u64) {
    net.peers().iter().fold((0, 0), |(b, u), p| {
        (b + p.stats().update_bytes_sent, u + p.stats().updates_sent)
    })
}

fn main() {
    let mut args = std::env::args().skip(1);
    let steps: usize = args
        .next()
        .map(|s| s.parse().expect("STEPS is a number"))
        .unwrap_or(30);
    let rounds: u64 = args
        .next()
        .map(|s| s.parse().expect("ROUNDS is a number"))
        .unwrap_or(10);
    let threads = std::env::var("RAYON_NUM_THREADS").unwrap_or_else(|_| "all cores".into());
    println!("deep_bench: median of {steps} steps after 5 warm-up, rayon threads: {threads}");

    let mnist = data::mnist();
    let cnn = DeepSpec::default().build_for_images(&mnist).unwrap();
    let b = 32;
    let pixels: Vec<f32> = mnist
        .features
        .slice(ndarray::s![..b, ..])
        .iter()
        .copied()
        .collect();
    let labels: Vec<u32> = (0..b).map(|i| mnist.label(i) as u32).collect();
    let cnn_row = measure(
        "cnn:8,32,128 (MNIST, 32 images)",
        &cnn,
        &Batch::Images {
            pixels: &pixels,
            labels: &labels,
        },
        steps,
    );

    let text = TextCorpus::from_bytes(data::shakespeare()).unwrap();
    let tf = "transformer"
        .parse::<DeepSpec>()
        .unwrap()
        .build_for_text(&text)
        .unwrap();
    let window = tf.window().unwrap();
    let windows = 16;
    let tokens: Vec<u8> = (0..windows)
        .flat_map(|k| text.tokens()[k * 1000..k * 1000 + window].to_vec())
        .collect();
    let tf_row = measure(
        "transformer 2x128, 4 heads, ctx 64 (16 windows)",
        &tf,
        &Batch::Windows { tokens: &tokens },
        steps,
    );

    println!(
        "{:<50} {:>9} {:>9} {:>14} {:>10} {:>12}",
        "model", "params", "step ms", "copy in+out ms", "copy share", "vs 2 memcpy"
    );
    for r in [&cnn_row, &tf_row] {
        println!(
            "{:<50} {:>9} {:>9.2} {:>14.3} {:>9.2}% {:>11.1}x",
            r.name,
            r.params,
            r.step.as_secs_f64() * 1e3,
            r.copy.as_secs_f64() * 1e3,
            100.0 * r.copy.as_secs_f64() / r.step.as_secs_f64(),
            r.copy.as_secs_f64() / (2.0 * r.memcpy.as_secs_f64()),
        );
    }

    let cnn_task = TaskConfig {
        data: DataSource::Mnist,
        model: "cnn".parse().unwrap(),
        batch_size: b,
        ..TaskConfig::default()
    };
    let tf_task = TaskConfig {
        data: DataSource::Shakespeare,
        model: "transformer".parse().unwrap(),
        batch_size: windows,
        ..TaskConfig::default()
    };
    let cnn_round = measure_round("cnn:8,32,128", cnn_task, rounds);
    let tf_round = measure_round("transformer", tf_task, rounds);
    println!(
        "\n{PEERS} peers, exponential graph, CHOCO threshold:0.02; per peer and round, mean of {rounds} rounds"
    );
    println!(
        "{:<50} {:>9} {:>16} {:>12} {:>14}",
        "model", "step ms", "gossip work ms", "gossip share", "bytes/update"
    );
    for r in [&cnn_round, &tf_round] {
        println!(
            "{:<50} {:>9.2} {:>16.3} {:>11.2}% {:>14.0}",
            r.name,
            r.step.as_secs_f64() * 1e3,
            r.gossip.as_secs_f64() * 1e3,
            100.0 * r.share(),
            r.bytes_per_update,
        );
    }
    println!(
        "summary: cnn_params={} cnn_step_ms={:.2} cnn_copy_share={:.4} cnn_gossip_share={:.4} transformer_params={} transformer_step_ms={:.2} transformer_copy_share={:.4} transformer_gossip_share={:.4}",
        cnn_row.params,
        cnn_row.step.as_secs_f64() * 1e3,
        cnn_row.copy.as_secs_f64() / cnn_row.step.as_secs_f64(),
        cnn_round.share(),
        tf_row.params,
        tf_row.step.as_secs_f64() * 1e3,
        tf_row.copy.as_secs_f64() / tf_row.step.as_secs_f64(),
        tf_round.share(),
    );
}
