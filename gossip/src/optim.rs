//! The local optimizers: stochastic gradient descent with momentum, weight decay and
//! learning-rate schedules, and AdamW; both act on one flat `f32` parameter vector, so they
//! behave the same for every model family and their state checkpoints as plain vectors.
//!
//! SGD follows PyTorch's `torch.optim.SGD` (Sutskever et al. 2013 for Nesterov):
//! `g ← g + wd·p`, `v ← μ·v + g`, then `p ← p − η·v` (heavy-ball) or `p ← p − η·(g + μ·v)`
//! (Nesterov). AdamW follows Loshchilov & Hutter, "Decoupled Weight Decay Regularization"
//! (ICLR 2019), as `torch.optim.AdamW` computes it (see [`AdamW`]). The rate `η` at step `t` is
//! `lr × warm-up(t) × schedule(t)` for both ([`OptimizerConfig::lr_at`]); [`Optimizer`] picks
//! one from [`OptimizerConfig::kind`].

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Learning-rate multiplier over steps.
#[derive(Clone, Debug, PartialEq, Default)]
pub enum Schedule {
    /// Always 1.
    #[default]
    Constant,
    /// Multiply by `gamma` every `every` steps.
    Step {
        /// Steps between decays (≥ 1).
        every: u64,
        /// Decay factor.
        gamma: f32,
    },
    /// Cosine from 1 down to `floor` over `total_steps`, then `floor`. `total_steps == 0`
    /// means "the run's length", filled in by [`OptimizerConfig::with_horizon`]; if never
    /// filled it behaves as constant.
    Cosine {
        /// Length of the decay.
        total_steps: u64,
        /// Final multiplier.
        floor: f32,
    },
}

impl Schedule {
    /// Multiplier at step `t` (0-based).
    pub fn factor(&self, t: u64) -> f32 {
        match *self {
            Schedule::Constant => 1.0,
            Schedule::Step { every, gamma } => {
                gamma.powi((t / every.max(1)).min(i32::MAX as u64) as i32)
            }
            Schedule::Cosine { total_steps, floor } => {
                if total_steps == 0 {
                    return 1.0;
                }
                let frac = (t as f64 / total_steps as f64).min(1.0);
                let c = 0.5 * (1.0 + (std::f64::consts::PI * frac).cos());
                (f64::from(floor) + (1.0 - f64::from(floor)) * c) as f32
            }
        }
    }
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Schedule::Constant => write!(f, "constant"),
            Schedule::Step { every, gamma } => write!(f, "step:{every}:{gamma}"),
            Schedule::Cosine { total_steps, floor } => write!(f, "cosine:{total_steps}:{floor}"),
        }
    }
}

impl FromStr for Schedule {
    type Err = String;

    /// `constant`, `step:EVERY:GAMMA`, `cosine`, `cosine:TOTAL`, `cosine:TOTAL:FLOOR`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let parts: Vec<&str> = s.trim().split(':').map(str::trim).collect();
        let bad = || {
            format!(
                "bad schedule {s:?}: expected constant, step:EVERY:GAMMA, cosine[:TOTAL[:FLOOR]]"
            )
        };
        match parts.as_slice() {
            ["constant"] => Ok(Schedule::Constant),
            ["step", every, gamma] => {
                let every: u64 = every.parse().map_err(|_| bad())?;
                let gamma: f32 = gamma.parse().map_err(|_| bad())?;
                if every == 0 || !(gamma > 0.0 && gamma.is_finite()) {
                    return Err(bad());
                }
                Ok(Schedule::Step { every, gamma })
            }
            ["cosine", rest @ ..] if rest.len() <= 2 => {
                let total_steps = rest
                    .first()
                    .map_or(Ok(0), |t| t.parse())
                    .map_err(|_| bad())?;
                let floor: f32 = rest
                    .get(1)
                    .map_or(Ok(0.0), |t| t.parse())
                    .map_err(|_| bad())?;
                if !(0.0..=1.0).contains(&floor) {
                    return Err(bad());
                }
                Ok(Schedule::Cosine { total_steps, floor })
            }
            _ => Err(bad()),
        }
    }
}

crate::data::serde_via_str!(Schedule);

/// Which update rule [`Optimizer::new`] builds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OptimizerKind {
    /// [`Sgd`]: plain, heavy-ball or Nesterov momentum, coupled weight decay.
    #[default]
    Sgd,
    /// [`AdamW`]: Adam moments with bias correction, decoupled weight decay.
    AdamW,
}

