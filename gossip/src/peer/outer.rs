//! The DiLoCo outer step (Douillard et al. 2023, "DiLoCo: Distributed Low-Communication
//! Training of Language Models"): the H local steps of a round are taken by the inner
//! optimizer (AdamW, SGD) from the anchor θ, the model at the start of the round; their
//! pseudo-gradient g = θ − x is then applied by an outer Nesterov optimizer,
//!
//!   v ← μ v + g,   x ← θ − η (g + μ v),
//!
//! before the round's update goes out. DiLoCo averages g over the workers by all-reduce and
//! steps one shared θ; here each peer steps with its own g and its own v, and the gossip that
//! follows mixes the stepped models. Every mix murmur offers for CHOCO and D-PSGD preserves the
//! network average (the Metropolis weights are symmetric), and the outer step is linear in
//! (g, v), so the average model follows DiLoCo's recursion exactly with the average
//! pseudo-gradient: v̄ ← μ v̄ + ḡ, θ̄ ← θ̄ − η (ḡ + μ v̄). Keeping the consensus term out of
//! the momentum is deliberate: folding the mix into g (g = θ − mixed x) would drive the
//! disagreement between peers with an effective step η/(1 − μ), which overshoots on graphs
//! whose mixing matrix has eigenvalues near −1. The gossip variants NoLoCo (2025) and GASLoC
//! (2026) also keep a per-worker outer state.
//!
//! What travels is the stepped model's CHOCO update, compressed with the codec's residual
//! (x − x̂ is exactly what has not been sent yet), so the outer pseudo-gradient is compressed
//! with error feedback as SparseLoCo does with top-k. η = 1, μ = 0 is the plain local-SGD
//! round, which is why the step is off unless configured ([`OuterConfig`]).

use std::fmt::Debug;
use std::hash::Hash;

use serde::{Deserialize, Serialize};

use super::Peer;

/// The outer Nesterov optimizer of a DiLoCo round (`PeerConfig::outer`). DiLoCo's defaults:
/// η = 0.7, μ = 0.9, with H in the tens to hundreds of local steps.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OuterConfig {
    /// η: outer learning rate, in (0, 10].
    pub lr: f32,
    /// μ: Nesterov momentum, in [0, 1).
    #[serde(default = "default_momentum")]
    pub momentum: f32,
}

fn default_momentum() -> f32 {
    0.9
}

/// An outer setting out of range.
#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum OuterError {
    /// η not finite or outside (0, 10].
    #[error("outer.lr = {0} must be in (0, 10]")]
    Lr(f32),
    /// μ not finite or outside [0, 1).
    #[error("outer.momentum = {0} must be in [0, 1)")]
    Momentum(f32),
    /// Push-sum's model is a ratio whose numerator is what is mixed: an outer step on the
    /// ratio would not be mixed linearly, so the average-preserving argument fails.
    #[error("outer needs the CHOCO or D-PSGD algorithm (push-sum mixes a weighted numerator)")]
    PushSum,
    /// Nothing to step on without local steps.
    #[error("outer needs local_steps >= 1 (its pseudo-gradient is what the local steps moved)")]
    NoLocalSteps,
}

impl OuterConfig {
    /// Checks the ranges.
    pub fn validate(&self) -> Result<(), OuterError> {
        if !(self.lr.is_finite() && self.lr > 0.0 && self.lr <= 10.0) {
            return Err(OuterError::Lr(self.lr));
        }
        if !(self.momentum.is_finite() && (0.0..1.0).contains(&self.momentum)) {
            return Err(OuterError::Momentum(self.momentum));
        }
        Ok(())
    }
}

/// One outer step on `x` (the model after the local steps) from the anchor `theta`, with the
/// velocity `v` (model-sized, zero at first): v ← μ v + (θ − x), x ← θ − η (θ − x + μ v).
pub fn outer_step(config: &OuterConfig, theta: &[f32], x: &mut [f32], v: &mut [f32]) {
    let (lr, mu) = (config.lr, config.momentum);
    for ((x, t), v) in x.iter_mut().zip(theta).zip(v.iter_mut()) {
        let g = t - *x;
        *v = mu * *v + g;
        *x = t - lr * (g + mu * *v);
    }
}

