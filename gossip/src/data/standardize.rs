//! Feature standardisation: fit per-feature mean and standard deviation on the training set,
//! apply the same affine map to every split (fitting on test data would leak it).

use ndarray::{Array1, Axis};
use serde::{Deserialize, Serialize};

use super::Dataset;

/// Per-feature `(x − mean) / std`, fitted on one dataset.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Standardizer {
    /// Feature means.
    pub mean: Array1<f32>,
    /// Feature standard deviations (constant features get 1, so they map to 0).
    pub std: Array1<f32>,
}

impl Standardizer {
    /// Fits on `data` (accumulating in f64).
    pub fn fit(data: &Dataset) -> Self {
        let d = data.dim();
        let n = data.len().max(1) as f64;
        let mut sum = vec![0f64; d];
        let mut sq = vec![0f64; d];
        for row in data.features.axis_iter(Axis(0)) {
            for (k, &v) in row.iter().enumerate() {
                sum[k] += f64::from(v);
            }
        }
        let mean: Vec<f64> = sum.iter().map(|s| s / n).collect();
        for row in data.features.axis_iter(Axis(0)) {
            for (k, &v) in row.iter().enumerate() {
                let c = f64::from(v) - mean[k];
                sq[k] += c * c;
            }
        }
        let std = sq
            .iter()
            .map(|s| {
                let s = (s / n).sqrt();
                if s > 1e-12 { s as f32 } else { 1.0 }
            })
            .collect();
        Standardizer {
            mean: mean.iter().map(|&m| m as f32).collect(),
            std,
        }
    }

    /// Standardises `data` in place. Panics if its width differs from the fitted one.
    pub fn apply(&self, data: &mut Dataset) {
        assert_eq!(
            data.dim(),
            self.mean.len(),
            "standardizer fitted on another width"
        );
        for mut row in data.features.axis_iter_mut(Axis(0)) {
            for ((v, m), s) in row.iter_mut().zip(&self.mean).zip(&self.std) {
                *v = (*v - m) / s;
            }
        }
    }
}
