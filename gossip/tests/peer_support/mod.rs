//! Shared helpers of the peer tests: learners that need no data, graphs and a harness setup.
#![allow(dead_code, unreachable_pub)]

pub mod digits;

use murmur_gossip::peer::testing::LockStep;
use murmur_gossip::peer::{Peer, PeerConfig};
use ndarray::Array1;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// The data-free learners live in the library so that other crates' tests share them.
#[allow(unused_imports)]
pub use murmur_gossip::peer::testing::{Frozen, Quadratic};

pub fn random_vectors(n: usize, dim: usize, seed: u64) -> Vec<Vec<f32>> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..n)
        .map(|_| (0..dim).map(|_| rng.random_range(-1.0..1.0)).collect())
        .collect()
}

/// Undirected edges of the ring on n nodes.
pub fn ring_edges(n: u32) -> Vec<(u32, u32)> {
    (0..n)
        .map(|i| (i, (i + 1) % n))
        .filter(|(a, b)| a != b)
        .map(|(a, b)| (a.min(b), a.max(b)))
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect()
}

/// Undirected edges of the static exponential graph (i ± 2^k).
pub fn exponential_edges(n: u32) -> Vec<(u32, u32)> {
    let mut set = std::collections::BTreeSet::new();
    for i in 0..n {
        let mut k = 1;
        while k < n {
            let j = (i + k) % n;
            if j != i {
                set.insert((i.min(j), i.max(j)));
            }
            k *= 2;
        }
    }
    set.into_iter().collect()
}

/// A lock-step harness of `Frozen` peers starting from the given vectors.
pub fn frozen_swarm(config: &PeerConfig, init: &[Vec<f32>], edges: &[(u32, u32)]) -> LockStep {
    let peers = init
        .iter()
        .enumerate()
        .map(|(i, x)| {
            let mut c = config.clone();
            c.seed = config.seed.wrapping_add(i as u64);
            Peer::new(
                i as u32,
                c,
                Box::new(Frozen { dim: x.len() }),
                Array1::from(x.clone()),
            )
            .unwrap()
        })
        .collect();
    let mut net = LockStep::new(peers, 1_000);
    net.start_with_edges(edges.iter().copied());
    net
}

/// A lock-step harness (not started) of `Quadratic` peers, peer i pulled towards `centres[i]`
/// with step size `lr` and seeded with i, all starting from zero.
pub fn quadratic_swarm(config: &PeerConfig, centres: Vec<Vec<f32>>, lr: f32) -> LockStep {
    let peers = centres
        .into_iter()
        .enumerate()
        .map(|(i, centre)| {
            let dim = centre.len();
            let learner = Quadratic {
                centre,
                lr,
                steps: 0,
            };
            let mut c = config.clone();
            c.seed = i as u64;
            Peer::new(i as u32, c, Box::new(learner), Array1::zeros(dim)).unwrap()
        })
        .collect();
    LockStep::new(peers, 1_000)
}

/// Every neighbour's copy of every peer's public vector is bit-identical to the original.
pub fn assert_copies_exact(net: &LockStep) {
    for p in net.peers() {
        for j in p.neighbours() {
            let info = p.neighbour(j).unwrap();
            let owner = net.peer(*j);
            assert_eq!(
                info.applied_seq,
                owner.seq(),
                "peer {} copy of {j}: seq",
                p.id()
            );
            let copy = info.copy.expect("copy established");
            assert!(
                copy.iter()
                    .zip(owner.public_copy())
                    .all(|(a, b)| a.to_bits() == b.to_bits()),
                "peer {} copy of {j} differs",
                p.id()
            );
        }
    }
}
