//! Deep models trained by automatic differentiation (candle, CPU): a LeNet-style CNN for
//! images and a character-level decoder-only transformer for text, over the same one flat
//! `f32` parameter vector every other murmur model uses (feature `deep`, on by default).
//!
//! This module owns the architectures, their parameter layout, their seeded initialisation,
//! their loss/gradient/evaluation, and [`DeepLearner`], the [`crate::learner::LocalLearner`]
//! that trains them on a peer's shard. Candle computes the loss and the gradient only:
//!
//! 1. the flat vector is copied into one candle tensor per [`ParamEntry`] (one copy of `d`),
//! 2. forward and backward run in candle,
//! 3. the gradients are copied out into one flat buffer (one copy of `d`),
//! 4. [`crate::optim::Optimizer`] (SGD or AdamW) updates the flat vector in place.
//!
//! So gossip, compression, averaging and checkpoints never see a framework type, the optimizer
//! state checkpoints with the project's postcard state, and SGD/AdamW behave identically for
//! every model family. The two copies cost about 1.1 memcpy of the vector each way, well under
//! 1% of a step (figures in `gossip/README.md`, `cargo run --release -p murmur-gossip --example
//! deep_bench`).
//!
//! **Parameter order** ([`ParamLayout`]): tensors sorted by name, each row-major in candle's
//! (PyTorch's) native shape. CNN: `conv1.bias [c1]`, `conv1.weight [c1,1,5,5]`, `conv2.bias`,
//! `conv2.weight [c2,c1,5,5]`, `fc1.bias`, `fc1.weight [hidden, c2·s²]`, `fc2.bias`,
//! `fc2.weight [classes, hidden]`. Transformer: `blocks.{l}.{attn.proj, attn.qkv, ln1, ln2,
//! mlp.fc, mlp.proj}.{bias, weight}`, `ln_f.*`, `pos_emb.weight [context, width]`,
//! `tok_emb.weight [vocab, width]`.
//!
//! **Models.**
//! - `cnn` — LeCun, Bottou, Bengio & Haffner, "Gradient-based learning applied to document
//!   recognition", Proc. IEEE 1998: conv 5×5 (c1) → ReLU → max-pool 2 → conv 5×5 (c2) → ReLU
//!   → max-pool 2 → fc (hidden) → ReLU → fc (classes), softmax cross-entropy, for square
//!   single-channel images of side ≥ 16 (MNIST: 28). PyTorch's default initialisation:
//!   uniform(±1/√fan_in) for weights and biases. `cnn:8,32,128` (the default) has 73,594
//!   parameters on MNIST; `cnn:32,64,512` has 582,026.
//! - `transformer` — Vaswani et al., "Attention is all you need", NeurIPS 2017, in the
//!   decoder-only, pre-LayerNorm form of GPT-2 (Radford et al., "Language models are
//!   unsupervised multitask learners", 2019): token + learned position embeddings, `layers`
//!   blocks of causal multi-head self-attention and a 4× GELU MLP, a final LayerNorm and an
//!   output head tied to the token embedding. GPT-2's initialisation (N(0, 0.02²), residual
//!   projections scaled by 1/√(2·layers), LayerNorm γ = 1, β = 0). The default
//!   `transformer:layers=2,width=128,heads=4,context=64` has 415,232 parameters on the
//!   80-character Shakespeare vocabulary. Loss in nats per character.
//!
//! Initialisation draws from `ChaCha8Rng::seed_from_u64(seed)` into the flat vector in layout
//! order, never from a framework's global generator, so the same seed gives the same model
//! everywhere.
//!
//! **Determinism and threads.** A step is a pure function of the parameters and the batch:
//! candle's CPU kernels split work over rayon tasks that write disjoint outputs, and the
//! reductions run sequentially, so the result is bit-identical for any thread count (a test
//! checks 1 against 2 threads). Candle runs on the caller's rayon pool (`RAYON_NUM_THREADS`
//! or an installed pool): a driver that steps many peers one after another may prefer one
//! thread per step and peers in parallel.

mod cnn;
mod learner;
mod spec;
mod transformer;

