//! [`DeepLearner`]: the [`LocalLearner`] that trains a [`DeepModel`] on one peer's shard.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::{Batch, DataShape, DeepError, DeepModel};
use crate::data::{
    Dataset, MinibatchSampler, SamplerState, TextCorpus, WindowSampler, WindowSamplerState,
};
use crate::learner::{Evaluation, LocalLearner};
use crate::optim::{Optimizer, OptimizerConfig, OptimizerState};

/// Test samples [`DeepLearner`] evaluates on by default (the first ones of the test set).
pub const DEFAULT_EVAL_IMAGES: usize = 1000;
/// Validation windows [`DeepLearner`] evaluates on by default.
pub const DEFAULT_EVAL_WINDOWS: usize = 64;

/// What the learner trains on.
#[derive(Clone, Debug)]
enum Data {
    Images {
        shard: Dataset,
        test: Arc<Dataset>,
        sampler: MinibatchSampler,
        pixels: Vec<f32>,
        labels: Vec<u32>,
    },
    Text {
        shard: TextCorpus,
        valid: Arc<TextCorpus>,
        sampler: WindowSampler,
        window: usize,
        tokens: Vec<u8>,
    },
}

/// Sampler position in a saved state.
#[derive(Debug, Serialize, Deserialize)]
enum SamplerSnapshot {
    Minibatch(SamplerState),
    Windows(WindowSamplerState),
}

/// What [`DeepLearner::save_state`] writes (postcard).
#[derive(Debug, Serialize, Deserialize)]
struct DeepLearnerState {
    optimizer: OptimizerState,
    sampler: SamplerSnapshot,
}

/// Minibatch training of a [`DeepModel`] on one peer's shard: images (a [`Dataset`] shard and
/// a test set) for a CNN, text (a [`TextCorpus`] shard and a validation corpus) for a
/// transformer. Each step copies the flat parameters into candle, gets the loss and gradient
/// back into a flat buffer kept between steps, and lets the [`Optimizer`] (SGD or AdamW, as
/// the configuration's `kind` says) update the flat vector in place.
///
/// [`LocalLearner::evaluate`] uses a fixed subset of the held-out data: the first
/// [`DEFAULT_EVAL_IMAGES`] test images, or the first [`DEFAULT_EVAL_WINDOWS`] validation windows
/// (set with [`DeepLearner::with_eval_limit`]). [`LocalLearner::save_state`] carries the
/// optimizer state and the sampler's exact position, so a restored learner continues
/// bit-identically.
#[derive(Clone, Debug)]
pub struct DeepLearner {
    model: DeepModel,
    data: Data,
    optimizer: Optimizer,
    grad: Vec<f32>,
    /// Second half-batch gradient, then the noise estimate, when the optimizer wants one
    /// (`second_moment_peers`); empty otherwise.
    half_grad: Vec<f32>,
    eval_limit: usize,
}

/// The second gradient buffer a learner needs when its optimizer estimates batch noise
/// (`second_moment_peers`), which splits each batch in two equal halves.
fn noise_buffer(
    optimizer: &OptimizerConfig,
    batch: usize,
    model: &DeepModel,
) -> Result<Vec<f32>, String> {
    if optimizer.second_moment_peers == 0 {
        return Ok(Vec::new());
    }
    if batch < 2 || !batch.is_multiple_of(2) {
        return Err(format!(
            "= {batch}: second_moment_peers splits each batch in two equal halves, so it must be even"
        ));
    }
    Ok(vec![0.0; model.dim()])
}

