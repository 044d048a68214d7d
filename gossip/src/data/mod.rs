//! Datasets: the in-memory [`Dataset`], the bundled sets ([`digits`], [`breast_cancer`],
//! [`mnist`], the [`shakespeare`] text), file loaders (CSV plain or gzip, LIBSVM/SVMlight,
//! MNIST IDX), seeded synthetic generators, partitioners that deal a dataset out to peers,
//! feature standardisation, the seeded minibatch sampler, and character-level text corpora
//! ([`TextCorpus`], [`WindowSampler`]) for language models.
//!
//! Everything random takes a seed and draws from `ChaCha8Rng`, so a split, a partition or a
//! minibatch order is a pure function of its inputs.

/// Serialises a type through its `Display`/`FromStr` string form (`"dirichlet:0.1"`,
/// `"mlp:64,32"`), which reads well in TOML and on a command line.
macro_rules! serde_via_str {
    ($t:ty) => {
        impl serde::Serialize for $t {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }
        impl<'de> serde::Deserialize<'de> for $t {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let text = <String as serde::Deserialize>::deserialize(d)?;
                text.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}
pub(crate) use serde_via_str;

mod bundled;
mod corpus;
mod error;
mod idx;
mod libsvm;
mod partition;
mod sampler;
mod standardize;
mod synthetic;
mod text;

pub use bundled::{breast_cancer, digits, mnist, shakespeare};
pub use corpus::{TextCorpus, WindowSampler, WindowSamplerState};
pub use error::DataError;
pub use idx::load_idx;
pub use libsvm::{LibsvmOptions, load_libsvm};
pub use partition::{Partition, label_histograms, partition};
pub use sampler::{MinibatchSampler, SamplerState};
pub use standardize::Standardizer;
pub use synthetic::{Synthetic, SyntheticKind};
pub use text::{CsvOptions, Labels, load_csv};

use ndarray::{Array1, Array2, Axis};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

/// A table of samples: one row of `features` per sample and its target.
///
/// For classification `classes` is `Some(k)` and every target is a class index `0..k` stored
/// as `f32`; for regression `classes` is `None` and targets are real values.
#[derive(Clone, Debug, PartialEq)]
pub struct Dataset {
    /// `n × d` feature matrix, one sample per row.
    pub features: Array2<f32>,
    /// `n` targets: class index as `f32`, or the regression value.
    pub targets: Array1<f32>,
    /// Number of classes, `None` for regression.
    pub classes: Option<usize>,
}

impl Dataset {
    /// Builds a dataset after checking shapes, finiteness and (for classification) that every
    /// target is a class index below `classes`.
    pub fn new(
        features: Array2<f32>,
        targets: Array1<f32>,
        classes: Option<usize>,
    ) -> Result<Self, DataError> {
        if features.nrows() != targets.len() {
            return Err(DataError::Shape(format!(
                "{} feature rows but {} targets",
                features.nrows(),
                targets.len()
            )));
        }
        if let Some(row) = features
            .rows()
            .into_iter()
            .position(|r| r.iter().any(|v| !v.is_finite()))
        {
            return Err(DataError::Shape(format!(
                "sample {row} has a non-finite feature"
            )));
        }
        for (i, &t) in targets.iter().enumerate() {
            let ok = match classes {
                Some(k) => t >= 0.0 && t.fract() == 0.0 && (t as usize) < k,
                None => t.is_finite(),
            };
            if !ok {
                return Err(DataError::Shape(format!(
                    "target {t} of sample {i} is not valid for {classes:?} classes"
                )));
            }
        }
        Ok(Dataset {
            features,
            targets,
            classes,
        })
    }

    /// Number of samples.
    pub fn len(&self) -> usize {
        self.targets.len()
    }

    /// True when the dataset has no samples.
    pub fn is_empty(&self) -> bool {
        self.targets.is_empty()
    }

    /// Number of features per sample.
    pub fn dim(&self) -> usize {
        self.features.ncols()
    }

    /// The class of sample `i` (classification only; regression targets are truncated).
    pub fn label(&self, i: usize) -> usize {
        self.targets[i] as usize
    }

    /// The samples at `indices`, in that order (indices may repeat).
    pub fn subset(&self, indices: &[usize]) -> Dataset {
        Dataset {
            features: self.features.select(Axis(0), indices),
            targets: self.targets.select(Axis(0), indices),
            classes: self.classes,
        }
    }

    /// Splits into `(train, test)` with `round(n × test_fraction)` samples drawn at random
    /// into the test part. Both parts keep the original sample order, so a dataset laid out
    /// in groups (a synthetic set with per-peer distributions, say) stays grouped.
    pub fn train_test_split(&self, test_fraction: f64, seed: u64) -> (Dataset, Dataset) {
        let n = self.len();
        let n_test = ((n as f64) * test_fraction.clamp(0.0, 1.0)).round() as usize;
        let mut order: Vec<usize> = (0..n).collect();
        order.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
        let mut is_test = vec![false; n];
        for &i in &order[..n_test] {
            is_test[i] = true;
        }
        let test: Vec<usize> = (0..n).filter(|&i| is_test[i]).collect();
        let train: Vec<usize> = (0..n).filter(|&i| !is_test[i]).collect();
        (self.subset(&train), self.subset(&test))
    }

    /// Samples per class (classification), empty for regression.
    pub fn class_counts(&self) -> Vec<usize> {
        let Some(k) = self.classes else {
            return Vec::new();
        };
        let mut counts = vec![0; k];
        for i in 0..self.len() {
            counts[self.label(i)] += 1;
        }
        counts
    }

    /// Stacks datasets with the same width and label kind (e.g. per-group synthetic data).
    pub fn concat(parts: &[Dataset]) -> Result<Dataset, DataError> {
        let Some(first) = parts.first() else {
            return Err(DataError::Shape("nothing to concatenate".into()));
        };
        if parts
            .iter()
            .any(|p| p.dim() != first.dim() || p.classes != first.classes)
        {
            return Err(DataError::Shape(
                "datasets differ in width or classes".into(),
            ));
        }
        let views: Vec<_> = parts.iter().map(|p| p.features.view()).collect();
        let targets: Vec<_> = parts.iter().map(|p| p.targets.view()).collect();
        Ok(Dataset {
            features: ndarray::concatenate(Axis(0), &views)
                .map_err(|e| DataError::Shape(e.to_string()))?,
            targets: ndarray::concatenate(Axis(0), &targets)
                .map_err(|e| DataError::Shape(e.to_string()))?,
            classes: first.classes,
        })
    }
}
