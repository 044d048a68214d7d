//! Closed-form spectra of the structured graphs under Metropolis–Hastings weights, used as
//! references by tests and by the `gap_bench` example.
//!
//! Ring, torus and exponential graphs are Cayley graphs of cyclic groups, so their mixing
//! matrices are circulant and `1 − λ_j = Σ_s w (1 − cos(2π j s / n)) = Σ_s 2 w sin²(π j s / n)`
//! over the offsets `s`. Writing it with `sin²` keeps relative accuracy for tiny gaps.

use std::f64::consts::PI;

use crate::graph::powers_below;

/// Both sides of the gap: `1 − λ2`, `1 + λn`, and `δ = min` of the two.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GapSides {
    /// `1 − λ2`.
    pub one_minus_lambda2: f64,
    /// `1 + λn`.
    pub one_plus_lambda_min: f64,
}

impl GapSides {
    /// `δ = 1 − max(|λ2|, |λn|)`.
    pub fn gap(&self) -> f64 {
        self.one_minus_lambda2.min(self.one_plus_lambda_min)
    }
}

/// Gap sides of the circulant `W` with weight `w` on each of the (distinct, nonzero) offsets
/// `offsets` (both `s` and `n − s` must be listed for a symmetric matrix) and `1 − Σ w` on the
/// diagonal.
pub fn circulant(n: usize, offsets: &[usize], w: f64) -> GapSides {
    let mut smallest = f64::INFINITY;
    let mut largest = f64::NEG_INFINITY;
    for j in 1..n {
        let one_minus: f64 = offsets
            .iter()
            .map(|&s| {
                let x = (PI * ((j * s) % n) as f64 / n as f64).sin();
                2.0 * w * x * x
            })
            .sum();
        smallest = smallest.min(one_minus);
        largest = largest.max(one_minus);
    }
    GapSides {
        one_minus_lambda2: smallest,
        one_plus_lambda_min: 2.0 - largest,
    }
}

/// Eigenvalues of the ring with weights 1/3: `1/3 + 2/3 cos(2πk/n)`, `k = 0..n`.
pub fn ring_eigenvalues(n: usize) -> Vec<f64> {
    (0..n)
        .map(|k| 1.0 / 3.0 + 2.0 / 3.0 * (2.0 * PI * k as f64 / n as f64).cos())
        .collect()
}

/// Ring (`n ≥ 3`) with MH weights 1/3.
pub fn ring(n: usize) -> GapSides {
    GapSides {
        one_minus_lambda2: 4.0 / 3.0 * (PI / n as f64).sin().powi(2),
        one_plus_lambda_min: 2.0 / 3.0 + 4.0 / 3.0 * (PI * (n / 2) as f64 / n as f64).cos().powi(2),
    }
}

/// `rows × cols` torus (both `≥ 3`) with MH weights 1/5.
pub fn torus(rows: usize, cols: usize) -> GapSides {
    let side = |m: usize| {
        let lo = (PI / m as f64).sin().powi(2);
        let hi = (PI * (m / 2) as f64 / m as f64).sin().powi(2);
        (lo, hi)
    };
    let (r_lo, r_hi) = side(rows);
    let (c_lo, c_hi) = side(cols);
    GapSides {
        one_minus_lambda2: 0.8 * r_lo.min(c_lo),
        one_plus_lambda_min: 2.0 - 0.8 * (r_hi + c_hi),
    }
}

/// Static exponential graph (`i ± 2^k`) with MH weights `1 / (1 + d)`; it is `d`-regular.
pub fn exponential(n: usize) -> GapSides {
    let mut offsets: Vec<usize> = powers_below(n)
        .flat_map(|p| [p % n, (n - p) % n])
        .filter(|&s| s != 0)
        .collect();
    offsets.sort_unstable();
    offsets.dedup();
    let w = 1.0 / (1.0 + offsets.len() as f64);
    circulant(n, &offsets, w)
}

/// Complete graph: `W = J / n`, `δ = 1`.
pub fn complete_gap(_n: usize) -> f64 {
    1.0
}

/// Hypercube of dimension `d` with MH weights `1/(d+1)`: eigenvalues `1 − 2k/(d+1)`, so
/// `δ = 2/(d+1)` (both sides equal).
pub fn hypercube_gap(dim: u32) -> f64 {
    2.0 / (dim as f64 + 1.0)
}

/// Star with `n ≥ 3` nodes and MH weights `1/n`: `W = I − L/n` with Laplacian eigenvalues
/// `0, 1 (n−2 times), n`, so `λ2 = 1 − 1/n`, `λn = 0` and `δ = 1/n`.
pub fn star_gap(n: usize) -> f64 {
    1.0 / n as f64
}

/// Not a closed form: the Alon–Boppana/Friedman value `1 − (1 + 2√(k−1))/(k+1)` that random
/// `k`-regular graphs approach (MH weights `1/(k+1)`), shown for context.
pub fn random_regular_ramanujan(k: usize) -> f64 {
    let k = k as f64;
    1.0 - (1.0 + 2.0 * (k - 1.0).sqrt()) / (k + 1.0)
}
