//! Models over one flat `f32` parameter vector, with analytic gradients.
//!
//! Every model is a stack of fully connected layers followed by a loss "head":
//! - linear regression: one layer to 1 output, squared loss `½(z − y)²`;
//! - logistic regression: one layer to 1 output, binary cross-entropy on `σ(z)`;
//! - softmax regression: one layer to `k` outputs, softmax cross-entropy;
//! - MLP: hidden layers with ReLU, then a layer to `k` outputs and softmax cross-entropy.
//!
//! Parameter layout (what compression and averaging act on): layer after layer, the weight
//! matrix `outputs × inputs` in row-major order, then the `outputs` biases. The optional L2
//! term `½·l2·‖W‖²` covers weights, not biases. Losses are means over the batch, accumulated
//! in f64.

mod spec;

pub use spec::ModelSpec;

use ndarray::linalg::general_mat_mul;
use ndarray::{Array2, ArrayView1, ArrayView2, ArrayViewMut2, Axis};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal};

use crate::data::Dataset;
use crate::layout::ParamLayout;
use crate::learner::Evaluation;

/// A model cannot be built for this data shape.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ModelError {
    /// Classification models need `Some(classes)`; logistic regression needs exactly 2; linear
    /// regression needs a regression target (`None`).
    #[error("{}", classes_message(model, *classes))]
    Classes {
        /// The model asked for.
        model: String,
        /// The classes of the data.
        classes: Option<usize>,
    },
    /// Zero features or a zero-width hidden layer.
    #[error("{0}")]
    Shape(String),
}

/// What a user reads when the model does not fit the data's labels, with the fix.
fn classes_message(model: &str, classes: Option<usize>) -> String {
    match (model, classes) {
        ("linear", Some(k)) => format!(
            "model linear fits a regression target, but this data has {k} classes: use softmax \
             or mlp:<width> (logistic for 2 classes)"
        ),
        ("logistic", Some(k)) => format!(
            "model logistic needs exactly 2 classes, but this data has {k}: use softmax or \
             mlp:<width>"
        ),
        (_, None) => format!(
            "model {model} needs class labels, but this data is a regression target: use linear"
        ),
        (_, Some(k)) => format!("model {model} needs at least 2 classes, but this data has {k}"),
    }
}

/// The loss at the end of the network.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Head {
    Squared,
    Binary,
    Softmax,
}

/// One fully connected layer: where its weights start in the flat vector.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Layer {
    inputs: usize,
    outputs: usize,
    offset: usize,
}

impl Layer {
    fn weights<'a>(&self, p: &'a [f32]) -> ArrayView2<'a, f32> {
        ArrayView2::from_shape(
            (self.outputs, self.inputs),
            &p[self.offset..self.offset + self.outputs * self.inputs],
        )
        .expect("layer shape")
    }
    fn bias<'a>(&self, p: &'a [f32]) -> &'a [f32] {
        let start = self.offset + self.outputs * self.inputs;
        &p[start..start + self.outputs]
    }
    fn end(&self) -> usize {
        self.offset + self.outputs * (self.inputs + 1)
    }
}

/// A model family instantiated for a data shape: knows its parameter count and computes loss,
/// gradient and evaluation for any flat parameter vector.
#[derive(Clone, Debug, PartialEq)]
pub struct Model {
    spec: ModelSpec,
    features: usize,
    classes: Option<usize>,
    l2: f32,
    layers: Vec<Layer>,
    head: Head,
    dim: usize,
}

