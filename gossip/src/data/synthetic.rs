//! Seeded synthetic problems with a knob for heterogeneity across groups of samples (peers).
//!
//! A global ground truth `W*` (entries `N(0, 4/d)`) is drawn from the seed. Group `g` has its
//! own truth `W_g = W* + h·Δ_g` and feature mean `μ_g = h·u_g` (`Δ_g`, `u_g` standard
//! normal draws, scaled like `W*` and 1), so `h = 0` gives every group the same distribution
//! and larger `h` moves both the inputs and the input→label relation apart — the
//! "synthetic(α, β)" construction of Li et al. 2020 (FedProx) with one knob. Samples are
//! `x = μ_g + N(0, I)`, then:
//! - linear: `y = W_g·x + b_g + noise·N(0,1)`;
//! - logistic: `y ~ Bernoulli(σ(W_g·x + b_g + noise·N(0,1)))`;
//! - softmax: `y ~ Categorical(softmax(W_g·x + b_g + noise·N(0, I)))`.
//!
//! The dataset lists groups one after another, so [`super::Partition::Contiguous`] with as many
//! peers as groups hands peer `g` exactly group `g`.

use ndarray::{Array1, Array2};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};
use serde::{Deserialize, Serialize};

use super::Dataset;

/// Which relation links features to targets.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SyntheticKind {
    /// Real targets.
    Linear,
    /// Two classes.
    Logistic,
    /// `classes` classes.
    #[default]
    Softmax,
}

/// A synthetic problem (TOML: `[data] kind = "synthetic" problem = "logistic" groups = 16`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Synthetic {
    /// The relation.
    pub problem: SyntheticKind,
    /// Total samples (split evenly over groups).
    pub samples: usize,
    /// Features per sample.
    pub features: usize,
    /// Classes for [`SyntheticKind::Softmax`] (ignored otherwise).
    pub classes: usize,
    /// Number of groups (one per peer when partitioned contiguously).
    pub groups: usize,
    /// How far groups' distributions differ (0: identical).
    pub heterogeneity: f32,
    /// Noise on the target or logits.
    pub noise: f32,
    /// Seed of the ground truth and the samples.
    pub seed: u64,
}

impl Default for Synthetic {
    fn default() -> Self {
        Synthetic {
            problem: SyntheticKind::Softmax,
            samples: 4000,
            features: 20,
            classes: 5,
            groups: 1,
            heterogeneity: 0.0,
            noise: 0.1,
            seed: 0,
        }
    }
}

impl Synthetic {
    /// Sample index ranges of each group in [`Synthetic::generate`]'s output.
    pub fn group_ranges(&self) -> Vec<std::ops::Range<usize>> {
        let g = self.groups.max(1);
        (0..g)
            .map(|k| k * self.samples / g..(k + 1) * self.samples / g)
            .collect()
    }

    fn outputs(&self) -> usize {
        match self.problem {
            SyntheticKind::Softmax => self.classes.max(2),
            _ => 1,
        }
    }

    /// Draws the dataset. Panics if `features == 0` or `samples < groups`.
    pub fn generate(&self) -> Dataset {
        assert!(self.features > 0, "synthetic data needs features");
        assert!(
            self.samples >= self.groups.max(1),
            "fewer samples than groups"
        );
        let (d, k) = (self.features, self.outputs());
        let scale = 2.0 / (d as f32).sqrt();
        let mut truth_rng = ChaCha8Rng::seed_from_u64(self.seed);
        let w_star = normal_matrix(&mut truth_rng, k, d, scale);
        let n = self.samples;
        let mut x = Array2::<f32>::zeros((n, d));
        let mut y = Array1::<f32>::zeros(n);
        let mut z = vec![0f32; k];
        for (g, range) in self.group_ranges().into_iter().enumerate() {
            // Each group's draws come from its own stream: a group's data does not depend
            // on how many groups follow it.
            let mut rng = ChaCha8Rng::seed_from_u64(self.seed);
            rng.set_stream(g as u64 + 1);
            let h = self.heterogeneity;
            let w = &w_star + &(normal_matrix(&mut rng, k, d, scale) * h);
            let mu: Vec<f32> = (0..d).map(|_| h * normal(&mut rng)).collect();
            let b: Vec<f32> = (0..k).map(|_| h * normal(&mut rng)).collect();
            for i in range {
                let mut row = x.row_mut(i);
                for (v, m) in row.iter_mut().zip(&mu) {
                    *v = m + normal(&mut rng);
                }
                for (c, zc) in z.iter_mut().enumerate() {
                    let dot: f32 = w.row(c).iter().zip(row.iter()).map(|(a, b)| a * b).sum();
                    *zc = dot + b[c] + self.noise * normal(&mut rng);
                }
                y[i] = match self.problem {
                    SyntheticKind::Linear => z[0],
                    SyntheticKind::Logistic => {
                        let p = 1.0 / (1.0 + (-z[0]).exp());
                        f32::from(u8::from(rng.random::<f32>() < p))
                    }
                    SyntheticKind::Softmax => {
                        let m = z.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                        let total: f32 = z.iter().map(|v| (v - m).exp()).sum();
                        let mut u = rng.random::<f32>() * total;
                        let mut class = k - 1;
                        for (c, v) in z.iter().enumerate() {
                            u -= (v - m).exp();
                            if u <= 0.0 {
                                class = c;
                                break;
                            }
                        }
                        class as f32
                    }
                };
            }
        }
        let classes = match self.problem {
            SyntheticKind::Linear => None,
            SyntheticKind::Logistic => Some(2),
            SyntheticKind::Softmax => Some(k),
        };
        Dataset::new(x, y, classes).expect("generated data is well formed")
    }
}

fn normal(rng: &mut ChaCha8Rng) -> f32 {
    StandardNormal.sample(rng)
}

fn normal_matrix(rng: &mut ChaCha8Rng, rows: usize, cols: usize, scale: f32) -> Array2<f32> {
    Array2::from_shape_simple_fn((rows, cols), || scale * normal(rng))
}