pub use crate::layout::{ParamEntry, ParamLayout};
pub use learner::{DEFAULT_EVAL_IMAGES, DEFAULT_EVAL_WINDOWS, DeepLearner};
pub use spec::{CnnSpec, DeepSpec, TransformerSpec};

/// The candle version the models run on, for callers of [`DeepModel::to_tensors`].
pub use candle_core as candle;

use std::time::{Duration, Instant};

use candle_core::{DType, Device, Storage, Tensor, Var, WithDType};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal};

use crate::data::{Dataset, TextCorpus};
use crate::learner::Evaluation;
use crate::model::ModelError;
use cnn::Cnn;
use transformer::{Init, Transformer};

/// A deep model cannot be built: the error names the setting at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{model}: `{setting}` {message}")]
pub struct DeepError {
    /// The model asked for, in its spec-string form.
    pub model: String,
    /// The setting at fault: a spec key (`c1`, `heads`, `context`, ...) or a property of the
    /// data (`features`, `classes`, `text`).
    pub setting: &'static str,
    /// What is wrong with it.
    pub message: String,
}

impl From<DeepError> for ModelError {
    fn from(e: DeepError) -> ModelError {
        ModelError::Shape(e.to_string())
    }
}

/// What a model is built for: the shape of its data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DataShape {
    /// Images flattened row-major into `features` pixels (a CNN needs a square number),
    /// labelled with `classes` classes.
    Images {
        /// Pixels per image.
        features: usize,
        /// Classes (`None`: regression, which no deep model does).
        classes: Option<usize>,
    },
    /// Token ids over a vocabulary, from a text of `len` tokens (the shortest text a window
    /// will be drawn from: a peer's shard).
    Text {
        /// Vocabulary size.
        vocab: usize,
        /// Tokens in the text.
        len: usize,
    },
}

/// One minibatch for [`DeepModel::loss_grad`].
#[derive(Clone, Copy, Debug)]
pub enum Batch<'a> {
    /// `labels.len()` images of `features` pixels each, concatenated row-major.
    Images {
        /// Pixels, image after image.
        pixels: &'a [f32],
        /// Class of each image.
        labels: &'a [u32],
    },
    /// Windows of `context + 1` token ids, concatenated.
    Windows {
        /// Token ids, window after window.
        tokens: &'a [u8],
    },
}

/// Where one [`DeepModel::profile_step`] spent its time.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct StepProfile {
    /// The minibatch loss.
    pub loss: f32,
    /// Copying the flat parameters into candle tensors.
    pub copy_in: Duration,
    /// Forward and backward in candle.
    pub compute: Duration,
    /// Copying the gradients out into the flat buffer.
    pub copy_out: Duration,
}

impl StepProfile {
    /// The whole step (copies included).
    pub fn total(&self) -> Duration {
        self.copy_in + self.compute + self.copy_out
    }
}

#[derive(Clone, Debug, PartialEq)]
enum Net {
    Cnn(Cnn),
    Transformer(Transformer),
}

/// A deep model family instantiated for a data shape: its layout, initialisation, loss,
/// gradient and evaluation for any flat parameter vector.
#[derive(Clone, Debug, PartialEq)]
pub struct DeepModel {
    spec: DeepSpec,
    net: Net,
    layout: ParamLayout,
}

