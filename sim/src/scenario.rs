//! A simulation scenario as a TOML file, and running it (with its baselines).
//!
//! ```toml
//! name = "quick"
//! seed = 1
//! peers = 16
//! rounds = 200
//! topology = "exponential"
//! eval_every = 20
//! baselines = ["allreduce", "dpsgd"]
//!
//! [task]            # murmur_gossip::task::TaskConfig (data, model, optimizer, partition)
//! partition = "dirichlet:0.5"
//!
//! [gossip]          # the averaging algorithm in short form
//! algorithm = "choco"
//! codec = "threshold:0.01"
//! gamma = 0.1
//!
//! [peer]            # any other murmur_gossip::peer::PeerConfig field
//! local_steps = 1
//!
//! [network]         # crate::network::NetworkConfig
//! latency = { kind = "uniform", min_ms = 5, max_ms = 15 }
//!
//! [compute]         # crate::compute::ComputeConfig
//! step_ms = 10
//! ```
//! plus optional `[faults]` (churn, partitions) and `[adversary]` sections.

use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, bail};
use murmur_gossip::learner::LocalLearner;
use murmur_gossip::peer::{Algorithm, Micros, PeerConfig, PrivacyConfig};
use murmur_gossip::task::{PreparedTask, TaskConfig};
use serde::{Deserialize, Serialize};

use crate::adversary::AdversaryConfig;
use crate::compute::ComputeConfig;
use crate::engine::{Engine, EngineConfig, RunReport};
use crate::faults::FaultsConfig;
use crate::metrics::{EvalRow, MetricsFormat};
use crate::network::NetworkConfig;
use crate::ring::RingClock;
use crate::topo;

/// A reference run on the same data and step budget.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Baseline {
    /// Centralized minibatch SGD with the swarm's total batch (n × batch), one step per
    /// local step of the swarm: what an all-reduce cluster computes.
    Allreduce,
    /// The same swarm running exact D-PSGD (dense models every round).
    Dpsgd,
}

impl Baseline {
    /// The suffix its runs carry ("allreduce", "dpsgd").
    pub fn label(self) -> &'static str {
        match self {
            Baseline::Allreduce => "allreduce",
            Baseline::Dpsgd => "dpsgd",
        }
    }
}

/// The averaging algorithm in short form.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GossipConfig {
    /// "choco", "dpsgd", "push-sum" or "compressed-push-sum".
    pub algorithm: String,
    /// Codec spec for CHOCO (see murmur-compress: "dense", "threshold:0.01", "topk:0.01", ...).
    pub codec: String,
    /// CHOCO consensus step γ.
    pub gamma: f32,
}

impl Default for GossipConfig {
    fn default() -> Self {
        GossipConfig {
            algorithm: "choco".into(),
            codec: "threshold:0.01".into(),
            gamma: 0.4,
        }
    }
}

impl GossipConfig {
    /// The peer-level algorithm.
    pub fn algorithm(&self) -> anyhow::Result<Algorithm> {
        Algorithm::from_name(&self.algorithm, &self.codec, self.gamma)
            .map_err(|e| anyhow::anyhow!("gossip.algorithm: {e}"))
    }
}

/// One simulation scenario (see the module docs for the TOML form).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Scenario {
    /// Name (the variant column of the metric files).
    pub name: String,
    /// Seed of the whole run (network, speeds, churn, peer seeds, task seed offset).
    pub seed: u64,
    /// Number of peers (joiners included).
    pub peers: usize,
    /// Rounds every peer runs (0: run for `duration_s`).
    pub rounds: u64,
    /// Stop at this simulated time.
    pub duration_s: Option<f64>,
    /// Evaluate every this many rounds.
    pub eval_every: u64,
    /// Evaluate every this many simulated seconds instead (or as well).
    pub eval_every_s: Option<f64>,
    /// Peers whose own model is evaluated per tick (0: all).
    pub eval_peers: usize,
    /// Topology spec ("exponential", "ring", "torus", "random-regular:4", ...).
    pub topology: String,
    /// Per-peer noise on the initial model (for consensus experiments).
    pub init_noise: f32,
    /// Reference runs.
    pub baselines: Vec<Baseline>,
    /// Metric file format.
    pub metrics_format: MetricsFormat,
    /// What is learned.
    pub task: TaskConfig,
    /// Averaging algorithm.
    pub gossip: GossipConfig,
    /// Everything else about a peer (`algorithm` is taken from `[gossip]`).
    pub peer: PeerConfig,
    /// Links.
    pub network: NetworkConfig,
    /// Compute speeds.
    pub compute: ComputeConfig,
    /// Churn and partitions.
    pub faults: FaultsConfig,
    /// Hostile peers.
    pub adversary: Option<AdversaryConfig>,
}