impl ModelSpec {
    /// Instantiates the model for `features` inputs and `classes` (`None`: regression) with L2
    /// coefficient `l2` (0 for none).
    pub fn build(
        &self,
        features: usize,
        classes: Option<usize>,
        l2: f32,
    ) -> Result<Model, ModelError> {
        let wrong = || ModelError::Classes {
            model: self.to_string(),
            classes,
        };
        if features == 0 {
            return Err(ModelError::Shape(
                "a model needs at least one feature".into(),
            ));
        }
        let (head, outputs, hidden): (Head, usize, &[usize]) = match self {
            // On class labels a regression fits the label numbers and its accuracy is 0.
            ModelSpec::Linear => match classes {
                None => (Head::Squared, 1, &[]),
                Some(_) => return Err(wrong()),
            },
            ModelSpec::Logistic => match classes {
                Some(2) => (Head::Binary, 1, &[]),
                _ => return Err(wrong()),
            },
            ModelSpec::Softmax => match classes {
                Some(k) if k >= 2 => (Head::Softmax, k, &[]),
                _ => return Err(wrong()),
            },
            ModelSpec::Mlp { hidden } => match classes {
                Some(k) if k >= 2 => (Head::Softmax, k, hidden.as_slice()),
                _ => return Err(wrong()),
            },
            #[cfg(feature = "deep")]
            ModelSpec::Deep(d) => {
                return Err(ModelError::Shape(format!(
                    "{d} is a deep model: build it with crate::deep::DeepSpec::build (the task does)"
                )));
            }
        };
        if hidden.contains(&0) {
            return Err(ModelError::Shape(
                "hidden layers need at least one unit".into(),
            ));
        }
        let mut layers = Vec::with_capacity(hidden.len() + 1);
        let mut inputs = features;
        let mut offset = 0;
        for &outputs in hidden.iter().chain(std::iter::once(&outputs)) {
            let layer = Layer {
                inputs,
                outputs,
                offset,
            };
            offset = layer.end();
            inputs = outputs;
            layers.push(layer);
        }
        Ok(Model {
            spec: self.clone(),
            features,
            classes,
            l2: l2.max(0.0),
            layers,
            head,
            dim: offset,
        })
    }

    /// Instantiates the model for the shape of `data`.
    pub fn build_for(&self, data: &Dataset, l2: f32) -> Result<Model, ModelError> {
        self.build(data.dim(), data.classes, l2)
    }
}

impl Model {
    /// Length of the flat parameter vector.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// The family this model was built from.
    pub fn spec(&self) -> &ModelSpec {
        &self.spec
    }

    /// Input features.
    pub fn features(&self) -> usize {
        self.features
    }

    /// Classes (`None` for regression).
    pub fn classes(&self) -> Option<usize> {
        self.classes
    }

    /// The L2 coefficient.
    pub fn l2(&self) -> f32 {
        self.l2
    }

    /// Named tensors of the flat vector, in its order: `layers.<i>.weight` `[outputs,
    /// inputs]` then `layers.<i>.bias` `[outputs]` for each layer `i` from the input.
    pub fn layout(&self) -> ParamLayout {
        let layout = ParamLayout::in_order(
            self.layers
                .iter()
                .enumerate()
                .flat_map(|(i, l)| {
                    [
                        (format!("layers.{i}.weight"), vec![l.outputs, l.inputs]),
                        (format!("layers.{i}.bias"), vec![l.outputs]),
                    ]
                })
                .collect(),
        );
        debug_assert_eq!(layout.dim(), self.dim);
        layout
    }

    /// Initial parameters. Convex models (one layer) start at zero; an MLP draws He-normal
    /// weights (`N(0, 2/inputs)`) for its ReLU layers and `N(0, 1/inputs)` for the output
    /// layer from `seed`; biases start at zero.
    pub fn init(&self, seed: u64) -> ndarray::Array1<f32> {
        let mut p = ndarray::Array1::zeros(self.dim);
        if self.layers.len() == 1 {
            return p;
        }
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let last = self.layers.len() - 1;
        for (l, layer) in self.layers.iter().enumerate() {
            let gain = if l == last { 1.0 } else { 2.0 };
            let normal = Normal::new(0.0, (gain / layer.inputs as f64).sqrt()).expect("std > 0");
            let w = &mut p.as_slice_mut().expect("contiguous")
                [layer.offset..layer.offset + layer.inputs * layer.outputs];
            for v in w {
                *v = normal.sample(&mut rng) as f32;
            }
        }
        p
    }

