//! Consensus distance: how far a swarm's models are from agreeing. One definition, used by
//! the simulator's metrics and the daemon's demo report alike:
//!
//! `distance = (1/n) Σ_i ‖x_i − x̄‖²` (the quantity gossip contracts at the rate the spectral
//! gap predicts; Koloskova et al. 2019 write it Ξ), and `relative = distance / ‖x̄‖²`, which is
//! what the `consensus=` keys of every `summary:` line report (scale-free, so models of any size
//! compare). Sums run in f64, peer by peer in order, so the figure is reproducible.

/// The consensus distance of a set of models and the squared norm of their mean.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Consensus {
    /// (1/n) Σ‖x_i − x̄‖².
    pub distance: f64,
    /// ‖x̄‖².
    pub mean_norm_sq: f64,
}

impl Consensus {
    /// Of `models` (all of one length); zero for no models.
    pub fn of<M: AsRef<[f32]>>(models: &[M]) -> Consensus {
        let Some(first) = models.first() else {
            return Consensus::default();
        };
        let mean = mean_model(models, first.as_ref().len());
        let total: f64 = models
            .iter()
            .map(|m| squared_distance(m.as_ref(), &mean))
            .sum();
        Consensus::from_parts(total, models.len(), &mean)
    }

    /// From the sum over `n` models of [`squared_distance`] to their `mean` (for drivers that
    /// compute the per-model distances in parallel).
    pub fn from_parts(distance_sum: f64, n: usize, mean: &[f64]) -> Consensus {
        Consensus {
            distance: if n == 0 { 0.0 } else { distance_sum / n as f64 },
            mean_norm_sq: mean.iter().map(|a| a * a).sum(),
        }
    }

    /// `distance / ‖x̄‖²` (0 when both are 0).
    pub fn relative(&self) -> f64 {
        if self.distance == 0.0 {
            0.0
        } else {
            self.distance / self.mean_norm_sq.max(f64::MIN_POSITIVE)
        }
    }
}

/// The mean of `models` in f64, each of length `dim`.
pub fn mean_model<M: AsRef<[f32]>>(models: &[M], dim: usize) -> Vec<f64> {
    let mut mean = vec![0f64; dim];
    let n = models.len().max(1) as f64;
    for m in models {
        for (a, &v) in mean.iter_mut().zip(m.as_ref()) {
            *a += f64::from(v) / n;
        }
    }
    mean
}

/// ‖x − mean‖² in f64.
pub fn squared_distance(x: &[f32], mean: &[f64]) -> f64 {
    x.iter()
        .zip(mean)
        .map(|(&v, &a)| (f64::from(v) - a).powi(2))
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_models_one_apart_in_each_of_two_coordinates() {
        // x̄ = (1, 1); each model is at squared distance 0.25 + 0.25 from it.
        let c = Consensus::of(&[vec![0.5f32, 0.5], vec![1.5, 1.5]]);
        assert_eq!(c.distance, 0.5);
        assert_eq!(c.mean_norm_sq, 2.0);
        assert_eq!(c.relative(), 0.25);
        assert_eq!(Consensus::of(&vec![vec![3.0f32, 4.0]; 3]).relative(), 0.0);
        assert_eq!(Consensus::of::<Vec<f32>>(&[]), Consensus::default());
    }
}