/// Optimizer settings (TOML: `[optimizer] lr = 0.1, momentum = 0.9, schedule = "cosine"`, or
/// `kind = "adamw", lr = 3e-3, weight_decay = 0.01`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct OptimizerConfig {
    /// Update rule: `"sgd"` (the default) or `"adamw"`.
    pub kind: OptimizerKind,
    /// Base learning rate.
    pub lr: f32,
    /// Momentum coefficient μ (0: plain SGD).
    pub momentum: f32,
    /// Nesterov momentum instead of heavy-ball.
    pub nesterov: bool,
    /// Weight decay on every parameter: coupled (added to the gradient) for SGD, decoupled
    /// (`p ← p − η·wd·p`, apart from the adaptive step) for AdamW.
    pub weight_decay: f32,
    /// Learning-rate schedule.
    pub schedule: Schedule,
    /// Linear warm-up: the rate grows as `(t + 1) / warmup_steps` over the first steps.
    pub warmup_steps: u64,
    /// AdamW: decay of the first-moment (mean) estimate, PyTorch's default 0.9.
    pub beta1: f32,
    /// AdamW: decay of the second-moment (uncentred variance) estimate, default 0.999.
    pub beta2: f32,
    /// AdamW: added to the root of the second moment, default 1e-8.
    pub eps: f32,
    /// AdamW: estimate the second moment of the mean gradient of this many peers instead of
    /// this peer's own (0: off, PyTorch's AdamW). A gossip peer's gradient on its small batch
    /// carries the noise of that batch, so its `v` is inflated by the batch's variance and its
    /// normalised step in noise-dominated coordinates is up to √n smaller than all-reduce's
    /// on the mean of n such batches. With this set, the learner computes each gradient on the
    /// two halves of the batch; their half-difference squared estimates the batch's noise
    /// variance s² per coordinate, kept as a second average `w` beside `v`, and the step
    /// divides by `√max(v − (1 − 1/n)·w, v/n)`: the second moment the mean of n independent
    /// batches has (see [`AdamW::step_with_noise`]). Needs an even batch.
    pub second_moment_peers: u32,
}

impl Default for OptimizerConfig {
    /// SGD, `lr = 0.1`, heavy-ball momentum 0.9, no weight decay, cosine decay over the run;
    /// AdamW's betas and eps at PyTorch's defaults (0.9, 0.999, 1e-8) should `kind` change.
    fn default() -> Self {
        OptimizerConfig {
            kind: OptimizerKind::Sgd,
            lr: 0.1,
            momentum: 0.9,
            nesterov: false,
            weight_decay: 0.0,
            schedule: Schedule::Cosine {
                total_steps: 0,
                floor: 0.0,
            },
            warmup_steps: 0,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            second_moment_peers: 0,
        }
    }
}

impl OptimizerConfig {
    /// The rate at step `t`.
    pub fn lr_at(&self, t: u64) -> f32 {
        let warm = if t < self.warmup_steps {
            (t + 1) as f32 / self.warmup_steps as f32
        } else {
            1.0
        };
        self.lr * warm * self.schedule.factor(t)
    }

    /// Checks every value; the error names the field (as in TOML) and its accepted range.
    /// A rate of NaN, 0 or below trains nothing (or diverges) without any other sign.
    pub fn validate(&self) -> Result<(), String> {
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return Err(format!("lr = {} must be a finite number > 0", self.lr));
        }
        if !(0.0..1.0).contains(&self.momentum) {
            return Err(format!("momentum = {} must be in [0, 1)", self.momentum));
        }
        if !(self.weight_decay.is_finite() && self.weight_decay >= 0.0) {
            return Err(format!(
                "weight_decay = {} must be a finite number >= 0",
                self.weight_decay
            ));
        }
        if self.second_moment_peers > 0 && self.kind != OptimizerKind::AdamW {
            return Err(format!(
                "second_moment_peers = {} applies to kind = \"adamw\" only",
                self.second_moment_peers
            ));
        }
        Ok(())
    }

    /// Fills a cosine schedule's open length (`total_steps == 0`) with the run's length.
    pub fn with_horizon(mut self, total_steps: u64) -> Self {
        if let Schedule::Cosine {
            total_steps: t @ 0, ..
        } = &mut self.schedule
        {
            *t = total_steps;
        }
        self
    }
}