    /// Mean loss over the batch (plus the L2 term) and its gradient, written into `grad`
    /// (overwritten, not accumulated). `x` is `batch × features`, `y` holds the targets.
    pub fn loss_grad(
        &self,
        params: &[f32],
        x: ArrayView2<f32>,
        y: ArrayView1<f32>,
        grad: &mut [f32],
    ) -> f32 {
        self.check(params, x, y);
        assert_eq!(grad.len(), self.dim, "gradient length");
        let n = x.nrows();
        let (hidden, mut dz) = self.forward(params, x);
        let data_loss = self.head_loss(dz.view_mut(), y, true) / n as f64;
        let last = self.layers.len() - 1;
        for l in (0..=last).rev() {
            let layer = self.layers[l];
            let input = if l == 0 {
                x.view()
            } else {
                hidden[l - 1].view()
            };
            let (gw, gb) =
                grad[layer.offset..layer.end()].split_at_mut(layer.outputs * layer.inputs);
            let mut gw =
                ArrayViewMut2::from_shape((layer.outputs, layer.inputs), gw).expect("layer shape");
            general_mat_mul(1.0, &dz.t(), &input, 0.0, &mut gw);
            for (g, col) in gb.iter_mut().zip(dz.axis_iter(Axis(1))) {
                *g = col.sum();
            }
            if l > 0 {
                let mut da = dz.dot(&layer.weights(params));
                // ReLU derivative: pass the gradient where the activation was positive.
                ndarray::Zip::from(&mut da)
                    .and(&hidden[l - 1])
                    .for_each(|d, &a| {
                        if a <= 0.0 {
                            *d = 0.0;
                        }
                    });
                dz = da;
            }
        }
        (data_loss + self.add_l2(params, Some(grad))) as f32
    }

    /// Mean loss over the batch plus the L2 term, without the gradient.
    pub fn loss(&self, params: &[f32], x: ArrayView2<f32>, y: ArrayView1<f32>) -> f32 {
        self.check(params, x, y);
        let (_, mut z) = self.forward(params, x);
        let data_loss = self.head_loss(z.view_mut(), y, false) / x.nrows() as f64;
        (data_loss + self.add_l2(params, None)) as f32
    }

    /// Network outputs (`batch × outputs`): logits, or predictions for linear regression.
    pub fn predict(&self, params: &[f32], x: ArrayView2<f32>) -> Array2<f32> {
        assert_eq!(params.len(), self.dim, "parameter length");
        assert_eq!(x.ncols(), self.features, "feature count");
        self.forward(params, x).1
    }

    /// Mean loss (without L2) and accuracy (classification) of `params` on `data`.
    pub fn evaluate(&self, params: &[f32], data: &Dataset) -> Evaluation {
        assert_eq!(params.len(), self.dim, "parameter length");
        if data.is_empty() {
            return Evaluation {
                loss: 0.0,
                accuracy: self.classes.map(|_| 0.0),
            };
        }
        const CHUNK: usize = 512;
        let (mut loss, mut correct) = (0f64, 0usize);
        let mut start = 0;
        while start < data.len() {
            let end = (start + CHUNK).min(data.len());
            let x = data.features.slice(ndarray::s![start..end, ..]);
            let y = data.targets.slice(ndarray::s![start..end]);
            let (_, mut z) = self.forward(params, x);
            correct += self.count_correct(z.view(), y);
            loss += self.head_loss(z.view_mut(), y, false);
            start = end;
        }
        Evaluation {
            loss: (loss / data.len() as f64) as f32,
            accuracy: self
                .classes
                .map(|_| (correct as f64 / data.len() as f64) as f32),
        }
    }

    fn check(&self, params: &[f32], x: ArrayView2<f32>, y: ArrayView1<f32>) {
        assert_eq!(params.len(), self.dim, "parameter length");
        assert_eq!(x.ncols(), self.features, "feature count");
        assert_eq!(x.nrows(), y.len(), "one target per row");
        assert!(x.nrows() > 0, "empty batch");
    }