impl Default for Scenario {
    fn default() -> Self {
        Scenario {
            name: "run".into(),
            seed: 1,
            peers: 16,
            rounds: 100,
            duration_s: None,
            eval_every: 10,
            eval_every_s: None,
            eval_peers: 0,
            topology: "exponential".into(),
            init_noise: 0.0,
            baselines: Vec::new(),
            metrics_format: MetricsFormat::Csv,
            task: TaskConfig::default(),
            gossip: GossipConfig::default(),
            peer: PeerConfig::default(),
            network: NetworkConfig::default(),
            compute: ComputeConfig::default(),
            faults: FaultsConfig::default(),
            adversary: None,
        }
    }
}

/// Deep-merges `overlay` into `base` (tables merge key by key, anything else replaces).
pub fn merge(base: &mut toml::Table, overlay: &toml::Table) {
    for (k, v) in overlay {
        match (base.get_mut(k), v) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => merge(b, o),
            _ => {
                base.insert(k.clone(), v.clone());
            }
        }
    }
}

pub use murmur_gossip::settings::set_dotted;

/// Parses `key=value` where value is TOML (`3`, `0.5`, `"ring"`, `[1, 2]`) or a bare string
/// (`murmur_gossip::settings::parse_assignment`, the daemon's `--set` too).
pub fn parse_assignment(text: &str) -> anyhow::Result<(String, toml::Value)> {
    Ok(murmur_gossip::settings::parse_assignment(text)?)
}

impl Scenario {
    /// Parses a scenario table.
    pub fn from_table(table: toml::Table) -> anyhow::Result<Self> {
        if let Some(peer) = table.get("peer").and_then(toml::Value::as_table) {
            for key in peer.keys() {
                if let Some(hint) = murmur_gossip::peer::removed_key(key) {
                    bail!("peer.{key}: {hint}");
                }
            }
        }
        let s: Scenario = toml::Value::Table(table)
            .try_into()
            .context("invalid scenario")?;
        s.validate()?;
        Ok(s)
    }

    /// Checks what serde cannot.
    pub fn validate(&self) -> anyhow::Result<()> {
        if self.peers == 0 {
            bail!("peers must be >= 1");
        }
        if self.rounds == 0 && self.duration_s.is_none() {
            bail!("set rounds or duration_s");
        }
        if self.eval_every == 0 && self.eval_every_s.is_none() {
            bail!(
                "eval_every = 0 never evaluates: it must be >= 1, or set eval_every_s to evaluate \
                 by simulated time only"
            );
        }
        if let Some(s) = self.eval_every_s
            && !(s.is_finite() && s > 0.0)
        {
            bail!("eval_every_s = {s} must be a finite number > 0");
        }
        // Every range is checked here, before any data is loaded, with the key's name.
        self.task.validate().map_err(|e| match e {
            murmur_gossip::task::TaskError::Config(msg) => anyhow::anyhow!("task.{msg}"),
            other => anyhow::anyhow!("task: {other}"),
        })?;
        self.peer_config(0)?
            .validate()
            .map_err(|e| anyhow::anyhow!("[peer]/[gossip]: {e}"))?;
        self.network.validate()?;
        self.compute.validate()?;
        Ok(())
    }

    /// The full peer configuration.
    pub fn peer_config(&self, fingerprint: u64) -> anyhow::Result<PeerConfig> {
        Ok(PeerConfig {
            algorithm: self.gossip.algorithm()?,
            fingerprint,
            ..self.peer.clone()
        })
    }

    /// The task with the learning-rate schedule fitted to the run length.
    pub fn task_config(&self) -> TaskConfig {
        let mut task = self.task.clone();
        let steps = self.rounds * u64::from(self.peer.local_steps);
        if steps > 0 {
            task.optimizer = task.optimizer.with_horizon(steps);
        }
        task
    }

    /// Loads the data once.
    pub fn prepare(&self) -> anyhow::Result<PreparedTask> {
        self.task_config()
            .prepare()
            .map_err(|e| anyhow::anyhow!("task: {e}"))
    }

