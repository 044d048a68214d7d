//! From configuration to a ready peer: the learning task (shared with the simulator through
//! `murmur_gossip::task`), this node's shard learner, the initial model and the peer
//! configuration with its seed and model fingerprint.

use anyhow::{Context, Result, ensure};
use murmur_gossip::learner::LocalLearner;
use murmur_gossip::peer::PeerConfig;
use murmur_gossip::seed;
use ndarray::Array1;

use crate::checkpoint::ModelInfo;
use crate::config::Config;

/// What [`prepare`] builds.
#[derive(Debug)]
pub struct Prepared {
    /// The peer's configuration (seed, fingerprint and checkpoint cadence filled in).
    pub peer_config: PeerConfig,
    /// Shard `shard.index` of `shard.count`, with the shared test split.
    pub learner: Box<dyn LocalLearner>,
    /// The initial model (the same on every node of a run).
    pub init: Array1<f32>,
    /// The model's spec and named tensors, for checkpoints.
    pub model_info: ModelInfo,
}

/// Loads the data, cuts this node's shard and builds its learner.
pub fn prepare(config: &Config) -> Result<Prepared> {
    let shard = &config.shard;
    ensure!(shard.count > 0, "shard.count must be > 0");
    ensure!(
        shard.index < shard.count,
        "shard.index {} must be < shard.count {}",
        shard.index,
        shard.count
    );
    let mut task = config.task.clone();
    // A run of known length decays its cosine schedule over exactly that length.
    if let Some(rounds) = config.run.max_rounds {
        task.optimizer = task
            .optimizer
            .with_horizon(rounds * u64::from(config.gossip.local_steps.max(1)));
    }
    let prepared = task.prepare().context("preparing the task")?;
    let shards = prepared.peer_shards(shard.count);
    ensure!(
        !shards[shard.index].is_empty(),
        "shard {} of {} gets no training data ({} samples or tokens for {} shards)",
        shard.index,
        shard.count,
        prepared.train_len(),
        shard.count
    );
    let learner = prepared
        .learner_for(&shards[shard.index], shard.index as u64)
        .context("preparing the task")?;
    tracing::info!(
        params = prepared.dim(),
        evaluation = %prepared.evaluation_note(),
        "task ready"
    );
    let init = prepared.init_params(config.task.seed);
    let mut peer_config = config.peer_config()?;
    // Independent codec streams per node, reproducible from the base seed (the privacy noise
    // gets a secret key from the OS instead: see node.rs).
    peer_config.seed =
        seed::derive_indexed(config.gossip.seed, seed::stream::PEER, shard.index as u64);
    peer_config.fingerprint = prepared.fingerprint();
    peer_config.checkpoint_every = config.checkpoint.every;
    let model_info = ModelInfo {
        spec: config.task.model.to_string(),
        layout: prepared.layout(),
    };
    Ok(Prepared {
        peer_config,
        learner,
        init,
        model_info,
    })
}
