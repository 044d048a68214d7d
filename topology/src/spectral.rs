//! Spectral gap `δ = 1 − max(|λ2|, |λn|)` of a symmetric doubly stochastic `W`.
//!
//! Both sides of the gap are computed directly as small positive numbers rather than as
//! `1 − λ`, so a gap of 1e-6 keeps its relative accuracy:
//! - `1 − λ2` is the smallest eigenvalue of the Laplacian `L = I − W` on the subspace `1⊥`
//!   (the all-ones vector is its null vector);
//! - `1 + λn` is the smallest eigenvalue of `I + W`.
//!
//! Small matrices (`n ≤ DENSE_LIMIT`) use a dense symmetric eigen-decomposition (nalgebra).
//! Larger ones use Lanczos with full reorthogonalization:
//! - on `L⁻¹` restricted to `1⊥` (shift-invert at 0), applying `L⁻¹` by conjugate gradients.
//!   Inversion turns the tiny, crowded bottom of `L`'s spectrum (ring: `μ_k ∝ k²`) into a
//!   well separated top (`1/μ_k ∝ 1/k²`), so a few dozen Lanczos steps give `1 − λ2` to near
//!   machine relative precision;
//! - on `I + W` directly for `1 + λn`, stopped as soon as it is either converged or provably
//!   larger than `1 − λ2` (then it does not decide the gap).

use nalgebra::{DMatrix, DVector};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::mixing::{MixingError, MixingMatrix};

/// Largest `n` handled by the dense eigen-decomposition.
pub const DENSE_LIMIT: usize = 256;

/// Seed of the Lanczos start vectors (fixed: the gap of a matrix is a property, not a sample).
const START_SEED: u64 = 0x5eed_0f1a_4c20_5eed;

/// How a spectrum was computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Method {
    /// Dense symmetric eigen-decomposition.
    Dense,
    /// Lanczos (shift-invert with conjugate gradients for `1 − λ2`).
    Lanczos,
}

/// The extreme eigenvalues that decide how fast gossip averages.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Spectrum {
    /// `δ = min(1 − λ2, 1 + λn)`.
    pub gap: f64,
    /// `1 − λ2` (the algebraic connectivity of `I − W`).
    pub one_minus_lambda2: f64,
    /// `1 + λn`. With [`Method::Lanczos`] this is an upper estimate accurate to
    /// `lambda_min_residual` when it does not decide the gap.
    pub one_plus_lambda_min: f64,
    /// Residual bound of `one_plus_lambda_min` (0 for the dense method).
    pub lambda_min_residual: f64,
    /// Second largest eigenvalue `λ2`.
    pub lambda2: f64,
    /// Smallest eigenvalue `λn`.
    pub lambda_min: f64,
    /// The method used.
    pub method: Method,
    /// Lanczos steps (both sides) for the iterative method, 0 for dense.
    pub lanczos_steps: usize,
    /// Conjugate-gradient iterations spent applying `L⁻¹`, 0 for dense.
    pub cg_iterations: usize,
}

impl Spectrum {
    fn from_sides(a: f64, b: f64, b_residual: f64, method: Method) -> Self {
        Spectrum {
            gap: a.min(b),
            one_minus_lambda2: a,
            one_plus_lambda_min: b,
            lambda_min_residual: b_residual,
            lambda2: 1.0 - a,
            lambda_min: b - 1.0,
            method,
            lanczos_steps: 0,
            cg_iterations: 0,
        }
    }
}

/// Validate `w` and compute its spectrum with the method suited to its size.
pub fn spectrum(w: &MixingMatrix) -> Result<Spectrum, MixingError> {
    if w.n() <= DENSE_LIMIT {
        spectrum_dense(w)
    } else {
        spectrum_lanczos(w)
    }
}

