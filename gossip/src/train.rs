//! The centralized reference trainer: one process, the whole training set, minibatch SGD.
//! Every distributed result is compared against what this reaches with the same model,
//! optimizer and number of samples seen.

use std::sync::Arc;

use ndarray::Array1;
use serde::{Deserialize, Serialize};

use crate::data::Dataset;
use crate::learner::{Evaluation, LocalLearner, SgdLearner};
use crate::model::Model;
use crate::optim::OptimizerConfig;

/// How long and how to train.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TrainConfig {
    /// Passes over the training set.
    pub epochs: usize,
    /// Minibatch size.
    pub batch_size: usize,
    /// Optimizer; an open cosine length is set to the whole run.
    pub optimizer: OptimizerConfig,
    /// Seed of the minibatch order and of the initial parameters.
    pub seed: u64,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            epochs: 30,
            batch_size: 32,
            optimizer: OptimizerConfig::default(),
            seed: 0,
        }
    }
}

/// One epoch's numbers.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct EpochReport {
    /// 1-based epoch number.
    pub epoch: usize,
    /// Mean minibatch loss during the epoch (with the L2 term).
    pub minibatch_loss: f32,
    /// Loss and accuracy on the whole training set after the epoch.
    pub train: Evaluation,
    /// Loss and accuracy on the test set after the epoch.
    pub test: Evaluation,
    /// Learning rate at the end of the epoch.
    pub lr: f32,
}

/// Trains one model on the whole training set.
#[derive(Debug)]
pub struct CentralizedTrainer {
    learner: SgdLearner,
    params: Array1<f32>,
    config: TrainConfig,
    steps_per_epoch: u64,
    epoch: usize,
}

impl CentralizedTrainer {
    /// A trainer for `model` on `train`, evaluating on `test`, starting from
    /// `model.init(config.seed)`. Panics if `train` is empty.
    pub fn new(model: Model, train: Dataset, test: Arc<Dataset>, config: TrainConfig) -> Self {
        assert!(!train.is_empty(), "empty training set");
        let batch = config.batch_size.clamp(1, train.len());
        let steps_per_epoch = train.len().div_ceil(batch) as u64;
        let optimizer = config
            .optimizer
            .clone()
            .with_horizon(steps_per_epoch * config.epochs as u64);
        let params = model.init(config.seed);
        let learner = SgdLearner::new(model, train, test, optimizer, batch, config.seed);
        CentralizedTrainer {
            learner,
            params,
            config,
            steps_per_epoch,
            epoch: 0,
        }
    }

    /// Minibatch steps per epoch (`⌈n / batch⌉`).
    pub fn steps_per_epoch(&self) -> u64 {
        self.steps_per_epoch
    }

    /// Current parameters.
    pub fn params(&self) -> &Array1<f32> {
        &self.params
    }

    /// The learner (model, data, optimizer state).
    pub fn learner(&self) -> &SgdLearner {
        &self.learner
    }

    /// Runs one epoch and evaluates.
    pub fn run_epoch(&mut self) -> EpochReport {
        let params = self.params.as_slice_mut().expect("contiguous parameters");
        let mut loss = 0f64;
        for _ in 0..self.steps_per_epoch {
            loss += f64::from(self.learner.step(params));
        }
        self.epoch += 1;
        EpochReport {
            epoch: self.epoch,
            minibatch_loss: (loss / self.steps_per_epoch as f64) as f32,
            train: self.learner.model().evaluate(params, self.learner.shard()),
            test: self.learner.evaluate(params),
            lr: self.learner.optimizer().current_lr(),
        }
    }

    /// Runs the remaining configured epochs, calling `on_epoch` after each; returns all
    /// reports of this call.
    pub fn run(&mut self, mut on_epoch: impl FnMut(&EpochReport)) -> Vec<EpochReport> {
        let mut reports = Vec::new();
        while self.epoch < self.config.epochs {
            let report = self.run_epoch();
            on_epoch(&report);
            reports.push(report);
        }
        reports
    }
}
