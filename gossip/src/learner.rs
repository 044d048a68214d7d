//! The local half of a peer's round: what it does on its own data between gossip exchanges.
//!
//! The gossip state machine ([`crate::peer`]) only needs this trait, so the averaging logic can
//! be tested on pure consensus problems (a learner that never moves the model) and the learning
//! core can evolve without touching the protocol.

use std::fmt::Debug;
use std::sync::Arc;

use ndarray::{Array1, Array2};

use crate::data::{Dataset, MinibatchSampler, SamplerState};
use crate::model::Model;
use crate::optim::{OptimizerConfig, Sgd, SgdState};

/// Loss and accuracy of a model on a dataset.
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Evaluation {
    /// Mean loss (without the L2 term).
    pub loss: f32,
    /// Fraction of correct predictions; `None` for regression.
    pub accuracy: Option<f32>,
}

/// One peer's local optimisation: its model family, its shard of data and its optimizer state.
pub trait LocalLearner: Debug + Send {
    /// Length of the flat parameter vector this learner trains.
    fn dim(&self) -> usize;

    /// Takes one local step (one minibatch) on `params` in place and returns the minibatch loss.
    fn step(&mut self, params: &mut [f32]) -> f32;

    /// Evaluates `params` on the learner's held-out data (or its shard if it has none).
    fn evaluate(&self, params: &[f32]) -> Evaluation;

    /// Optimizer and sampler state (momentum, step counter, sampler position) as bytes, so a
    /// checkpoint can resume exactly where training stopped.
    fn save_state(&self) -> Vec<u8>;

    /// Restores what [`LocalLearner::save_state`] wrote; an error leaves the learner unchanged.
    fn load_state(&mut self, bytes: &[u8]) -> Result<(), String>;
}

/// The learning core's [`LocalLearner`]: minibatch SGD of a [`Model`] on one peer's shard.
///
/// Steps allocate nothing per sample: the minibatch is gathered into buffers kept between
/// steps. [`LocalLearner::save_state`] carries the momentum buffer, the step counter (so the
/// schedule resumes) and the sampler's exact position.
#[derive(Clone, Debug)]
pub struct SgdLearner {
    model: Model,
    shard: Dataset,
    test: Arc<Dataset>,
    sgd: Sgd,
    sampler: MinibatchSampler,
    batch_x: Array2<f32>,
    batch_y: Array1<f32>,
    grad: Vec<f32>,
}

/// What [`SgdLearner::save_state`] writes (postcard).
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct SgdLearnerState {
    sgd: SgdState,
    sampler: SamplerState,
}

impl SgdLearner {
    /// A learner training `model` on `shard` with minibatches of `batch_size` (capped at the
    /// shard size) drawn from `seed`, evaluating on `test` (or on the shard if `test` is
    /// empty). Panics if the shard is empty or its width differs from the model's.
    pub fn new(
        model: Model,
        shard: Dataset,
        test: Arc<Dataset>,
        optimizer: OptimizerConfig,
        batch_size: usize,
        seed: u64,
    ) -> Self {
        assert_eq!(
            shard.dim(),
            model.features(),
            "shard width differs from the model's"
        );
        let sampler = MinibatchSampler::new(shard.len(), batch_size, seed);
        let b = sampler.batch_size();
        SgdLearner {
            sgd: Sgd::new(optimizer, model.dim()),
            batch_x: Array2::zeros((b, shard.dim())),
            batch_y: Array1::zeros(b),
            grad: vec![0.0; model.dim()],
            model,
            shard,
            test,
            sampler,
        }
    }

    /// The model being trained.
    pub fn model(&self) -> &Model {
        &self.model
    }

    /// This learner's training data.
    pub fn shard(&self) -> &Dataset {
        &self.shard
    }

    /// The held-out data used by [`LocalLearner::evaluate`].
    pub fn test(&self) -> &Arc<Dataset> {
        &self.test
    }

    /// The optimizer (rate, steps taken).
    pub fn optimizer(&self) -> &Sgd {
        &self.sgd
    }

    /// Completed passes over the shard.
    pub fn epochs(&self) -> u64 {
        self.sampler.epochs()
    }

    /// Minibatch size.
    pub fn batch_size(&self) -> usize {
        self.sampler.batch_size()
    }
}

impl LocalLearner for SgdLearner {
    fn dim(&self) -> usize {
        self.model.dim()
    }

    fn step(&mut self, params: &mut [f32]) -> f32 {
        let batch = self.sampler.next_batch();
        for (k, &i) in batch.iter().enumerate() {
            self.batch_x.row_mut(k).assign(&self.shard.features.row(i));
            self.batch_y[k] = self.shard.targets[i];
        }
        let loss = self.model.loss_grad(
            params,
            self.batch_x.view(),
            self.batch_y.view(),
            &mut self.grad,
        );
        self.sgd.step(params, &self.grad);
        loss
    }

    fn evaluate(&self, params: &[f32]) -> Evaluation {
        let data = if self.test.is_empty() {
            &self.shard
        } else {
            &self.test
        };
        self.model.evaluate(params, data)
    }

    fn save_state(&self) -> Vec<u8> {
        postcard::to_stdvec(&SgdLearnerState {
            sgd: self.sgd.state(),
            sampler: self.sampler.state(),
        })
        .expect("postcard encodes learner state")
    }

    fn load_state(&mut self, bytes: &[u8]) -> Result<(), String> {
        let state: SgdLearnerState =
            postcard::from_bytes(bytes).map_err(|e| format!("learner state: {e}"))?;
        // Validate both parts before touching either, so a refusal changes nothing.
        let mut sgd = self.sgd.clone();
        sgd.restore(state.sgd)?;
        let mut sampler = self.sampler.clone();
        sampler.restore(state.sampler)?;
        self.sgd = sgd;
        self.sampler = sampler;
        Ok(())
    }
}