/// Optimizer state that a checkpoint must carry.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SgdState {
    /// Momentum buffer (empty when momentum is 0).
    pub velocity: Vec<f32>,
    /// Steps taken.
    pub steps: u64,
}

/// The optimizer: configuration plus momentum buffer and step counter.
#[derive(Clone, Debug)]
pub struct Sgd {
    config: OptimizerConfig,
    velocity: Vec<f32>,
    steps: u64,
}

impl Sgd {
    /// An optimizer for `dim` parameters.
    pub fn new(config: OptimizerConfig, dim: usize) -> Self {
        let velocity = if config.momentum != 0.0 {
            vec![0.0; dim]
        } else {
            Vec::new()
        };
        Sgd {
            config,
            velocity,
            steps: 0,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &OptimizerConfig {
        &self.config
    }

    /// Steps taken so far.
    pub fn steps(&self) -> u64 {
        self.steps
    }

    /// The rate the next step will use.
    pub fn current_lr(&self) -> f32 {
        self.config.lr_at(self.steps)
    }

    /// Applies one update to `params` from `grad`; returns the rate used.
    pub fn step(&mut self, params: &mut [f32], grad: &[f32]) -> f32 {
        assert_eq!(params.len(), grad.len(), "parameter and gradient lengths");
        let lr = self.current_lr();
        let OptimizerConfig {
            momentum: mu,
            nesterov,
            weight_decay: wd,
            ..
        } = self.config;
        self.steps += 1;
        if mu == 0.0 {
            for (p, &g) in params.iter_mut().zip(grad) {
                *p -= lr * (g + wd * *p);
            }
            return lr;
        }
        assert_eq!(
            self.velocity.len(),
            params.len(),
            "optimizer built for another dimension"
        );
        for ((p, v), &g) in params.iter_mut().zip(&mut self.velocity).zip(grad) {
            let g = g + wd * *p;
            *v = mu * *v + g;
            *p -= lr * if nesterov { g + mu * *v } else { *v };
        }
        lr
    }

    /// Momentum buffer and step counter.
    pub fn state(&self) -> SgdState {
        SgdState {
            velocity: self.velocity.clone(),
            steps: self.steps,
        }
    }

    /// Restores [`Sgd::state`]; refuses a buffer of the wrong length, leaving `self` unchanged.
    pub fn restore(&mut self, state: SgdState) -> Result<(), String> {
        if state.velocity.len() != self.velocity.len() {
            return Err(format!(
                "momentum buffer has {} entries, expected {}",
                state.velocity.len(),
                self.velocity.len()
            ));
        }
        self.velocity = state.velocity;
        self.steps = state.steps;
        Ok(())
    }
}

/// AdamW state that a checkpoint must carry.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AdamWState {
    /// First-moment estimate `m`, one entry per parameter.
    pub m: Vec<f32>,
    /// Second-moment estimate `v`, one entry per parameter.
    pub v: Vec<f32>,
    /// Steps taken (the bias corrections and the schedule depend on it).
    pub steps: u64,
    /// Noise-variance average `w` of [`OptimizerConfig::second_moment_peers`] (empty when off;
    /// a state saved without it restores as zeros).
    #[serde(default)]
    pub noise: Vec<f32>,
}

/// AdamW (Loshchilov & Hutter 2019) computed as `torch.optim.AdamW` does, at step `t` (1-based)
/// with rate `η = lr_at(t − 1)`:
/// `p ← p·(1 − η·wd)`, `m ← β₁·m + (1 − β₁)·g`, `v ← β₂·v + (1 − β₂)·g²`, then
/// `p ← p − (η / (1 − β₁ᵗ))·m / (√v / √(1 − β₂ᵗ) + ε)`.
/// `momentum` and `nesterov` of the configuration are not used.
#[derive(Clone, Debug)]
pub struct AdamW {
    config: OptimizerConfig,
    m: Vec<f32>,
    v: Vec<f32>,
    /// `w`, the average of the batch-noise variance estimates (empty unless
    /// `second_moment_peers > 0`).
    noise: Vec<f32>,
    steps: u64,
}

impl AdamW {
    /// An optimizer for `dim` parameters, moments at zero.
    pub fn new(config: OptimizerConfig, dim: usize) -> Self {
        let noise = if config.second_moment_peers > 0 {
            vec![0.0; dim]
        } else {
            Vec::new()
        };
        AdamW {
            config,
            m: vec![0.0; dim],
            v: vec![0.0; dim],
            noise,
            steps: 0,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &OptimizerConfig {
        &self.config
    }

    /// Steps taken so far.
    pub fn steps(&self) -> u64 {
        self.steps
    }

    /// The rate the next step will use.
    pub fn current_lr(&self) -> f32 {
        self.config.lr_at(self.steps)
    }

    /// Applies one update to `params` from `grad`; returns the rate used. With
    /// `second_moment_peers` set the noise estimate is taken as zero: use
    /// [`AdamW::step_with_noise`].
    pub fn step(&mut self, params: &mut [f32], grad: &[f32]) -> f32 {
        self.update(params, grad, None)
    }

    /// [`AdamW::step`] for `second_moment_peers = n`, with `noise_sq[k]` an unbiased estimate
    /// of the variance of `grad[k]` over batches (the learner's half-batch difference
    /// squared). `w ← β₂·w + (1 − β₂)·noise_sq` and the step divides by
    /// `√max(v − (1 − 1/n)·w, v/n)`: E[g²] is the mean gradient's square plus the batch
    /// variance s², the mean of n independent batches has only s²/n of it, and the floor v/n
    /// (the smallest second moment such a mean can have) keeps a noisy estimate from
    /// dividing by almost nothing. Without `second_moment_peers` it is [`AdamW::step`].
    pub fn step_with_noise(&mut self, params: &mut [f32], grad: &[f32], noise_sq: &[f32]) -> f32 {
        assert_eq!(grad.len(), noise_sq.len(), "gradient and noise lengths");
        self.update(params, grad, Some(noise_sq))
    }

    fn update(&mut self, params: &mut [f32], grad: &[f32], noise_sq: Option<&[f32]>) -> f32 {
        assert_eq!(params.len(), grad.len(), "parameter and gradient lengths");
        assert_eq!(
            self.m.len(),
            params.len(),
            "optimizer built for another dimension"
        );
        let lr = self.current_lr();
        self.steps += 1;
        let OptimizerConfig {
            beta1: b1,
            beta2: b2,
            eps,
            weight_decay: wd,
            second_moment_peers: n,
            ..
        } = self.config;
        let t = i32::try_from(self.steps).unwrap_or(i32::MAX);
        // Bias corrections in f64: 1 − β₂ᵗ is tiny in the first steps.
        let step_size = (f64::from(lr) / (1.0 - f64::from(b1).powi(t))) as f32;
        let inv_sqrt_c2 = (1.0 / (1.0 - f64::from(b2).powi(t)).sqrt()) as f32;
        let decay = 1.0 - lr * wd;
        // `noise` is allocated exactly when `second_moment_peers > 0`.
        if self.noise.is_empty() {
            for (((p, m), v), &g) in params
                .iter_mut()
                .zip(&mut self.m)
                .zip(&mut self.v)
                .zip(grad)
            {
                *p *= decay;
                *m = b1 * *m + (1.0 - b1) * g;
                *v = b2 * *v + (1.0 - b2) * g * g;
                *p -= step_size * *m / (v.sqrt() * inv_sqrt_c2 + eps);
            }
            return lr;
        }
        let inv_n = 1.0 / n as f32;
        let excess = 1.0 - inv_n;
        let zeros;
        let noise_sq = match noise_sq {
            Some(s) => s,
            None => {
                zeros = vec![0.0; grad.len()];
                &zeros
            }
        };
        for (((((p, m), v), w), &g), &s2) in params
            .iter_mut()
            .zip(&mut self.m)
            .zip(&mut self.v)
            .zip(&mut self.noise)
            .zip(grad)
            .zip(noise_sq)
        {
            *p *= decay;
            *m = b1 * *m + (1.0 - b1) * g;
            *v = b2 * *v + (1.0 - b2) * g * g;
            *w = b2 * *w + (1.0 - b2) * s2;
            let mean_v = (*v - excess * *w).max(*v * inv_n);
            *p -= step_size * *m / (mean_v.sqrt() * inv_sqrt_c2 + eps);
        }
        lr
    }

    /// Moments and step counter.
    pub fn state(&self) -> AdamWState {
        AdamWState {
            m: self.m.clone(),
            v: self.v.clone(),
            steps: self.steps,
            noise: self.noise.clone(),
        }
    }

    /// Restores [`AdamW::state`]; refuses moments of the wrong length, leaving `self` unchanged.
    pub fn restore(&mut self, state: AdamWState) -> Result<(), String> {
        let dim = self.m.len();
        if state.m.len() != dim || state.v.len() != dim {
            return Err(format!(
                "AdamW moments have {} and {} entries, expected {dim}",
                state.m.len(),
                state.v.len()
            ));
        }
        // A state saved before the noise average existed (or with it off) restores with
        // w = 0; one saved with it, into an optimizer without it, drops it.
        let noise = match (self.noise.len(), state.noise.len()) {
            (0, _) => Vec::new(),
            (_, 0) => vec![0.0; dim],
            (_, l) if l == dim => state.noise,
            (_, l) => {
                return Err(format!(
                    "AdamW noise average has {l} entries, expected {dim}"
                ));
            }
        };
        self.m = state.m;
        self.v = state.v;
        self.noise = noise;
        self.steps = state.steps;
        Ok(())
    }
}

/// The optimizer [`OptimizerConfig::kind`] names.
#[derive(Clone, Debug)]
pub enum Optimizer {
    /// Stochastic gradient descent.
    Sgd(Sgd),
    /// AdamW.
    AdamW(AdamW),
}

/// State of an [`Optimizer`], whichever kind it is.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum OptimizerState {
    /// SGD's momentum buffer and step counter.
    Sgd(SgdState),
    /// AdamW's moments and step counter.
    AdamW(AdamWState),
}

impl Optimizer {
    /// The optimizer `config.kind` names, for `dim` parameters.
    pub fn new(config: OptimizerConfig, dim: usize) -> Self {
        match config.kind {
            OptimizerKind::Sgd => Optimizer::Sgd(Sgd::new(config, dim)),
            OptimizerKind::AdamW => Optimizer::AdamW(AdamW::new(config, dim)),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &OptimizerConfig {
        match self {
            Optimizer::Sgd(o) => o.config(),
            Optimizer::AdamW(o) => o.config(),
        }
    }

    /// Steps taken so far.
    pub fn steps(&self) -> u64 {
        match self {
            Optimizer::Sgd(o) => o.steps(),
            Optimizer::AdamW(o) => o.steps(),
        }
    }

    /// The rate the next step will use.
    pub fn current_lr(&self) -> f32 {
        match self {
            Optimizer::Sgd(o) => o.current_lr(),
            Optimizer::AdamW(o) => o.current_lr(),
        }
    }

    /// Applies one update to `params` from `grad`; returns the rate used.
    pub fn step(&mut self, params: &mut [f32], grad: &[f32]) -> f32 {
        match self {
            Optimizer::Sgd(o) => o.step(params, grad),
            Optimizer::AdamW(o) => o.step(params, grad),
        }
    }

    /// [`AdamW::step_with_noise`]; SGD ignores `noise_sq`.
    pub fn step_with_noise(&mut self, params: &mut [f32], grad: &[f32], noise_sq: &[f32]) -> f32 {
        match self {
            Optimizer::Sgd(o) => o.step(params, grad),
            Optimizer::AdamW(o) => o.step_with_noise(params, grad, noise_sq),
        }
    }

    /// The state a checkpoint must carry.
    pub fn state(&self) -> OptimizerState {
        match self {
            Optimizer::Sgd(o) => OptimizerState::Sgd(o.state()),
            Optimizer::AdamW(o) => OptimizerState::AdamW(o.state()),
        }
    }

    /// Restores [`Optimizer::state`]; refuses a state of the other kind or of the wrong
    /// length, leaving `self` unchanged.
    pub fn restore(&mut self, state: OptimizerState) -> Result<(), String> {
        match (self, state) {
            (Optimizer::Sgd(o), OptimizerState::Sgd(s)) => o.restore(s),
            (Optimizer::AdamW(o), OptimizerState::AdamW(s)) => o.restore(s),
            (Optimizer::Sgd(_), OptimizerState::AdamW(_)) => {
                Err("state is AdamW's, this optimizer is SGD".into())
            }
            (Optimizer::AdamW(_), OptimizerState::Sgd(_)) => {
                Err("state is SGD's, this optimizer is AdamW".into())
            }
        }
    }
}