    /// Builds the engine for this scenario on a prepared task.
    pub fn engine(&self, task: &PreparedTask) -> anyhow::Result<Engine> {
        let comm = topo::build(&self.topology, self.peers, self.seed)?;
        let shards = task.peer_shards(self.peers);
        if let Some(i) = shards.iter().position(|s| s.is_empty()) {
            bail!(
                "peer {i} gets no training data ({} samples for {} peers)",
                task.train_len(),
                self.peers
            );
        }
        // Refuse a shard the model cannot train on (e.g. shorter than one window) at start.
        for (i, shard) in shards.iter().enumerate() {
            task.learner_for(shard, i as u64)
                .map_err(|e| anyhow::anyhow!("peer {i}: task: {e}"))?;
        }
        let shards = Arc::new(shards);
        let learner_task = task.clone();
        let factory = Box::new(move |i: usize| -> Box<dyn LocalLearner> {
            learner_task
                .learner_for(&shards[i], i as u64)
                .expect("every shard was checked when the engine was built")
        });
        let config = EngineConfig {
            peers: self.peers,
            rounds: self.rounds,
            duration: self.duration_s.map(|s| (s * 1e6).round() as u64),
            eval_every_rounds: self.eval_every,
            eval_every: self.eval_every_s.map(|s| (s * 1e6).round().max(1.0) as u64),
            eval_peers: self.eval_peers,
            peer: self.peer_config(task.fingerprint())?,
            network: self.network.clone(),
            compute: self.compute.clone(),
            faults: self.faults.clone(),
            adversary: self.adversary.clone(),
            edges: comm.edges,
            push_schedule: comm.push_schedule,
            init_noise: self.init_noise,
            seed: self.seed,
        };
        Ok(Engine::new(
            config,
            factory,
            task.init_params(self.task.seed),
        )?)
    }

    /// The same scenario running exact D-PSGD.
    pub fn as_dpsgd(&self) -> Scenario {
        Scenario {
            name: format!("{}-dpsgd", self.name),
            gossip: GossipConfig {
                algorithm: "dpsgd".into(),
                ..self.gossip.clone()
            },
            baselines: Vec::new(),
            ..self.clone()
        }
    }
}

/// All-reduce minibatch SGD on the same data: one model, batches of n × batch, one step per
/// swarm local step, evaluated at the same rounds as the swarm. Traffic is what a ring
/// all-reduce of the dense gradient costs: 2 (n − 1)/n × 4d bytes per peer per step; its
/// time is the [`RingClock`]'s on the scenario's network and compute model.
pub fn allreduce(scenario: &Scenario, task: &PreparedTask) -> Vec<EvalRow> {
    let n = scenario.peers;
    let h = u64::from(scenario.peer.local_steps.max(1));
    let total_batch = task.config().batch_size * n;
    let mut config = scenario.task_config();
    config.batch_size = total_batch;
    // Same data, model and optimizer; only the batch differs. AdamW's correction for the mean
    // of n peers' gradients is off: all-reduce already steps on that mean.
    config.optimizer.second_moment_peers = 0;
    let big = match config.prepare() {
        Ok(t) => t,
        Err(_) => return Vec::new(),
    };
    let Ok(mut learner) = big.learner_for(&big.whole_shard(), u64::MAX) else {
        return Vec::new();
    };
    let mut params = task.init_params(scenario.task.seed).to_vec();
    let dim = params.len() as f64;
    let bytes_per_step = (2.0 * (n as f64 - 1.0) / n as f64 * 4.0 * dim * n as f64) as u64;
    let rounds = scenario.rounds.max(1);
    let every = scenario.eval_every.max(1);
    let mut clock = RingClock::new(
        &scenario.network,
        &scenario.compute,
        n,
        params.len(),
        scenario.seed,
    );
    let mut now: Micros = 0;
    let mut rows = Vec::new();
    let mut loss = f64::NAN;
    for r in 0..=rounds {
        if r % every == 0 || r == rounds {
            let e = learner.evaluate(&params);
            let steps = r * h;
            rows.push(EvalRow {
                time_s: now as f64 / 1e6,
                round: r,
                round_mean: r as f64,
                steps_mean: steps as f64,
                train_loss: loss,
                test_loss_avg: f64::from(e.loss),
                accuracy_avg: e.accuracy.map_or(f64::NAN, f64::from),
                accuracy_mean: e.accuracy.map_or(f64::NAN, f64::from),
                accuracy_worst: e.accuracy.map_or(f64::NAN, f64::from),
                consensus: 0.0,
                consensus_relative: 0.0,
                // The centralized baseline sees the data unnoised.
                epsilon: f64::NAN,
                bytes: steps * bytes_per_step,
                bytes_per_peer: (steps * bytes_per_step) as f64 / n as f64,
                bytes_per_peer_max: steps * bytes_per_step / n as u64,
                messages: steps * 2 * (n as u64 - 1) * n as u64,
                messages_per_peer: (steps * 2 * (n as u64 - 1)) as f64,
                rejected: 0,
                live_peers: n,
            });
        }
        if r == rounds {
            break;
        }
        let mut sum = 0.0;
        for _ in 0..h {
            sum += f64::from(learner.step(&mut params));
            now += clock.step_micros();
        }
        loss = sum / h as f64;
    }
    rows
}