impl<I: Clone + Ord + Debug + Hash> Peer<I> {
    /// Applies the configured outer step to the model the local steps left, from `anchor`
    /// (the model before them). No-op when the step is off.
    pub(super) fn apply_outer(&mut self, anchor: &[f32]) {
        let Some(config) = self.config.outer else {
            return;
        };
        if self.outer_velocity.len() != self.dim {
            self.outer_velocity = vec![0.0; self.dim];
        }
        let x = self.model.as_slice_mut().expect("model is contiguous");
        outer_step(&config, anchor, x, &mut self.outer_velocity);
        self.stats.outer_steps += 1;
    }

    /// The outer optimizer's velocity (empty when the outer step is off or has not run).
    pub fn outer_velocity(&self) -> &[f32] {
        &self.outer_velocity
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unit_step_without_momentum_is_the_local_round() {
        let c = OuterConfig {
            lr: 1.0,
            momentum: 0.0,
        };
        let theta = [1.0, -2.0, 3.0];
        let mut x = [0.5, -1.0, 3.5];
        let mut v = [0.0; 3];
        outer_step(&c, &theta, &mut x, &mut v);
        assert_eq!(x, [0.5, -1.0, 3.5]);
        assert_eq!(v, [0.5, -1.0, -0.5]);
    }

    /// Nesterov in PyTorch's form, checked against the closed form of two steps with a
    /// constant pseudo-gradient g: v1 = g, x1 = θ − η(1 + μ)g; v2 = (1 + μ)g,
    /// x2 = θ1 − η(1 + μ + μ²)g.
    #[test]
    fn nesterov_two_steps_match_the_closed_form() {
        let c = OuterConfig {
            lr: 0.7,
            momentum: 0.9,
        };
        let g = 0.25f32;
        let mut theta = [2.0f32];
        let mut v = [0.0f32];
        let mut x = [theta[0] - g];
        outer_step(&c, &theta, &mut x, &mut v);
        let x1 = 2.0 - 0.7 * 1.9 * g;
        assert!((x[0] - x1).abs() < 1e-6, "{} vs {x1}", x[0]);
        assert!((v[0] - g).abs() < 1e-7);
        theta = x;
        x = [theta[0] - g];
        outer_step(&c, &theta, &mut x, &mut v);
        let x2 = x1 - 0.7 * (1.0 + 0.9 + 0.81) * g;
        assert!((x[0] - x2).abs() < 1e-6, "{} vs {x2}", x[0]);
        assert!((v[0] - 1.9 * g).abs() < 1e-6);
    }

    /// Linearity: the mean of the peers' stepped models is the outer step of the mean
    /// anchor, mean model and mean velocity (why gossip's average follows DiLoCo).
    #[test]
    fn the_mean_of_outer_steps_is_the_outer_step_of_the_means() {
        let c = OuterConfig {
            lr: 0.7,
            momentum: 0.9,
        };
        let thetas = [[1.0f32, 2.0], [3.0, -1.0], [0.0, 0.5]];
        let xs = [[0.5f32, 2.5], [2.0, -1.5], [0.25, 0.0]];
        let vs = [[0.1f32, -0.2], [0.3, 0.0], [-0.4, 0.6]];
        let mean = |a: &[[f32; 2]; 3]| [0, 1].map(|k| a.iter().map(|r| r[k]).sum::<f32>() / 3.0);
        let (mut mx, mut mv) = (mean(&xs), mean(&vs));
        outer_step(&c, &mean(&thetas), &mut mx, &mut mv);
        let mut stepped = xs;
        let mut vels = vs;
        for k in 0..3 {
            outer_step(&c, &thetas[k], &mut stepped[k], &mut vels[k]);
        }
        for k in 0..2 {
            assert!((mean(&stepped)[k] - mx[k]).abs() < 1e-5);
            assert!((mean(&vels)[k] - mv[k]).abs() < 1e-5);
        }
    }

    #[test]
    fn ranges_are_checked_by_name() {
        let ok = OuterConfig {
            lr: 0.7,
            momentum: 0.9,
        };
        assert_eq!(ok.validate(), Ok(()));
        for lr in [0.0, -1.0, f32::NAN, 11.0] {
            let e = OuterConfig { lr, ..ok }.validate().unwrap_err();
            assert!(e.to_string().starts_with("outer.lr"), "{e}");
        }
        for momentum in [1.0, -0.1, f32::INFINITY] {
            let e = OuterConfig { momentum, ..ok }.validate().unwrap_err();
            assert!(e.to_string().starts_with("outer.momentum"), "{e}");
        }
    }
}
