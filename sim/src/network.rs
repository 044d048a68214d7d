//! The simulated network: per-link latency drawn from a distribution, uplink bandwidth
//! (a frame occupies its sender's uplink for `bytes / bandwidth`, so frames from one peer
//! queue behind each other), random loss and reordering, and partitions that cut links.
//!
//! All randomness comes from one seeded generator that is only touched while the engine
//! applies events in their fixed order, so the same seed gives the same deliveries.

use crate::error::InvalidSetting;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, LogNormal, Normal};
use serde::{Deserialize, Serialize};

use murmur_gossip::peer::Micros;

/// One-way propagation delay of a frame, in milliseconds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum LatencyDist {
    /// Always `ms`.
    Constant {
        /// Delay.
        ms: f64,
    },
    /// Uniform in `[min_ms, max_ms]`.
    Uniform {
        /// Lower bound.
        min_ms: f64,
        /// Upper bound.
        max_ms: f64,
    },
    /// Gaussian `mean_ms ± std_ms`, cut at `min_ms` (a WAN link with jitter).
    Normal {
        /// Mean.
        mean_ms: f64,
        /// Standard deviation.
        std_ms: f64,
        /// Floor (no negative or unphysically small delays).
        #[serde(default)]
        min_ms: f64,
    },
    /// Log-normal with the given median and shape σ (heavy tail, as measured on the
    /// Internet), plus a fixed floor.
    LogNormal {
        /// Median of the random part.
        median_ms: f64,
        /// Shape σ of the underlying normal.
        sigma: f64,
        /// Added constant.
        #[serde(default)]
        min_ms: f64,
    },
}

impl Default for LatencyDist {
    fn default() -> Self {
        LatencyDist::Constant { ms: 1.0 }
    }
}

impl LatencyDist {
    /// Draws one delay in microseconds.
    pub fn sample(&self, rng: &mut ChaCha8Rng) -> Micros {
        let ms = match *self {
            LatencyDist::Constant { ms } => ms,
            LatencyDist::Uniform { min_ms, max_ms } => {
                if max_ms > min_ms {
                    rng.random_range(min_ms..=max_ms)
                } else {
                    min_ms
                }
            }
            LatencyDist::Normal {
                mean_ms,
                std_ms,
                min_ms,
            } => {
                let d = Normal::new(mean_ms, std_ms.max(0.0)).expect("std >= 0");
                d.sample(rng).max(min_ms)
            }
            LatencyDist::LogNormal {
                median_ms,
                sigma,
                min_ms,
            } => {
                let d =
                    LogNormal::new(median_ms.max(1e-9).ln(), sigma.max(0.0)).expect("sigma >= 0");
                min_ms + d.sample(rng)
            }
        };
        (ms.max(0.0) * 1000.0).round() as Micros
    }

    /// Smallest delay this distribution can produce, in microseconds.
    pub fn min_micros(&self) -> Micros {
        let ms = match *self {
            LatencyDist::Constant { ms } => ms,
            LatencyDist::Uniform { min_ms, .. } => min_ms,
            LatencyDist::Normal { min_ms, .. } | LatencyDist::LogNormal { min_ms, .. } => min_ms,
        };
        (ms.max(0.0) * 1000.0).round() as Micros
    }

    /// Checks the parameters; the error names the TOML key (`network.latency.min_ms`) and
    /// its accepted range.
    fn validate(&self) -> Result<(), InvalidSetting> {
        let at_least_zero = |key: &str, v: f64| {
            if v.is_finite() && v >= 0.0 {
                Ok(())
            } else {
                Err(InvalidSetting::new(
                    format!("network.latency.{key}"),
                    format!("= {v} must be a finite number >= 0"),
                ))
            }
        };
        match *self {
            LatencyDist::Constant { ms } => at_least_zero("ms", ms),
            LatencyDist::Uniform { min_ms, max_ms } => {
                at_least_zero("min_ms", min_ms)?;
                at_least_zero("max_ms", max_ms)?;
                if min_ms > max_ms {
                    return Err(InvalidSetting::new(
                        "network.latency.min_ms",
                        format!("= {min_ms} must be <= max_ms = {max_ms}"),
                    ));
                }
                Ok(())
            }
            LatencyDist::Normal {
                mean_ms,
                std_ms,
                min_ms,
            } => {
                at_least_zero("mean_ms", mean_ms)?;
                at_least_zero("std_ms", std_ms)?;
                at_least_zero("min_ms", min_ms)
            }
            LatencyDist::LogNormal {
                median_ms,
                sigma,
                min_ms,
            } => {
                if !(median_ms.is_finite() && median_ms > 0.0) {
                    return Err(InvalidSetting::new(
                        "network.latency.median_ms",
                        format!("= {median_ms} must be a finite number > 0"),
                    ));
                }
                at_least_zero("sigma", sigma)?;
                at_least_zero("min_ms", min_ms)
            }
        }
    }
}

