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
use crate::optim::{AdamWState, Optimizer, OptimizerConfig, OptimizerState, SgdState};

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

/// The learning core's [`LocalLearner`]: minibatch SGD (or AdamW, as the optimizer
/// configuration's `kind` says) of a [`Model`] on one peer's shard.
///
/// Steps allocate nothing per sample: the minibatch is gathered into buffers kept between
/// steps. [`LocalLearner::save_state`] carries the optimizer state (momentum buffer or AdamW
/// moments), the step counter (so the schedule resumes) and the sampler's exact position.
#[derive(Clone, Debug)]
pub struct SgdLearner {
    model: Model,
    shard: Dataset,
    test: Arc<Dataset>,
    sgd: Optimizer,
    sampler: MinibatchSampler,
    batch_x: Array2<f32>,
    batch_y: Array1<f32>,
    grad: Vec<f32>,
}

/// What [`SgdLearner::save_state`] writes (postcard) with SGD: the layout checkpoints had
/// before AdamW existed, so they still restore.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct SgdLearnerState {
    sgd: SgdState,
    sampler: SamplerState,
}

/// What [`SgdLearner::save_state`] writes with AdamW (the learner knows its kind, so the
/// bytes need no tag).
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct AdamWLearnerState {
    adamw: AdamWState,
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
            sgd: Optimizer::new(optimizer, model.dim()),
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
    pub fn optimizer(&self) -> &Optimizer {
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
        let sampler = self.sampler.state();
        match self.sgd.state() {
            OptimizerState::Sgd(sgd) => postcard::to_stdvec(&SgdLearnerState { sgd, sampler }),
            OptimizerState::AdamW(adamw) => {
                postcard::to_stdvec(&AdamWLearnerState { adamw, sampler })
            }
        }
        .expect("postcard encodes learner state")
    }

    fn load_state(&mut self, bytes: &[u8]) -> Result<(), String> {
        let bad = |e: postcard::Error| format!("learner state: {e}");
        let (optimizer, sampler_state) = match self.sgd {
            Optimizer::Sgd(_) => {
                let state: SgdLearnerState = postcard::from_bytes(bytes).map_err(bad)?;
                (OptimizerState::Sgd(state.sgd), state.sampler)
            }
            Optimizer::AdamW(_) => {
                let state: AdamWLearnerState = postcard::from_bytes(bytes).map_err(bad)?;
                (OptimizerState::AdamW(state.adamw), state.sampler)
            }
        };
        // Validate both parts before touching either, so a refusal changes nothing.
        let mut sgd = self.sgd.clone();
        sgd.restore(optimizer)?;
        let mut sampler = self.sampler.clone();
        sampler.restore(sampler_state)?;
        self.sgd = sgd;
        self.sampler = sampler;
        Ok(())
    }
}