/// One finished variant.
#[derive(Debug, Clone)]
pub struct VariantResult {
    /// Variant name.
    pub name: String,
    /// Per-tick rows.
    pub rows: Vec<EvalRow>,
    /// Engine report (None for the all-reduce baseline).
    pub report: Option<RunReport>,
    /// Wall-clock seconds.
    pub wall_s: f64,
}

/// A scenario and its baselines, run.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The main run first, then the baselines.
    pub variants: Vec<VariantResult>,
    /// Length of the flat parameter vector.
    pub params: usize,
    /// Text tasks: the unigram (character-frequency) loss of the evaluation windows.
    pub unigram_loss: Option<f64>,
    /// What the evaluation runs on ([`PreparedTask::evaluation_note`]).
    pub evaluation: String,
    /// The privacy the main run's peers used (`peer.privacy`), if any.
    pub privacy: Option<PrivacyConfig>,
}

impl Outcome {
    /// The main run.
    pub fn main(&self) -> &VariantResult {
        &self.variants[0]
    }

    /// A variant by name suffix ("allreduce", "dpsgd").
    pub fn find(&self, suffix: &str) -> Option<&VariantResult> {
        self.variants
            .iter()
            .skip(1)
            .find(|v| v.name.ends_with(suffix))
    }

    /// The summary as a JSON object (`summary.json`) with typed values: numbers as numbers
    /// (NaN, which JSON lacks, as null), only names as strings.
    pub fn summary_json(&self) -> serde_json::Value {
        let map: serde_json::Map<String, serde_json::Value> = self
            .summary()
            .into_iter()
            .map(|(k, v)| (k, typed_value(&v)))
            .collect();
        serde_json::Value::Object(map)
    }

    /// key=value pairs of the summary line.
    pub fn summary(&self) -> Vec<(String, String)> {
        let m = self.main();
        let last = m.rows.last().cloned().unwrap_or_default();
        let report = m.report.as_ref();
        let mut kv: Vec<(String, String)> = vec![
            ("params".into(), self.params.to_string()),
            ("accuracy".into(), format!("{:.4}", last.accuracy_avg)),
            ("accuracy_mean".into(), format!("{:.4}", last.accuracy_mean)),
            (
                "accuracy_worst".into(),
                format!("{:.4}", last.accuracy_worst),
            ),
        ];
        if let Some(a) = self.find("allreduce") {
            let l = a.rows.last().cloned().unwrap_or_default();
            kv.push((
                "allreduce_accuracy".into(),
                format!("{:.4}", l.accuracy_avg),
            ));
            kv.push(("allreduce_sim_time_s".into(), format!("{:.2}", l.time_s)));
        }
        if let Some(unigram) = self.unigram_loss {
            kv.push(("val_loss".into(), format!("{:.4}", last.test_loss_avg)));
            if let Some(a) = self.find("allreduce") {
                let l = a.rows.last().cloned().unwrap_or_default();
                kv.push((
                    "allreduce_val_loss".into(),
                    format!("{:.4}", l.test_loss_avg),
                ));
            }
            kv.push(("unigram_loss".into(), format!("{unigram:.4}")));
        }
        if let Some(privacy) = &self.privacy {
            // Peer-level (ε, δ) of the most-released peer's data (murmur_gossip::privacy).
            kv.push(("epsilon".into(), format!("{:.4}", last.epsilon)));
            kv.push(("delta".into(), format!("{:e}", privacy.delta)));
        }
        kv.push(("bytes".into(), last.bytes.to_string()));
        if let Some(d) = self.find("dpsgd") {
            let l = d.rows.last().cloned().unwrap_or_default();
            kv.push(("dpsgd_accuracy".into(), format!("{:.4}", l.accuracy_avg)));
            kv.push(("dpsgd_bytes".into(), l.bytes.to_string()));
            kv.push((
                "bytes_saved".into(),
                format!("{:.1}", l.bytes as f64 / last.bytes.max(1) as f64),
            ));
        } else if let Some(r) = report {
            kv.push((
                "bytes_saved".into(),
                format!(
                    "{:.1}",
                    r.dense_equivalent_bytes as f64 / last.bytes.max(1) as f64
                ),
            ));
        }
        kv.push(("rounds".into(), last.round.to_string()));
        if let Some(r) = report
            && !r.joins.is_empty()
        {
            // The slowest joiner's download, and the fewest neighbours any joiner averaged.
            let join_s = r.joins.iter().map(|j| j.join_s).fold(0.0, f64::max);
            let donors = r.joins.iter().map(|j| j.donors).min().unwrap_or(0);
            kv.push(("joins".into(), r.joins.len().to_string()));
            kv.push(("join_s".into(), format!("{join_s:.3}")));
            kv.push(("join_donors".into(), donors.to_string()));
        }
        // Relative, as the daemon's summary; the absolute distance beside it.
        kv.push((
            "consensus".into(),
            format!("{:.3e}", last.consensus_relative),
        ));
        kv.push(("consensus_abs".into(), format!("{:.3e}", last.consensus)));
        kv.push(("rejected".into(), last.rejected.to_string()));
        kv.push(("sim_time_s".into(), format!("{:.2}", last.time_s)));
        kv.push(("wall_s".into(), format!("{:.2}", m.wall_s)));
        kv
    }
}