/// Link model shared by every link of a run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NetworkConfig {
    /// Propagation delay per frame.
    pub latency: LatencyDist,
    /// σ of a fixed per-link log-normal factor on every delay of that link (peers far apart
    /// stay far apart), clamped to [1/4, 4]; 0: all links alike.
    pub link_spread: f64,
    /// Uplink bandwidth of every peer in megabits per second; 0: infinite.
    pub bandwidth_mbps: f64,
    /// Probability that a frame is lost.
    pub loss: f64,
    /// Probability that a frame is held back by an extra delay (so later frames overtake it).
    pub reorder: f64,
    /// Largest extra delay of a reordered frame, milliseconds (drawn uniformly).
    pub reorder_ms: f64,
    /// How long after a crash or a cut link its ends notice (a TCP/QUIC idle timeout).
    pub detect_ms: f64,
}

impl Default for NetworkConfig {
    fn default() -> Self {
        NetworkConfig {
            latency: LatencyDist::default(),
            link_spread: 0.0,
            bandwidth_mbps: 0.0,
            loss: 0.0,
            reorder: 0.0,
            reorder_ms: 10.0,
            detect_ms: 100.0,
        }
    }
}

impl NetworkConfig {
    /// Checks ranges.
    pub fn validate(&self) -> Result<(), InvalidSetting> {
        self.latency.validate()?;
        for (key, p) in [("loss", self.loss), ("reorder", self.reorder)] {
            if !(0.0..=1.0).contains(&p) {
                return Err(InvalidSetting::new(
                    format!("network.{key}"),
                    format!("= {p} must be a probability in [0, 1]"),
                ));
            }
        }
        for (key, v) in [
            ("bandwidth_mbps", self.bandwidth_mbps),
            ("link_spread", self.link_spread),
            ("reorder_ms", self.reorder_ms),
            ("detect_ms", self.detect_ms),
        ] {
            if !(v.is_finite() && v >= 0.0) {
                return Err(InvalidSetting::new(
                    format!("network.{key}"),
                    format!("= {v} must be a finite number >= 0"),
                ));
            }
        }
        Ok(())
    }

    /// Smallest delay any link can produce, microseconds (the engine's lookahead).
    pub fn min_delay_micros(&self) -> Micros {
        let floor = self.latency.min_micros();
        if self.link_spread > 0.0 {
            floor / 4
        } else {
            floor
        }
    }

    /// Detection delay in microseconds.
    pub fn detect_micros(&self) -> Micros {
        (self.detect_ms * 1000.0).round() as Micros
    }
}

/// What became of a frame handed to the network.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fate {
    /// Arrives at this time.
    Deliver(Micros),
    /// Lost at random.
    Lost,
}

/// Counters of what the network did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct NetworkStats {
    /// Frames handed to the network.
    pub frames: u64,
    /// Bytes handed to the network.
    pub bytes: u64,
    /// Frames lost at random.
    pub lost: u64,
    /// Frames dropped by a partition or a down link.
    pub cut: u64,
    /// Frames given an extra reordering delay.
    pub reordered: u64,
    /// Frames whose receiver was gone when they arrived.
    pub undeliverable: u64,
}

/// Link state of a run: the uplink queue of every peer and the loss/reorder generator.
#[derive(Debug)]
pub struct Network {
    config: NetworkConfig,
    link_seed: u64,
    uplink_free_at: Vec<Micros>,
    rng: ChaCha8Rng,
    /// What happened so far.
    pub stats: NetworkStats,
}

