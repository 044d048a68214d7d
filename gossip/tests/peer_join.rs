//! Joining mid-training: a fresh peer adopts its neighbours' model by snapshot before its first
//! step (not its own random initialisation) and catches up at once.

mod peer_support;

use murmur_gossip::peer::testing::LockStep;
use murmur_gossip::peer::{Algorithm, CodecSpec, Input, Mode, Peer, PeerConfig};
use ndarray::Array1;
use peer_support::*;

fn config(seed: u64) -> PeerConfig {
    PeerConfig {
        algorithm: Algorithm::Choco {
            codec: CodecSpec::AdaptiveThreshold { density: 0.1 },
            gamma: 0.2,
        },
        local_steps: 1,
        mode: Mode::RoundTagged { timeout: 5_000 },
        seed,
        ..PeerConfig::default()
    }
}

#[test]
fn joiner_adopts_neighbour_model_and_keeps_copies_exact() {
    let n = 8u32;
    let dim = 30;
    let centres = random_vectors(n as usize + 1, dim, 8);
    let make = |i: u32, init: f32| {
        let learner = Quadratic {
            centre: centres[i as usize].clone(),
            lr: 0.05,
            steps: 0,
        };
        Peer::new(
            i,
            config(i.into()),
            Box::new(learner),
            Array1::from_elem(dim, init),
        )
        .unwrap()
    };
    let mut net = LockStep::new((0..n).map(|i| make(i, 0.0)).collect(), 1_000);
    net.start_with_edges(exponential_edges(n));
    net.run_rounds(100, 500);
    let others: Vec<u32> = (0..n).collect();
    let mean_before = net.mean_model();

    // A fresh peer whose own initialisation is far away joins next to peers 0 and 4.
    let joiner = net.add_peer(make(n, 50.0));
    net.connect(joiner, 0);
    net.connect(joiner, 4);
    net.input(joiner, Input::Start);
    net.deliver();
    assert_eq!(net.adopted.len(), 1, "{:?}", net.adopted);
    let (who, from, round) = net.adopted[0];
    assert_eq!(who, joiner);
    assert!(from == 0 || from == 4);
    assert!(
        round >= 99,
        "continues from the neighbours' round, got {round}"
    );
    // Before its first step the joiner holds exactly the neighbour's model.
    assert_eq!(
        net.peer(joiner).model().to_vec(),
        net.peer(from).model().to_vec()
    );
    assert_eq!(net.peer(joiner).stats().local_steps, 0);

    net.run_until_round(&others, 110, 200);
    let mean_others: Vec<f64> = {
        let mut m = vec![0.0; dim];
        for i in &others {
            for (a, x) in m.iter_mut().zip(net.peer(*i).model().iter()) {
                *a += f64::from(*x) / f64::from(n);
            }
        }
        m
    };
    let gap = net
        .peer(joiner)
        .model()
        .iter()
        .zip(&mean_others)
        .map(|(x, m)| (f64::from(*x) - m).abs())
        .fold(0.0, f64::max);
    let drift = mean_others
        .iter()
        .zip(&mean_before)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f64::max);
    println!("joiner's largest gap to the others' mean: {gap:.4}; others' mean moved {drift:.4}");
    assert!(gap < 1.0, "joiner far from the swarm: {gap}");
    assert!(drift < 0.1, "the joiner disturbed the others: {drift}");
    assert_copies_exact(&net);
}