/// Dense method (any `n`, but `O(n³)`).
pub fn spectrum_dense(w: &MixingMatrix) -> Result<Spectrum, MixingError> {
    w.validate()?;
    let n = w.n();
    if n <= 1 {
        return Ok(Spectrum::from_sides(1.0, 1.0, 0.0, Method::Dense));
    }
    let mut mu: Vec<f64> = w
        .laplacian_dense()
        .symmetric_eigenvalues()
        .iter()
        .copied()
        .collect();
    mu.sort_by(f64::total_cmp);
    // mu[0] ≈ 0 belongs to the all-ones vector; the support is connected, so mu[1] > 0.
    Ok(Spectrum::from_sides(
        mu[1],
        2.0 - mu[n - 1],
        0.0,
        Method::Dense,
    ))
}

/// All eigenvalues of `W`, largest first (dense).
pub fn eigenvalues_dense(w: &MixingMatrix) -> Vec<f64> {
    let mut lambda: Vec<f64> = w
        .to_dense()
        .symmetric_eigenvalues()
        .iter()
        .copied()
        .collect();
    lambda.sort_by(|a, b| b.total_cmp(a));
    lambda
}

/// Iterative method (Lanczos; see the module docs).
pub fn spectrum_lanczos(w: &MixingMatrix) -> Result<Spectrum, MixingError> {
    w.validate()?;
    let n = w.n();
    if n <= 2 {
        return spectrum_dense(w);
    }
    let mut rng = ChaCha8Rng::seed_from_u64(START_SEED);

    // 1 − λ2: top eigenvalue of L⁻¹ on 1⊥.
    let mut cg_iterations = 0;
    let mut scratch = CgScratch::new(n);
    let top = lanczos_extreme(
        n,
        &mut rng,
        Extreme::Largest,
        |x, out| cg_iterations += conjugate_gradient_laplacian(w, x, out, &mut scratch),
        |theta, residual| residual <= 1e-10 * theta.abs(),
        100,
    );
    let a = 1.0 / top.value;

    // 1 + λn: bottom eigenvalue of I + W on 1⊥, stopped once it cannot decide the gap.
    let bottom = lanczos_extreme(
        n,
        &mut rng,
        Extreme::Smallest,
        |x, out| {
            w.apply_into(x, out);
            for (o, xi) in out.iter_mut().zip(x) {
                *o += xi;
            }
        },
        |theta, residual| residual <= 1e-12 || theta - residual > a * (1.0 + 1e-9),
        600,
    );
    let b = bottom.value;
    let mut s = Spectrum::from_sides(a, b, bottom.residual, Method::Lanczos);
    s.lanczos_steps = top.steps + bottom.steps;
    s.cg_iterations = cg_iterations;
    Ok(s)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Extreme {
    Largest,
    Smallest,
}

#[derive(Debug)]
struct Ritz {
    value: f64,
    residual: f64,
    steps: usize,
}

/// Lanczos with full (twice-applied) reorthogonalization on the subspace orthogonal to the
/// all-ones vector. Returns the extreme Ritz value, its residual bound `β_m |s_m|` and the
/// number of steps; stops when `done(θ, residual)` holds, on breakdown, or at `max_steps`.
fn lanczos_extreme(
    n: usize,
    rng: &mut ChaCha8Rng,
    which: Extreme,
    mut operator: impl FnMut(&[f64], &mut [f64]),
    done: impl Fn(f64, f64) -> bool,
    max_steps: usize,
) -> Ritz {
    let max_steps = max_steps.min(n - 1);
    let mut v: Vec<f64> = (0..n).map(|_| rng.random::<f64>() - 0.5).collect();
    project_out_mean(&mut v);
    normalize(&mut v);
    let mut basis: Vec<Vec<f64>> = vec![v];
    let mut alphas: Vec<f64> = Vec::new();
    let mut betas: Vec<f64> = Vec::new();
    let mut w = vec![0.0; n];
    let mut last = Ritz {
        value: f64::NAN,
        residual: f64::INFINITY,
        steps: 0,
    };
    for step in 1..=max_steps {
        let current = basis.last().expect("basis is never empty");
        operator(current, &mut w);
        project_out_mean(&mut w);
        let alpha = dot(&w, current);
        alphas.push(alpha);
        for _ in 0..2 {
            for q in &basis {
                let c = dot(&w, q);
                axpy(-c, q, &mut w);
            }
        }
        let beta = norm(&w);
        let (value, last_component) = tridiagonal_extreme(&alphas, &betas, which);
        let residual = beta * last_component.abs();
        last = Ritz {
            value,
            residual,
            steps: step,
        };
        // Breakdown means the Krylov space is invariant: the Ritz values are exact.
        if beta <= 1e-14 * value.abs().max(1e-300) || done(value, residual) {
            break;
        }
        betas.push(beta);
        w.iter_mut().for_each(|x| *x /= beta);
        basis.push(std::mem::replace(&mut w, vec![0.0; n]));
    }
    last
}

/// Extreme eigenvalue of the symmetric tridiagonal matrix and the last component of its
/// normalized eigenvector.
fn tridiagonal_extreme(alphas: &[f64], betas: &[f64], which: Extreme) -> (f64, f64) {
    let m = alphas.len();
    let mut t = DMatrix::zeros(m, m);
    for i in 0..m {
        t[(i, i)] = alphas[i];
        if i + 1 < m {
            t[(i, i + 1)] = betas[i];
            t[(i + 1, i)] = betas[i];
        }
    }
    let eig = t.symmetric_eigen();
    let values: &DVector<f64> = &eig.eigenvalues;
    let mut best = 0;
    for i in 1..m {
        let better = match which {
            Extreme::Largest => values[i] > values[best],
            Extreme::Smallest => values[i] < values[best],
        };
        if better {
            best = i;
        }
    }
    (values[best], eig.eigenvectors[(m - 1, best)])
}

#[derive(Debug)]
struct CgScratch {
    r: Vec<f64>,
    p: Vec<f64>,
    ap: Vec<f64>,
}

impl CgScratch {
    fn new(n: usize) -> Self {
        CgScratch {
            r: vec![0.0; n],
            p: vec![0.0; n],
            ap: vec![0.0; n],
        }
    }
}

/// Solve `L x = b` on `1⊥` by conjugate gradients (`b` must be orthogonal to the ones vector;
/// `L` is positive definite there when the graph is connected). Returns the iteration count.
fn conjugate_gradient_laplacian(
    w: &MixingMatrix,
    b: &[f64],
    x: &mut [f64],
    s: &mut CgScratch,
) -> usize {
    let n = b.len();
    x.iter_mut().for_each(|v| *v = 0.0);
    s.r.copy_from_slice(b);
    project_out_mean(&mut s.r);
    s.p.copy_from_slice(&s.r);
    let b_norm = norm(&s.r);
    if b_norm == 0.0 {
        return 0;
    }
    let tolerance = 1e-13 * b_norm;
    let mut rr = dot(&s.r, &s.r);
    let max_iterations = 20 * n + 100;
    let mut iterations = 0;
    while iterations < max_iterations {
        iterations += 1;
        w.apply_laplacian_into(&s.p, &mut s.ap);
        let pap = dot(&s.p, &s.ap);
        if pap <= 0.0 {
            break;
        }
        let alpha = rr / pap;
        axpy(alpha, &s.p, x);
        axpy(-alpha, &s.ap, &mut s.r);
        if iterations % 50 == 0 {
            // Rounding drifts r out of 1⊥; the null direction would otherwise grow.
            project_out_mean(&mut s.r);
        }
        let rr_new = dot(&s.r, &s.r);
        if rr_new.sqrt() <= tolerance {
            break;
        }
        let beta = rr_new / rr;
        rr = rr_new;
        for (p, r) in s.p.iter_mut().zip(&s.r) {
            *p = r + beta * *p;
        }
    }
    project_out_mean(x);
    iterations
}

fn project_out_mean(v: &mut [f64]) {
    let mean = v.iter().sum::<f64>() / v.len() as f64;
    v.iter_mut().for_each(|x| *x -= mean);
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn norm(a: &[f64]) -> f64 {
    dot(a, a).sqrt()
}

fn normalize(a: &mut [f64]) {
    let n = norm(a);
    a.iter_mut().for_each(|x| *x /= n);
}

fn axpy(alpha: f64, x: &[f64], y: &mut [f64]) {
    for (yi, xi) in y.iter_mut().zip(x) {
        *yi += alpha * xi;
    }
}