impl Network {
    /// A network over `peers` peers; `rng` draws losses and delays, `link_seed` fixes the
    /// per-link delay factors.
    pub fn new(config: NetworkConfig, peers: usize, rng: ChaCha8Rng, link_seed: u64) -> Self {
        Network {
            link_seed,
            config,
            uplink_free_at: vec![0; peers],
            rng,
            stats: NetworkStats::default(),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &NetworkConfig {
        &self.config
    }

    /// The fixed delay factor of the link a–b (symmetric, from the seed).
    pub fn link_factor(&self, a: usize, b: usize) -> f64 {
        if self.config.link_spread <= 0.0 {
            return 1.0;
        }
        let (lo, hi) = (a.min(b) as u64, a.max(b) as u64);
        let mut rng = ChaCha8Rng::seed_from_u64(murmur_gossip::seed::derive_indexed(
            self.link_seed,
            murmur_gossip::seed::stream::LINK,
            lo << 32 | hi,
        ));
        let d = LogNormal::new(0.0, self.config.link_spread).expect("spread >= 0");
        d.sample(&mut rng).clamp(0.25, 4.0)
    }

    /// Sends `len` bytes from `from` to `to` at `now` (see [`Network::transmit`]), with the
    /// link's fixed delay factor.
    pub fn transmit_to(&mut self, from: usize, to: usize, len: usize, now: Micros) -> Fate {
        let factor = self.link_factor(from, to);
        self.send(from, len, now, factor)
    }

    /// Sends `len` bytes from `from` at `now`: the frame waits for the sender's uplink, is
    /// serialised at the uplink bandwidth, then propagates (no per-link factor).
    pub fn transmit(&mut self, from: usize, len: usize, now: Micros) -> Fate {
        self.send(from, len, now, 1.0)
    }

    fn send(&mut self, from: usize, len: usize, now: Micros, factor: f64) -> Fate {
        self.stats.frames += 1;
        self.stats.bytes += len as u64;
        let start = now.max(self.uplink_free_at[from]);
        let serialise = if self.config.bandwidth_mbps > 0.0 {
            // bits / (Mbit/s) = microseconds.
            ((len as f64 * 8.0) / self.config.bandwidth_mbps).ceil() as Micros
        } else {
            0
        };
        let sent = start + serialise;
        self.uplink_free_at[from] = sent;
        if self.config.loss > 0.0 && self.rng.random_bool(self.config.loss) {
            self.stats.lost += 1;
            return Fate::Lost;
        }
        let delay = self.config.latency.sample(&mut self.rng);
        let delay = if factor == 1.0 {
            delay
        } else {
            (delay as f64 * factor).round() as Micros
        };
        let mut at = sent + delay;
        if self.config.reorder > 0.0 && self.rng.random_bool(self.config.reorder) {
            self.stats.reordered += 1;
            at += (self.rng.random_range(0.0..=self.config.reorder_ms.max(0.0)) * 1000.0) as Micros;
        }
        Fate::Deliver(at)
    }

    /// Forgets a peer's uplink queue (it crashed: its unsent frames are gone with it).
    pub fn reset_uplink(&mut self, peer: usize, now: Micros) {
        self.uplink_free_at[peer] = now;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bandwidth_serialises_frames_from_one_sender() {
        let config = NetworkConfig {
            latency: LatencyDist::Constant { ms: 1.0 },
            bandwidth_mbps: 8.0, // 1 byte per microsecond
            ..NetworkConfig::default()
        };
        let mut net = Network::new(config, 2, ChaCha8Rng::seed_from_u64(1), 0);
        assert_eq!(net.transmit(0, 1000, 0), Fate::Deliver(2000));
        // Queued behind the first frame on the same uplink.
        assert_eq!(net.transmit(0, 1000, 0), Fate::Deliver(3000));
        // Another sender's uplink is free.
        assert_eq!(net.transmit(1, 500, 0), Fate::Deliver(1500));
    }

    #[test]
    fn link_factors_are_fixed_symmetric_and_bounded() {
        let config = NetworkConfig {
            latency: LatencyDist::Constant { ms: 10.0 },
            link_spread: 1.0,
            ..NetworkConfig::default()
        };
        let mut net = Network::new(config, 8, ChaCha8Rng::seed_from_u64(5), 9);
        let f = net.link_factor(2, 5);
        assert_eq!(f, net.link_factor(5, 2));
        assert!((0.25..=4.0).contains(&f));
        assert_ne!(net.link_factor(0, 1), net.link_factor(0, 2));
        // A constant 10 ms scaled by the link's factor, the same for every frame.
        let expected = (10_000.0 * f).round() as Micros;
        assert_eq!(net.transmit_to(2, 5, 10, 0), Fate::Deliver(expected));
        assert_eq!(
            net.transmit_to(5, 2, 10, 100),
            Fate::Deliver(100 + expected)
        );
        assert!(net.config().min_delay_micros() <= expected);
    }

    #[test]
    fn loss_rate_is_close_to_configured() {
        let config = NetworkConfig {
            loss: 0.2,
            ..NetworkConfig::default()
        };
        let mut net = Network::new(config, 1, ChaCha8Rng::seed_from_u64(7), 0);
        let lost = (0..20_000)
            .filter(|_| net.transmit(0, 10, 0) == Fate::Lost)
            .count();
        let rate = lost as f64 / 20_000.0;
        assert!((rate - 0.2).abs() < 0.015, "loss rate {rate}");
    }

    #[test]
    fn latency_samples_respect_their_floor() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let d = LatencyDist::Normal {
            mean_ms: 5.0,
            std_ms: 10.0,
            min_ms: 2.0,
        };
        for _ in 0..1000 {
            assert!(d.sample(&mut rng) >= 2000);
        }
        assert_eq!(d.min_micros(), 2000);
        assert!(
            LatencyDist::Uniform {
                min_ms: 3.0,
                max_ms: 1.0
            }
            .validate()
            .is_err()
        );
    }
}
