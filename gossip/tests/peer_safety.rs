//! Safety knobs: ClippedGossip bounds how far a lying neighbour can drag honest peers (the
//! privacy of the updates, which replaced the old `noise_std`, is tested in `peer_privacy.rs`).

mod peer_support;

use murmur_gossip::learner::LocalLearner;
use murmur_gossip::peer::testing::LockStep;
use murmur_gossip::peer::{Algorithm, CodecSpec, Input, Mode, Peer, PeerConfig};
use ndarray::Array1;
use peer_support::*;

const N: u32 = 6;
const DIM: usize = 10;

fn run_with_liar(clip_radius: Option<f32>, rounds: u64) -> f32 {
    let config = PeerConfig {
        algorithm: Algorithm::Choco {
            codec: CodecSpec::DenseF32,
            gamma: 0.5,
        },
        local_steps: 1,
        mode: Mode::RoundTagged { timeout: 5_000 },
        clip_radius,
        ..PeerConfig::default()
    };
    let peers = (0..N)
        .map(|i| {
            // Peer 0 lies: its "training" throws its model to 1000 every step.
            let learner: Box<dyn LocalLearner> = if i == 0 {
                Box::new(Quadratic {
                    centre: vec![1000.0; DIM],
                    lr: 1.0,
                    steps: 0,
                })
            } else {
                Box::new(Frozen { dim: DIM })
            };
            Peer::new(i, config.clone(), learner, Array1::zeros(DIM)).unwrap()
        })
        .collect();
    let mut net = LockStep::new(peers, 1_000);
    net.start_with_edges(ring_edges(N));
    net.run_rounds(rounds, 10 * rounds as usize);
    net.peers()[1..]
        .iter()
        .flat_map(|p| p.model().iter().map(|x| x.abs()))
        .fold(0.0, f32::max)
}

#[test]
fn clipping_bounds_the_damage_of_a_lying_neighbour() {
    let rounds = 40;
    let radius = 0.1;
    let unclipped = run_with_liar(None, rounds);
    let clipped = run_with_liar(Some(radius), rounds);
    // Each round the liar moves a neighbour by at most γ · w · radius = 0.5 · 1/3 · 0.1.
    let bound = rounds as f32 * 0.5 / 3.0 * radius;
    println!(
        "largest honest parameter after {rounds} rounds: unclipped {unclipped:.1}, clipped {clipped:.4} (bound {bound:.3})"
    );
    assert!(unclipped > 100.0, "{unclipped}");
    assert!(clipped <= bound * 1.0001, "{clipped} > {bound}");
}

#[test]
fn goodbye_removes_the_leaver_everywhere() {
    let init = random_vectors(N as usize, DIM, 3);
    let config = PeerConfig {
        local_steps: 0,
        mode: Mode::RoundTagged { timeout: 5_000 },
        ..PeerConfig::default()
    };
    let mut net = frozen_swarm(&config, &init, &ring_edges(N));
    net.run_rounds(3, 20);
    net.input(2, Input::Shutdown);
    net.deliver();
    assert!(net.peer(1).neighbour(&2).is_none());
    assert!(net.peer(3).neighbour(&2).is_none());
    assert_eq!(net.peer(1).degree(), 1);
    let others: Vec<u32> = (0..N).filter(|&i| i != 2).collect();
    // Nobody waits for the leaver: rounds go on without timeouts.
    let before: u64 = net.peers().iter().map(|p| p.stats().round_timeouts).sum();
    net.run_until_round(&others, 10, 50);
    let after: u64 = net.peers().iter().map(|p| p.stats().round_timeouts).sum();
    assert_eq!(before, after);
}
