//! Aggregate copy storage ([`CopyStorage::Aggregate`](super::CopyStorage::Aggregate)): instead
//! of one copy of x̂_j per neighbour, the single sum s = Σ_j w_ij x̂_j (in f64, so the running
//! sum does not drift) and the total weight inside it. Updates and snapshots are added to it,
//! the mix reads it, and since a contribution inside it cannot be removed or re-weighted
//! exactly, a neighbour leaving, a degree change or a resync rebuilds it from fresh snapshots.

use std::fmt::Debug;
use std::hash::Hash;

use murmur_compress::Compressed;
use ndarray::Array1;

use super::{Algorithm, Micros, Peer, RejectReason, metropolis_weight};

/// The sum of the neighbours' public copies, weighted, and the weights it holds.
#[derive(Debug)]
pub(super) struct Aggregate {
    /// s = Σ_j w_ij x̂_j over the neighbours inside the sum.
    sum: Vec<f64>,
    /// Σ_j w_ij over the same neighbours (what x̂_i is scaled by in the mix).
    weight: f64,
}

impl Aggregate {
    /// An empty sum of dimension `dim`.
    pub(super) fn new(dim: usize) -> Self {
        Aggregate {
            sum: vec![0.0; dim],
            weight: 0.0,
        }
    }

    /// s += w v, or nothing at all (and a rejection naming `what`) if any entry would stop
    /// being finite. In place: one pass checks, a second writes (no model-sized scratch).
    pub(super) fn add(
        &mut self,
        w: f64,
        v: &[f32],
        what: &'static str,
    ) -> Result<(), RejectReason> {
        let finite = self
            .sum
            .iter()
            .zip(v)
            .all(|(s, x)| (s + w * f64::from(*x)).is_finite());
        if !finite {
            return Err(RejectReason::NonFinite { what });
        }
        for (s, x) in self.sum.iter_mut().zip(v) {
            *s += w * f64::from(*x);
        }
        Ok(())
    }

    /// s += w q for a compressed update, touching only q's entries (a 1%-dense update costs 1%
    /// of the sum), with the same all-or-nothing finiteness rule as [`Aggregate::add`]; the
    /// result is that of adding q's dense form (the entries q does not carry stay as they
    /// are, rather than gaining `+ 0.0`, which could only flip the sign of a zero).
    pub(super) fn add_update(
        &mut self,
        w: f64,
        q: &Compressed,
        what: &'static str,
    ) -> Result<(), RejectReason> {
        let mut finite = true;
        q.for_each_entry(|i, v| finite &= (self.sum[i] + w * f64::from(v)).is_finite());
        if !finite {
            return Err(RejectReason::NonFinite { what });
        }
        let sum = &mut self.sum;
        q.for_each_entry(|i, v| sum[i] += w * f64::from(v));
        Ok(())
    }

    /// Counts weight `w` of a neighbour in the total the first time its copy enters the sum
    /// (`weight_in_sum` is that neighbour's record of it).
    pub(super) fn count_in(&mut self, weight_in_sum: &mut Option<f64>, w: f64) {
        if weight_in_sum.is_none() {
            *weight_in_sum = Some(w);
            self.weight += w;
        }
    }

    /// s / Σ_j w_ij: the weighted mean of the copies inside the sum (None while it is empty).
    pub(super) fn mean(&self) -> Option<Vec<f32>> {
        (self.weight > 0.0).then(|| self.sum.iter().map(|s| (s / self.weight) as f32).collect())
    }

    /// Empties the sum.
    fn clear(&mut self) {
        self.sum.iter_mut().for_each(|s| *s = 0.0);
        self.weight = 0.0;
    }

    /// x += γ (s − (Σ_j w_ij) x̂_i) (nothing while the sum is empty).
    fn mix_into(&self, model: &mut Array1<f32>, x_hat: &[f32], gamma: f32) {
        let total = self.weight;
        if total > 0.0 {
            for ((x, s), h) in model.iter_mut().zip(&self.sum).zip(x_hat) {
                *x += gamma * (s - total * f64::from(*h)) as f32;
            }
        }
    }
}

impl<I: Clone + Ord + Debug + Hash> Peer<I> {
    /// x += γ (s − (Σ_j w_ij) x̂_i); then, if any weight changed since its neighbour entered the
    /// sum, the sum is rebuilt from fresh snapshots.
    pub(super) fn mix_aggregate(&mut self, now: Micros) {
        let Algorithm::Choco { gamma, .. } = self.config.algorithm else {
            unreachable!("validated: aggregate storage is CHOCO only")
        };
        let aggregate = self.aggregate.as_ref().expect("aggregate storage");
        aggregate.mix_into(&mut self.model, &self.x_hat, gamma);
        self.check_aggregate_weights(now);
    }

    /// Rebuilds the aggregate sum as soon as a weight inside it is no longer the current
    /// Metropolis–Hastings weight (a degree changed on either end).
    pub(super) fn check_aggregate_weights(&mut self, now: Micros) {
        if self.aggregate.is_none() {
            return;
        }
        let my_degree = self.neighbours.len();
        let stale = self.neighbours.values().any(|nb| {
            nb.weight_in_sum
                .is_some_and(|w| w != metropolis_weight(my_degree, nb.degree))
        });
        if stale {
            self.rebuild_aggregate(now);
        }
    }

    /// Empties the aggregate sum and asks every neighbour for a snapshot to refill it.
    pub(super) fn rebuild_aggregate(&mut self, now: Micros) {
        let Some(aggregate) = self.aggregate.as_mut() else {
            return;
        };
        aggregate.clear();
        self.stats.aggregate_rebuilds += 1;
        let mut ask = Vec::new();
        for (j, nb) in self.neighbours.iter_mut() {
            nb.weight_in_sum = None;
            if nb.hello_seen {
                nb.copy = None;
                nb.pending_snapshot = None;
                ask.push(j.clone());
            }
        }
        for j in ask {
            self.request_snapshot(now, &j, false);
        }
    }
}
