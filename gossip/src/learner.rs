//! The local half of a peer's round: what it does on its own data between gossip exchanges.
//!
//! The gossip state machine ([`crate::peer`]) only needs this trait, so the averaging logic can
//! be tested on pure consensus problems (a learner that never moves the model) and the learning
//! core can evolve without touching the protocol.

use std::fmt::Debug;

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
