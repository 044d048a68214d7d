//! Stochastic gradient descent with momentum, weight decay and learning-rate schedules.
//!
//! The update follows PyTorch's `torch.optim.SGD` (Sutskever et al. 2013 for Nesterov):
//! `g ← g + wd·p`, `v ← μ·v + g`, then `p ← p − η·v` (heavy-ball) or `p ← p − η·(g + μ·v)`
//! (Nesterov). The rate `η` at step `t` is `lr × warm-up(t) × schedule(t)`.

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

/// SGD settings (TOML: `[optimizer] lr = 0.1, momentum = 0.9, schedule = "cosine"`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct OptimizerConfig {
    /// Base learning rate.
    pub lr: f32,
    /// Momentum coefficient μ (0: plain SGD).
    pub momentum: f32,
    /// Nesterov momentum instead of heavy-ball.
    pub nesterov: bool,
    /// Coupled weight decay (added to the gradient), on every parameter.
    pub weight_decay: f32,
    /// Learning-rate schedule.
    pub schedule: Schedule,
    /// Linear warm-up: the rate grows as `(t + 1) / warmup_steps` over the first steps.
    pub warmup_steps: u64,
}

impl Default for OptimizerConfig {
    /// `lr = 0.1`, heavy-ball momentum 0.9, no weight decay, cosine decay over the run.
    fn default() -> Self {
        OptimizerConfig {
            lr: 0.1,
            momentum: 0.9,
            nesterov: false,
            weight_decay: 0.0,
            schedule: Schedule::Cosine {
                total_steps: 0,
                floor: 0.0,
            },
            warmup_steps: 0,
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