/// The loss and gradient of a batch from its two equal halves, for
/// `second_moment_peers`: `grad` gets the batch's gradient (the halves' mean) and `noise` the
/// half-difference squared, an unbiased estimate of that gradient's variance (each half has
/// twice the full batch's variance, and (a − b)/2 exactly the full batch's).
fn loss_grad_halves(
    model: &DeepModel,
    params: &[f32],
    [a, b]: [Batch<'_>; 2],
    grad: &mut [f32],
    noise: &mut [f32],
) -> f32 {
    let loss = model.loss_grad(params, &a, grad) + model.loss_grad(params, &b, noise);
    for (g, n) in grad.iter_mut().zip(noise.iter_mut()) {
        let (mean, half_diff) = ((*g + *n) / 2.0, (*g - *n) / 2.0);
        *g = mean;
        *n = half_diff * half_diff;
    }
    loss / 2.0
}

impl DeepLearner {
    /// A CNN learner on image `shard` with minibatches of `batch_size` (capped at the shard
    /// size) drawn from `seed`, evaluating on `test` (or on the shard if `test` is empty).
    /// Refuses a non-image model, an empty shard, or data of another shape than the model's.
    pub fn images(
        model: DeepModel,
        shard: Dataset,
        test: Arc<Dataset>,
        optimizer: OptimizerConfig,
        batch_size: usize,
        seed: u64,
    ) -> Result<DeepLearner, DeepError> {
        let err = |setting, message: String| DeepError {
            model: model.spec().to_string(),
            setting,
            message,
        };
        let DataShape::Images { features, classes } = model.data_shape() else {
            return Err(err("data", "is images: this model trains on text".into()));
        };
        for (name, d) in [("shard", &shard), ("test", &*test)] {
            if (d.dim(), d.classes) != (features, classes) && !(name == "test" && d.is_empty()) {
                return Err(err(
                    "features",
                    format!(
                        "of the {name} set: {} pixels and {:?} classes, the model was built for {features} and {classes:?}",
                        d.dim(),
                        d.classes
                    ),
                ));
            }
        }
        if shard.is_empty() {
            return Err(err("shard", "is empty".into()));
        }
        if batch_size == 0 {
            return Err(err("batch_size", "= 0: must be at least 1".into()));
        }
        let sampler = MinibatchSampler::new(shard.len(), batch_size, seed);
        let b = sampler.batch_size();
        let half_grad = noise_buffer(&optimizer, b, &model).map_err(|m| err("batch_size", m))?;
        Ok(DeepLearner {
            optimizer: Optimizer::new(optimizer, model.dim()),
            grad: vec![0.0; model.dim()],
            half_grad,
            data: Data::Images {
                pixels: vec![0.0; b * features],
                labels: vec![0; b],
                shard,
                test,
                sampler,
            },
            model,
            eval_limit: DEFAULT_EVAL_IMAGES,
        })
    }

    /// A transformer learner on text `shard` with batches of `batch_size` random windows of
    /// `context + 1` tokens drawn from `seed`, evaluating on `valid` (or on the shard if
    /// `valid` is too short for one window). Refuses a non-text model, a shard shorter than a
    /// window, or another vocabulary size.
    pub fn text(
        model: DeepModel,
        shard: TextCorpus,
        valid: Arc<TextCorpus>,
        optimizer: OptimizerConfig,
        batch_size: usize,
        seed: u64,
    ) -> Result<DeepLearner, DeepError> {
        let err = |setting, message: String| DeepError {
            model: model.spec().to_string(),
            setting,
            message,
        };
        let (DataShape::Text { vocab, .. }, Some(window)) = (model.data_shape(), model.window())
        else {
            return Err(err("data", "is text: this model trains on images".into()));
        };
        if shard.vocab_size() != vocab || valid.vocab_size() != vocab {
            return Err(err(
                "vocab",
                format!(
                    "of the data ({} in the shard, {} in validation) differs from the model's {vocab}",
                    shard.vocab_size(),
                    valid.vocab_size()
                ),
            ));
        }
        if shard.len() < window {
            return Err(err(
                "context",
                format!(
                    "needs windows of {window} tokens, the shard has {}",
                    shard.len()
                ),
            ));
        }
        if batch_size == 0 {
            return Err(err("batch_size", "= 0: must be at least 1".into()));
        }
        let half_grad =
            noise_buffer(&optimizer, batch_size, &model).map_err(|m| err("batch_size", m))?;
        Ok(DeepLearner {
            optimizer: Optimizer::new(optimizer, model.dim()),
            grad: vec![0.0; model.dim()],
            half_grad,
            data: Data::Text {
                sampler: WindowSampler::new(shard.len(), window, batch_size, seed),
                tokens: vec![0; batch_size * window],
                window,
                shard,
                valid,
            },
            model,
            eval_limit: DEFAULT_EVAL_WINDOWS,
        })
    }

    /// Evaluates on the first `limit` test images or validation windows instead of the
    /// default ([`DEFAULT_EVAL_IMAGES`], [`DEFAULT_EVAL_WINDOWS`]).
    pub fn with_eval_limit(mut self, limit: usize) -> DeepLearner {
        self.eval_limit = limit;
        self
    }

    /// The model being trained.
    pub fn model(&self) -> &DeepModel {
        &self.model
    }

    /// The optimizer (rate, steps taken).
    pub fn optimizer(&self) -> &Optimizer {
        &self.optimizer
    }

    /// Samples (images) or windows (text) per step.
    pub fn batch_size(&self) -> usize {
        match &self.data {
            Data::Images { sampler, .. } => sampler.batch_size(),
            Data::Text { sampler, .. } => sampler.batch_size(),
        }
    }

    /// The held-out evaluation size in use (images or windows).
    pub fn eval_limit(&self) -> usize {
        self.eval_limit
    }
}

impl LocalLearner for DeepLearner {
    fn dim(&self) -> usize {
        self.model.dim()
    }

    fn step(&mut self, params: &mut [f32]) -> f32 {
        let loss = match &mut self.data {
            Data::Images {
                shard,
                sampler,
                pixels,
                labels,
                ..
            } => {
                let f = shard.dim();
                for (k, &i) in sampler.next_batch().iter().enumerate() {
                    pixels[k * f..(k + 1) * f]
                        .iter_mut()
                        .zip(shard.features.row(i))
                        .for_each(|(d, &s)| *d = s);
                    labels[k] = shard.label(i) as u32;
                }
                if self.half_grad.is_empty() {
                    let batch = Batch::Images { pixels, labels };
                    self.model.loss_grad(params, &batch, &mut self.grad)
                } else {
                    let h = labels.len() / 2;
                    let halves = [
                        Batch::Images {
                            pixels: &pixels[..h * f],
                            labels: &labels[..h],
                        },
                        Batch::Images {
                            pixels: &pixels[h * f..],
                            labels: &labels[h..],
                        },
                    ];
                    loss_grad_halves(
                        &self.model,
                        params,
                        halves,
                        &mut self.grad,
                        &mut self.half_grad,
                    )
                }
            }
            Data::Text {
                shard,
                sampler,
                window,
                tokens,
                ..
            } => {
                let w = *window;
                for (k, &s) in sampler.next_batch().iter().enumerate() {
                    tokens[k * w..(k + 1) * w].copy_from_slice(&shard.tokens()[s..s + w]);
                }
                if self.half_grad.is_empty() {
                    let batch = Batch::Windows { tokens };
                    self.model.loss_grad(params, &batch, &mut self.grad)
                } else {
                    let h = tokens.len() / w / 2 * w;
                    let halves = [
                        Batch::Windows {
                            tokens: &tokens[..h],
                        },
                        Batch::Windows {
                            tokens: &tokens[h..],
                        },
                    ];
                    loss_grad_halves(
                        &self.model,
                        params,
                        halves,
                        &mut self.grad,
                        &mut self.half_grad,
                    )
                }
            }
        };
        if self.half_grad.is_empty() {
            self.optimizer.step(params, &self.grad);
        } else {
            self.optimizer
                .step_with_noise(params, &self.grad, &self.half_grad);
        }
        loss
    }

    fn evaluate(&self, params: &[f32]) -> Evaluation {
        match &self.data {
            Data::Images { shard, test, .. } => {
                let data = if test.is_empty() { shard } else { &**test };
                self.model.evaluate_images(params, data, self.eval_limit)
            }
            Data::Text {
                shard,
                valid,
                window,
                ..
            } => {
                let data = if valid.len() < *window {
                    shard
                } else {
                    &**valid
                };
                self.model.evaluate_text(params, data, self.eval_limit)
            }
        }
    }

    fn save_state(&self) -> Vec<u8> {
        let sampler = match &self.data {
            Data::Images { sampler, .. } => SamplerSnapshot::Minibatch(sampler.state()),
            Data::Text { sampler, .. } => SamplerSnapshot::Windows(sampler.state()),
        };
        postcard::to_stdvec(&DeepLearnerState {
            optimizer: self.optimizer.state(),
            sampler,
        })
        .expect("postcard encodes learner state")
    }

    fn load_state(&mut self, bytes: &[u8]) -> Result<(), String> {
        let state: DeepLearnerState =
            postcard::from_bytes(bytes).map_err(|e| format!("learner state: {e}"))?;
        // Validate both parts before touching either, so a refusal changes nothing.
        let mut optimizer = self.optimizer.clone();
        optimizer.restore(state.optimizer)?;
        match (&mut self.data, state.sampler) {
            (Data::Images { sampler, .. }, SamplerSnapshot::Minibatch(s)) => {
                let mut restored = sampler.clone();
                restored.restore(s)?;
                *sampler = restored;
            }
            (Data::Text { sampler, .. }, SamplerSnapshot::Windows(s)) => {
                let mut restored = sampler.clone();
                restored.restore(s)?;
                *sampler = restored;
            }
            _ => return Err("learner state is for the other kind of data".into()),
        }
        self.optimizer = optimizer;
        Ok(())
    }
}