impl DeepSpec {
    /// Instantiates the model for data of `shape`, refusing (with the setting's name) a CNN
    /// on data that is not square single-channel images or images too small for two 5×5
    /// convolutions and two pools (side < 16), zero widths, a transformer with zero layers,
    /// heads, width or context, a width not divisible by the heads, or a context the text is
    /// too short for.
    pub fn build(&self, shape: DataShape) -> Result<DeepModel, DeepError> {
        let err = |setting: &'static str, message: String| DeepError {
            model: self.to_string(),
            setting,
            message,
        };
        match (*self, shape) {
            (DeepSpec::Cnn(c), DataShape::Images { features, classes }) => {
                let side = (features as f64).sqrt().round() as usize;
                if side * side != features {
                    return Err(err(
                        "features",
                        format!(
                            "= {features} is not a square number of pixels: the CNN needs square single-channel images"
                        ),
                    ));
                }
                if side < Cnn::MIN_SIDE {
                    return Err(err(
                        "features",
                        format!(
                            "= {features} ({side}×{side} images) is too small: two 5×5 convolutions and two 2×2 pools need at least {m}×{m}",
                            m = Cnn::MIN_SIDE
                        ),
                    ));
                }
                let classes = match classes {
                    Some(k) if k >= 2 => k,
                    other => {
                        return Err(err(
                            "classes",
                            format!("= {other:?}: the CNN classifies into at least 2 classes"),
                        ));
                    }
                };
                for (setting, v) in [("c1", c.c1), ("c2", c.c2), ("fc", c.hidden)] {
                    if v == 0 {
                        return Err(err(setting, "= 0: every layer needs a width >= 1".into()));
                    }
                }
                let cnn = Cnn::new(c, side, classes);
                let layout = cnn.layout();
                Ok(DeepModel {
                    spec: *self,
                    net: Net::Cnn(cnn),
                    layout,
                })
            }
            (DeepSpec::Transformer(t), DataShape::Text { vocab, len }) => {
                for (setting, v) in [
                    ("layers", t.layers),
                    ("width", t.width),
                    ("heads", t.heads),
                    ("context", t.context),
                ] {
                    if v == 0 {
                        return Err(err(setting, "= 0: must be at least 1".into()));
                    }
                }
                if t.width % t.heads != 0 {
                    return Err(err(
                        "width",
                        format!(
                            "= {} is not divisible by heads = {}: each head gets width/heads dimensions",
                            t.width, t.heads
                        ),
                    ));
                }
                if vocab == 0 || vocab > 256 {
                    return Err(err(
                        "vocab",
                        format!("= {vocab}: byte vocabularies have 1 to 256 symbols"),
                    ));
                }
                if t.context >= len {
                    return Err(err(
                        "context",
                        format!(
                            "= {} needs windows of {} tokens, the text has {len}",
                            t.context,
                            t.context + 1
                        ),
                    ));
                }
                let (net, layout) = Transformer::new(t, vocab);
                Ok(DeepModel {
                    spec: *self,
                    net: Net::Transformer(net),
                    layout,
                })
            }
            (DeepSpec::Cnn(_), DataShape::Text { .. }) => Err(err(
                "data",
                "is text: the CNN trains on images (use transformer)".into(),
            )),
            (DeepSpec::Transformer(_), DataShape::Images { .. }) => Err(err(
                "data",
                "is a table of images/features: the transformer trains on text (use cnn)".into(),
            )),
        }
    }

    /// Instantiates the model for the images of `data`.
    pub fn build_for_images(&self, data: &Dataset) -> Result<DeepModel, DeepError> {
        self.build(DataShape::Images {
            features: data.dim(),
            classes: data.classes,
        })
    }

    /// Instantiates the model for windows of `text` (a peer's shard, or any text at least as
    /// short as the shortest shard).
    pub fn build_for_text(&self, text: &TextCorpus) -> Result<DeepModel, DeepError> {
        self.build(DataShape::Text {
            vocab: text.vocab_size(),
            len: text.len(),
        })
    }
}

/// The element types a model runs in: `f32` for training, `f64` for gradient checks.
trait Elem: WithDType + Copy {}
impl Elem for f32 {}
impl Elem for f64 {}

impl DeepModel {
    /// Length of the flat parameter vector.
    pub fn dim(&self) -> usize {
        self.layout.dim()
    }

    /// Where each tensor lives in the flat vector.
    pub fn layout(&self) -> &ParamLayout {
        &self.layout
    }

    /// The spec this model was built from.
    pub fn spec(&self) -> &DeepSpec {
        &self.spec
    }

    /// The shape the model was built for (for a transformer, `len` is the context + 1).
    pub fn data_shape(&self) -> DataShape {
        match &self.net {
            Net::Cnn(c) => DataShape::Images {
                features: c.side * c.side,
                classes: Some(c.classes),
            },
            Net::Transformer(t) => DataShape::Text {
                vocab: t.vocab,
                len: t.spec.context + 1,
            },
        }
    }

