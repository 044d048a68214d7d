//! Per-peer compute speed: how much virtual time a peer's local steps take.
//!
//! Every peer has a fixed speed factor drawn once from the seed (log-normal spread around 1,
//! so most peers are alike and a few are slow), and a chosen fraction are stragglers that are
//! `slowdown` times slower still. A round of H local steps costs
//! `overhead + H · step_ms · factor`.

use crate::error::InvalidSetting;
use rand::Rng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, LogNormal};
use serde::{Deserialize, Serialize};

use murmur_gossip::peer::Micros;

/// Slow peers.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Stragglers {
    /// Fraction of peers that are slow (rounded to the nearest count, at least one when > 0).
    pub fraction: f64,
    /// How many times slower they compute.
    pub slowdown: f64,
}

/// Compute model shared by all peers of a run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ComputeConfig {
    /// Virtual time of one local step (one minibatch) on a peer of speed 1, milliseconds.
    pub step_ms: f64,
    /// Fixed cost of a compute slot (compression, bookkeeping), milliseconds.
    pub overhead_ms: f64,
    /// σ of the log-normal speed factor (0: every peer equally fast).
    pub spread: f64,
    /// Optional slow peers.
    pub stragglers: Option<Stragglers>,
}

impl Default for ComputeConfig {
    fn default() -> Self {
        ComputeConfig {
            step_ms: 10.0,
            overhead_ms: 0.1,
            spread: 0.0,
            stragglers: None,
        }
    }
}

impl ComputeConfig {
    /// Checks ranges.
    pub fn validate(&self) -> Result<(), InvalidSetting> {
        for (key, v) in [
            ("step_ms", self.step_ms),
            ("overhead_ms", self.overhead_ms),
            ("spread", self.spread),
        ] {
            if !(v.is_finite() && v >= 0.0) {
                return Err(InvalidSetting::new(
                    format!("compute.{key}"),
                    format!("= {v} must be a finite number >= 0"),
                ));
            }
        }
        if let Some(s) = &self.stragglers
            && !((0.0..=1.0).contains(&s.fraction) && s.slowdown >= 1.0)
        {
            return Err(InvalidSetting::new(
                "compute.stragglers",
                format!(
                    "= {{ fraction = {}, slowdown = {} }} needs fraction in [0, 1] and slowdown >= 1",
                    s.fraction, s.slowdown
                ),
            ));
        }
        Ok(())
    }

    /// Speed factors (time multipliers) of `peers` peers, and which are stragglers.
    pub fn factors(&self, peers: usize, rng: &mut ChaCha8Rng) -> (Vec<f64>, Vec<bool>) {
        let mut factors: Vec<f64> = if self.spread > 0.0 {
            let d = LogNormal::new(0.0, self.spread).expect("spread >= 0");
            (0..peers).map(|_| d.sample(rng)).collect()
        } else {
            vec![1.0; peers]
        };
        let mut slow = vec![false; peers];
        if let Some(s) = &self.stragglers {
            let mut count = (s.fraction * peers as f64).round() as usize;
            if s.fraction > 0.0 {
                count = count.max(1);
            }
            let mut ids: Vec<usize> = (0..peers).collect();
            ids.shuffle(rng);
            for &i in ids.iter().take(count.min(peers)) {
                factors[i] *= s.slowdown;
                slow[i] = true;
            }
        }
        // Keep the generator's position independent of the straggler option.
        let _: u64 = rng.random();
        (factors, slow)
    }

    /// Virtual duration of a compute slot running `steps` local steps at speed `factor`.
    pub fn duration(&self, steps: u32, factor: f64) -> Micros {
        let ms = self.overhead_ms + f64::from(steps) * self.step_ms * factor;
        ((ms * 1000.0).round() as Micros).max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn an_out_of_range_setting_is_refused_with_its_key() {
        let bad = |c: ComputeConfig| c.validate().unwrap_err().key;
        let step = ComputeConfig {
            step_ms: -1.0,
            ..ComputeConfig::default()
        };
        assert_eq!(bad(step), "compute.step_ms");
        let spread = ComputeConfig {
            spread: f64::NAN,
            ..ComputeConfig::default()
        };
        assert_eq!(bad(spread), "compute.spread");
        let stragglers = ComputeConfig {
            stragglers: Some(Stragglers {
                fraction: 1.5,
                slowdown: 2.0,
            }),
            ..ComputeConfig::default()
        };
        assert_eq!(bad(stragglers), "compute.stragglers");
        assert!(ComputeConfig::default().validate().is_ok());
    }

    #[test]
    fn stragglers_are_the_requested_fraction_and_slower() {
        let c = ComputeConfig {
            stragglers: Some(Stragglers {
                fraction: 0.1,
                slowdown: 8.0,
            }),
            ..ComputeConfig::default()
        };
        let (f, slow) = c.factors(100, &mut ChaCha8Rng::seed_from_u64(1));
        assert_eq!(slow.iter().filter(|s| **s).count(), 10);
        for (x, s) in f.iter().zip(&slow) {
            assert_eq!(*x, if *s { 8.0 } else { 1.0 });
        }
        assert_eq!(c.duration(2, 8.0), 160_100);
    }
}