    /// Hidden activations (after ReLU) and the output layer's pre-activations.
    fn forward(&self, params: &[f32], x: ArrayView2<f32>) -> (Vec<Array2<f32>>, Array2<f32>) {
        let last = self.layers.len() - 1;
        let mut hidden: Vec<Array2<f32>> = Vec::with_capacity(last);
        for (l, layer) in self.layers.iter().enumerate() {
            let input = if l == 0 {
                x.view()
            } else {
                hidden[l - 1].view()
            };
            let mut out = input.dot(&layer.weights(params).t());
            let bias = layer.bias(params);
            for mut row in out.axis_iter_mut(Axis(0)) {
                for (v, b) in row.iter_mut().zip(bias) {
                    *v += b;
                }
            }
            if l == last {
                return (hidden, out);
            }
            out.mapv_inplace(|v| v.max(0.0));
            hidden.push(out);
        }
        unreachable!("a model has at least one layer")
    }

    /// Summed loss over the rows of `z`; with `grad`, replaces `z` by `∂loss/∂z / n`.
    fn head_loss(&self, mut z: ArrayViewMut2<f32>, y: ArrayView1<f32>, grad: bool) -> f64 {
        let inv_n = 1.0 / z.nrows() as f32;
        let mut total = 0f64;
        for (mut row, &t) in z.axis_iter_mut(Axis(0)).zip(y) {
            match self.head {
                Head::Squared => {
                    let r = row[0] - t;
                    total += 0.5 * f64::from(r) * f64::from(r);
                    if grad {
                        row[0] = r * inv_n;
                    }
                }
                Head::Binary => {
                    let v = row[0];
                    // log(1 + e^v) − t·v, computed without overflow.
                    total += f64::from(v.max(0.0) - t * v) + f64::from((-v.abs()).exp()).ln_1p();
                    if grad {
                        row[0] = (sigmoid(v) - t) * inv_n;
                    }
                }
                Head::Softmax => {
                    let class = t as usize;
                    let m = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                    let mut sum = 0f64;
                    for v in row.iter() {
                        sum += f64::from(v - m).exp();
                    }
                    total += sum.ln() + f64::from(m) - f64::from(row[class]);
                    if grad {
                        let inv = 1.0 / sum;
                        for (c, v) in row.iter_mut().enumerate() {
                            let p = (f64::from(*v - m).exp() * inv) as f32;
                            *v = (p - f32::from(u8::from(c == class))) * inv_n;
                        }
                    }
                }
            }
        }
        total
    }

    fn count_correct(&self, z: ArrayView2<f32>, y: ArrayView1<f32>) -> usize {
        match self.head {
            Head::Squared => 0,
            Head::Binary => z
                .axis_iter(Axis(0))
                .zip(y)
                .filter(|(row, t)| (row[0] > 0.0) == (**t > 0.5))
                .count(),
            Head::Softmax => z
                .axis_iter(Axis(0))
                .zip(y)
                .filter(|(row, t)| {
                    let mut best = 0;
                    for (c, v) in row.iter().enumerate() {
                        if *v > row[best] {
                            best = c;
                        }
                    }
                    best == **t as usize
                })
                .count(),
        }
    }

    /// The L2 term `½·l2·‖W‖²`; with `grad`, adds `l2·W` to it.
    fn add_l2(&self, params: &[f32], grad: Option<&mut [f32]>) -> f64 {
        if self.l2 == 0.0 {
            return 0.0;
        }
        let mut sq = 0f64;
        let mut grad = grad;
        for layer in &self.layers {
            let range = layer.offset..layer.offset + layer.inputs * layer.outputs;
            for &w in &params[range.clone()] {
                sq += f64::from(w) * f64::from(w);
            }
            if let Some(g) = grad.as_deref_mut() {
                for (g, &w) in g[range.clone()].iter_mut().zip(&params[range]) {
                    *g += self.l2 * w;
                }
            }
        }
        0.5 * f64::from(self.l2) * sq
    }
}

fn sigmoid(v: f32) -> f32 {
    if v >= 0.0 {
        1.0 / (1.0 + (-v).exp())
    } else {
        let e = v.exp();
        e / (1.0 + e)
    }
}