/// A summary value as JSON: an integer, a float, null for NaN, otherwise the text.
fn typed_value(text: &str) -> serde_json::Value {
    if let Ok(n) = text.parse::<u64>() {
        return n.into();
    }
    if let Ok(n) = text.parse::<i64>() {
        return n.into();
    }
    match text.parse::<f64>() {
        Ok(x) if x.is_finite() => x.into(),
        Ok(_) => serde_json::Value::Null,
        Err(_) => text.into(),
    }
}

/// Runs the scenario and its baselines; `on_eval` sees every tick of every engine run.
pub fn run(
    scenario: &Scenario,
    mut on_eval: impl FnMut(&str, &EvalRow) + Send + Clone + 'static,
) -> anyhow::Result<Outcome> {
    let task = scenario.prepare()?;
    let mut variants = vec![run_engine(scenario, &task, on_eval.clone())?];
    for b in &scenario.baselines {
        match b {
            Baseline::Allreduce => {
                let start = Instant::now();
                let rows = allreduce(scenario, &task);
                if let Some(r) = rows.last() {
                    on_eval("allreduce", r);
                }
                variants.push(VariantResult {
                    name: format!("{}-allreduce", scenario.name),
                    rows,
                    report: None,
                    wall_s: start.elapsed().as_secs_f64(),
                });
            }
            Baseline::Dpsgd => {
                variants.push(run_engine(&scenario.as_dpsgd(), &task, on_eval.clone())?);
            }
        }
    }
    Ok(Outcome {
        variants,
        params: task.dim(),
        unigram_loss: task.unigram_loss(),
        evaluation: task.evaluation_note(),
        privacy: scenario.peer.privacy,
    })
}

/// Runs one engine pass of a scenario.
pub fn run_engine(
    scenario: &Scenario,
    task: &PreparedTask,
    mut on_eval: impl FnMut(&str, &EvalRow) + Send + 'static,
) -> anyhow::Result<VariantResult> {
    let start = Instant::now();
    let mut engine = scenario.engine(task)?;
    let name = scenario.name.clone();
    let tag = name.clone();
    engine.on_eval(move |row| on_eval(&tag, row));
    let report = engine.run();
    Ok(VariantResult {
        name,
        rows: report.rows.clone(),
        report: Some(report),
        wall_s: start.elapsed().as_secs_f64(),
    })
}

#[cfg(test)]
mod summary_tests {
    use super::typed_value;

    #[test]
    fn summary_values_are_typed_numbers_and_names_stay_text() {
        assert_eq!(typed_value("812000"), serde_json::json!(812000));
        assert_eq!(typed_value("0.9550"), serde_json::json!(0.955));
        assert_eq!(typed_value("3.000e-3"), serde_json::json!(0.003));
        assert_eq!(typed_value("NaN"), serde_json::Value::Null);
        assert_eq!(typed_value("quick"), serde_json::json!("quick"));
    }
}
