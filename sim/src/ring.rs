//! The all-reduce baseline's clock: how long synchronous data-parallel SGD with a ring
//! all-reduce (Patarasuk & Yuan 2009; the reduce-scatter + all-gather of Horovod and NCCL)
//! takes on the simulated network, so that time to accuracy compares like with like.
//!
//! One step: every peer computes its gradient (the step waits for the slowest peer, speed
//! factors and stragglers drawn exactly as the swarm's engine draws them), then 2(n − 1)
//! phases in which every peer sends a chunk of 4d/n bytes to its ring successor. A phase ends
//! when its slowest link has delivered: the latency drawn for that link and frame (with the
//! link's fixed delay factor, as in [`Network`]) plus the chunk's serialization on the
//! sender's uplink. Losses and reordering are ignored (a real all-reduce runs on a reliable
//! transport, and a lost chunk would only make it slower).

use murmur_gossip::peer::Micros;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::compute::ComputeConfig;
use crate::engine::{derive, stream};
use crate::network::{Network, NetworkConfig};

/// Virtual time of ring all-reduce steps.
#[derive(Debug)]
pub struct RingClock {
    /// The network (its latency law, link factors and uplink bandwidth).
    network: Network,
    /// The compute model (step time, overhead).
    compute: ComputeConfig,
    /// The slowest peer's speed factor: every synchronous step waits for it.
    slowest: f64,
    /// Peers in the ring.
    peers: usize,
    /// Bytes each peer sends per phase (4d/n, rounded up).
    chunk_bytes: usize,
    /// Draws the latencies.
    rng: ChaCha8Rng,
}

impl RingClock {
    /// The clock of `peers` peers all-reducing `dim` f32 parameters; `seed` is the scenario's,
    /// so the speed factors and link factors are the swarm's own.
    pub fn new(
        network: &NetworkConfig,
        compute: &ComputeConfig,
        peers: usize,
        dim: usize,
        seed: u64,
    ) -> RingClock {
        let mut speed_rng = ChaCha8Rng::seed_from_u64(derive(seed, stream::SPEEDS));
        let (factors, _) = compute.factors(peers, &mut speed_rng);
        let slowest = factors.iter().copied().fold(1.0f64, f64::max);
        RingClock {
            network: Network::new(
                network.clone(),
                peers,
                ChaCha8Rng::seed_from_u64(derive(seed, stream::NETWORK)),
                derive(seed, stream::LINKS),
            ),
            compute: compute.clone(),
            slowest,
            peers,
            chunk_bytes: (4 * dim).div_ceil(peers.max(1)),
            rng: ChaCha8Rng::seed_from_u64(derive(seed, stream::RING_LATENCY)),
        }
    }

    /// Serialization time of one chunk on an uplink, microseconds (0 on an infinite link).
    pub fn chunk_micros(&self) -> f64 {
        let mbps = self.network.config().bandwidth_mbps;
        if mbps > 0.0 {
            self.chunk_bytes as f64 * 8.0 / mbps
        } else {
            0.0
        }
    }

    /// Time of one all-reduce: 2(n − 1) phases, each as long as its slowest link.
    pub fn allreduce_micros(&mut self) -> Micros {
        let n = self.peers;
        if n < 2 {
            return 0;
        }
        let chunk = self.chunk_micros();
        let latency = self.network.config().latency.clone();
        let mut total = 0.0;
        for _ in 0..2 * (n - 1) {
            let mut phase = 0.0f64;
            for i in 0..n {
                let factor = self.network.link_factor(i, (i + 1) % n);
                let delay = latency.sample(&mut self.rng) as f64 * factor + chunk;
                phase = phase.max(delay);
            }
            total += phase;
        }
        total.round() as Micros
    }

    /// Time of one synchronous step: the slowest peer's gradient, then the all-reduce.
    pub fn step_micros(&mut self) -> Micros {
        self.compute.duration(1, self.slowest) + self.allreduce_micros()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::network::LatencyDist;

    fn lan(mbps: f64) -> NetworkConfig {
        NetworkConfig {
            latency: LatencyDist::Constant { ms: 1.0 },
            bandwidth_mbps: mbps,
            ..NetworkConfig::default()
        }
    }

    #[test]
    fn a_step_is_compute_plus_two_n_minus_one_phases_of_latency_and_chunk() {
        let compute = ComputeConfig {
            step_ms: 20.0,
            overhead_ms: 0.0,
            ..ComputeConfig::default()
        };
        // 16 peers, 1M parameters: chunks of 250 kB, 2 ms each at 1 Gbit/s, plus 1 ms.
        let mut clock = RingClock::new(&lan(1000.0), &compute, 16, 1_000_000, 7);
        assert_eq!(clock.chunk_micros(), 2000.0);
        assert_eq!(clock.step_micros(), 20_000 + 30 * (1000 + 2000));
    }

    #[test]
    fn the_bytes_term_follows_two_n_minus_one_over_n() {
        let compute = ComputeConfig::default();
        let slow = lan(100.0);
        let t = |n| RingClock::new(&slow, &compute, n, 10_000_000, 1).allreduce_micros();
        // Each peer sends 2(n−1)/n × 40 MB at 100 Mbit/s (toward 6.4 s as n grows), plus
        // 2(n−1) latencies of 1 ms.
        assert_eq!(t(4), 6 * (1000 + 800_000));
        assert_eq!(t(32), 62 * (1000 + 100_000));
    }

    #[test]
    fn one_peer_needs_no_communication() {
        let mut clock = RingClock::new(&lan(1.0), &ComputeConfig::default(), 1, 1000, 0);
        assert_eq!(clock.allreduce_micros(), 0);
    }
}