    /// Tokens per window (`context + 1`) for a transformer, `None` for a CNN.
    pub fn window(&self) -> Option<usize> {
        match &self.net {
            Net::Cnn(_) => None,
            Net::Transformer(t) => Some(t.spec.context + 1),
        }
    }

    /// Initial parameters drawn from `seed` (see the module docs for each family's scheme).
    pub fn init(&self, seed: u64) -> Vec<f32> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut p = vec![0f32; self.dim()];
        for e in self.layout.entries() {
            let out = &mut p[e.range()];
            let init = match &self.net {
                Net::Cnn(c) => {
                    let bound = 1.0 / (c.fan_in(&e.name) as f64).sqrt();
                    for v in out.iter_mut() {
                        *v = rng.random_range(-bound..bound) as f32;
                    }
                    continue;
                }
                Net::Transformer(t) => t.init_of(&e.name),
            };
            match init {
                Init::Const(c) => out.fill(c),
                Init::Normal(std) => {
                    let normal = Normal::new(0.0, std).expect("std > 0");
                    for v in out.iter_mut() {
                        *v = normal.sample(&mut rng) as f32;
                    }
                }
            }
        }
        p
    }

    /// Mean minibatch loss and its gradient, written into `grad` (overwritten). Panics if
    /// the lengths do not match [`DeepModel::dim`] or the batch does not fit the model
    /// (wrong pixel count, a label or token id out of range, a partial window).
    pub fn loss_grad(&self, params: &[f32], batch: &Batch<'_>, grad: &mut [f32]) -> f32 {
        self.run(params, batch, Some(grad), None) as f32
    }

    /// Mean minibatch loss, no gradient.
    pub fn loss(&self, params: &[f32], batch: &Batch<'_>) -> f32 {
        self.run::<f32>(params, batch, None, None) as f32
    }

    /// [`DeepModel::loss_grad`] computed in `f64` throughout, for checking gradients against
    /// finite differences.
    pub fn loss_grad_f64(&self, params: &[f64], batch: &Batch<'_>, grad: &mut [f64]) -> f64 {
        self.run(params, batch, Some(grad), None)
    }

    /// [`DeepModel::loss`] in `f64`.
    pub fn loss_f64(&self, params: &[f64], batch: &Batch<'_>) -> f64 {
        self.run::<f64>(params, batch, None, None)
    }

    /// [`DeepModel::loss_grad`], timing the copies and the computation (for benchmarks).
    pub fn profile_step(&self, params: &[f32], batch: &Batch<'_>, grad: &mut [f32]) -> StepProfile {
        let mut profile = StepProfile::default();
        profile.loss = self.run(params, batch, Some(grad), Some(&mut profile)) as f32;
        profile
    }

    /// Mean loss and accuracy on the first `limit` samples of `data` (all of them if fewer):
    /// a fixed subset, so successive evaluations are comparable.
    pub fn evaluate_images(&self, params: &[f32], data: &Dataset, limit: usize) -> Evaluation {
        let Net::Cnn(cnn) = &self.net else {
            panic!("evaluate_images on a transformer");
        };
        assert_eq!(params.len(), self.dim(), "parameter length");
        assert_eq!(data.dim(), cnn.side * cnn.side, "pixels per image");
        let n = data.len().min(limit);
        if n == 0 {
            return Evaluation {
                loss: 0.0,
                accuracy: Some(0.0),
            };
        }
        let p = self
            .tensors::<f32>(params, false)
            .expect("parameter tensors");
        const CHUNK: usize = 250;
        let (mut loss, mut correct) = (0f64, 0usize);
        for start in (0..n).step_by(CHUNK) {
            let end = (start + CHUNK).min(n);
            let pixels = data
                .features
                .slice(ndarray::s![start..end, ..])
                .iter()
                .copied()
                .collect::<Vec<f32>>();
            let labels: Vec<u32> = (start..end).map(|i| data.label(i) as u32).collect();
            let (l, c) = self
                .cnn_forward(cnn, &p, &pixels, &labels, DType::F32, true)
                .expect("cnn forward");
            loss += l.to_scalar::<f32>().expect("scalar loss") as f64;
            correct += c;
        }
        Evaluation {
            loss: (loss / n as f64) as f32,
            accuracy: Some((correct as f64 / n as f64) as f32),
        }
    }

    /// Loss in nats per character and next-character accuracy on the first `windows` fixed
    /// evaluation windows of `text` ([`TextCorpus::eval_windows`]).
    pub fn evaluate_text(&self, params: &[f32], text: &TextCorpus, windows: usize) -> Evaluation {
        let Net::Transformer(tf) = &self.net else {
            panic!("evaluate_text on a CNN");
        };
        assert_eq!(params.len(), self.dim(), "parameter length");
        assert_eq!(text.vocab_size(), tf.vocab, "vocabulary size");
        let t = tf.spec.context;
        let starts = text.eval_windows(t, windows);
        if starts.is_empty() {
            return Evaluation {
                loss: 0.0,
                accuracy: Some(0.0),
            };
        }
        let p = self
            .tensors::<f32>(params, false)
            .expect("parameter tensors");
        const CHUNK: usize = 16;
        let (mut loss, mut correct, mut count) = (0f64, 0usize, 0usize);
        let mut tokens = Vec::with_capacity(CHUNK * (t + 1));
        for chunk in starts.chunks(CHUNK) {
            tokens.clear();
            for &s in chunk {
                tokens.extend_from_slice(&text.tokens()[s..s + t + 1]);
            }
            let (l, n, c) = tf
                .forward(&p, &tokens, DType::F32, true)
                .expect("transformer forward");
            loss += l.to_scalar::<f32>().expect("scalar loss") as f64;
            correct += c;
            count += n;
        }
        Evaluation {
            loss: (loss / count as f64) as f32,
            accuracy: Some((correct as f64 / count as f64) as f32),
        }
    }

    /// The flat vector as one candle tensor per [`ParamLayout`] entry (in layout order,
    /// shaped as the entry says): the copy a step makes before its forward pass.
    pub fn to_tensors(&self, params: &[f32]) -> candle_core::Result<Vec<Tensor>> {
        assert_eq!(params.len(), self.dim(), "parameter length");
        self.tensors(params, false)
    }

    /// Writes tensors shaped as the layout's entries (e.g. from [`DeepModel::to_tensors`])
    /// back into `out`: the copy a step makes of the gradients after its backward pass.
    /// Panics on a wrong count, shape or dtype.
    pub fn flatten_tensors(&self, tensors: &[Tensor], out: &mut [f32]) {
        assert_eq!(out.len(), self.dim(), "parameter length");
        assert_eq!(tensors.len(), self.layout.entries().len(), "tensor count");
        for (e, t) in self.layout.entries().iter().zip(tensors) {
            assert_eq!(t.dims(), e.shape.as_slice(), "shape of {}", e.name);
            copy_out(t, &mut out[e.range()]);
        }
    }

    /// One tensor per layout entry, copied from the flat vector; `Var`s (tracked by the
    /// backward pass) when `track`.
    fn tensors<T: Elem>(&self, params: &[T], track: bool) -> candle_core::Result<Vec<Tensor>> {
        let dev = Device::Cpu;
        self.layout
            .entries()
            .iter()
            .map(|e| {
                let data = &params[e.range()];
                if track {
                    Ok(Var::from_slice(data, e.shape.as_slice(), &dev)?.into_inner())
                } else {
                    Tensor::from_slice(data, e.shape.as_slice(), &dev)
                }
            })
            .collect()
    }

    /// Summed cross-entropy over the batch and (when `count`) the number of correct arg-max
    /// predictions.
    fn cnn_forward(
        &self,
        cnn: &Cnn,
        p: &[Tensor],
        pixels: &[f32],
        labels: &[u32],
        dtype: DType,
        count: bool,
    ) -> candle_core::Result<(Tensor, usize)> {
        let b = labels.len();
        let patches = cnn.patch_tensor(pixels, b)?.to_dtype(dtype)?;
        let logits = cnn.forward(p, &patches, b)?;
        let correct = if count {
            let best = logits.argmax(1)?.to_vec1::<u32>()?;
            best.iter().zip(labels).filter(|(a, b)| a == b).count()
        } else {
            0
        };
        let targets = Tensor::from_slice(labels, (b, 1), &Device::Cpu)?;
        Ok((
            transformer::summed_cross_entropy(&logits, &targets)?,
            correct,
        ))
    }

    fn check_batch(&self, batch: &Batch<'_>) -> usize {
        match (&self.net, batch) {
            (Net::Cnn(c), Batch::Images { pixels, labels }) => {
                assert!(!labels.is_empty(), "empty batch");
                assert_eq!(
                    pixels.len(),
                    labels.len() * c.side * c.side,
                    "pixels for {} images of {}×{}",
                    labels.len(),
                    c.side,
                    c.side
                );
                assert!(
                    labels.iter().all(|&l| (l as usize) < c.classes),
                    "label out of range"
                );
                labels.len()
            }
            (Net::Transformer(t), Batch::Windows { tokens }) => {
                let w = t.spec.context + 1;
                assert!(
                    !tokens.is_empty() && tokens.len() % w == 0,
                    "whole windows of {w} tokens"
                );
                assert!(
                    tokens.iter().all(|&i| usize::from(i) < t.vocab),
                    "token id out of the vocabulary"
                );
                tokens.len() / w * t.spec.context
            }
            _ => panic!("batch kind does not match the model"),
        }
    }

    /// The mean loss; with `grad`, the gradient copied into it; with `profile`, the timings.
    fn run<T: Elem>(
        &self,
        params: &[T],
        batch: &Batch<'_>,
        grad: Option<&mut [T]>,
        profile: Option<&mut StepProfile>,
    ) -> f64 {
        assert_eq!(params.len(), self.dim(), "parameter length");
        let predictions = self.check_batch(batch);
        let track = grad.is_some();
        let t0 = Instant::now();
        let p = self.tensors(params, track).expect("parameter tensors");
        let t1 = Instant::now();
        let summed = match (&self.net, batch) {
            (Net::Cnn(c), Batch::Images { pixels, labels }) => {
                self.cnn_forward(c, &p, pixels, labels, T::DTYPE, false)
                    .expect("cnn forward")
                    .0
            }
            (Net::Transformer(t), Batch::Windows { tokens }) => {
                t.forward(&p, tokens, T::DTYPE, false)
                    .expect("transformer forward")
                    .0
            }
            _ => unreachable!("checked above"),
        };
        let loss = summed
            .affine(1.0 / predictions as f64, 0.0)
            .expect("mean loss");
        let mut t2 = Instant::now();
        if let Some(grad) = grad {
            assert_eq!(grad.len(), self.dim(), "gradient length");
            let grads = loss.backward().expect("backward pass");
            t2 = Instant::now();
            for (e, t) in self.layout.entries().iter().zip(&p) {
                let out = &mut grad[e.range()];
                match grads.get(t) {
                    Some(g) => copy_out(g, out),
                    // A tensor the loss does not depend on (none in these models).
                    None => out.fill(T::from_f64(0.0)),
                }
            }
        }
        let t3 = Instant::now();
        let value = loss.to_scalar::<T>().expect("scalar loss").to_f64();
        if let Some(profile) = profile {
            profile.copy_in = t1 - t0;
            profile.compute = t2 - t1;
            profile.copy_out = t3 - t2;
        }
        value
    }
}

/// Copies a gradient tensor into `out`, straight from its storage when it is contiguous.
fn copy_out<T: Elem>(g: &Tensor, out: &mut [T]) {
    assert_eq!(g.elem_count(), out.len(), "gradient shape");
    {
        let (storage, layout) = g.storage_and_layout();
        if let (Storage::Cpu(cpu), Some((start, end))) = (&*storage, layout.contiguous_offsets()) {
            out.copy_from_slice(&cpu.as_slice::<T>().expect("gradient dtype")[start..end]);
            return;
        }
    }
    let v = g
        .flatten_all()
        .and_then(|f| f.to_vec1::<T>())
        .expect("gradient values");
    out.copy_from_slice(&v);
}
