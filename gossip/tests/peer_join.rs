//! Joining mid-training: a fresh peer adopts its neighbours' model by snapshot before its first
//! step (not its own random initialisation) and catches up at once: the weighted mean of its
//! neighbours' public copies (`JoinModel::Average`, the CHOCO default) or one donor's model
//! (`JoinModel::Donor`, whose choice of donor the relay tests below pin down).

mod peer_support;

use murmur_gossip::message::Message;
use murmur_gossip::peer::testing::LockStep;
use murmur_gossip::peer::{
    Algorithm, CodecSpec, Input, JoinModel, Mode, Peer, PeerConfig, PeerPhase, metropolis_weight,
};
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
        join_model: JoinModel::Donor,
        ..PeerConfig::default()
    }
}

#[test]
fn joiner_adopts_neighbour_model_and_keeps_copies_exact() {
    joiner_adopts_and_keeps_copies_exact(JoinModel::Donor);
}

#[test]
fn joiner_adopts_the_mean_of_its_neighbours_copies_and_keeps_copies_exact() {
    joiner_adopts_and_keeps_copies_exact(JoinModel::Average);
}

fn joiner_adopts_and_keeps_copies_exact(join_model: JoinModel) {
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
            PeerConfig {
                join_model,
                ..config(i.into())
            },
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
    // Before its first step the joiner holds exactly the neighbour's model, or exactly the
    // Metropolis-weighted mean of the two public copies (in f64, in id order).
    let expected: Vec<f32> = match join_model {
        JoinModel::Donor => net.peer(from).model().to_vec(),
        JoinModel::Average => {
            let w = |j: u32| metropolis_weight(2, net.peer(j).degree());
            let total = w(0) + w(4);
            (0..dim)
                .map(|k| {
                    let sum = w(0) * f64::from(net.peer(0).public_copy()[k])
                        + w(4) * f64::from(net.peer(4).public_copy()[k]);
                    (sum / total) as f32
                })
                .collect()
        }
    };
    assert_eq!(net.peer(joiner).model().to_vec(), expected);
    if join_model == JoinModel::Average {
        assert_eq!(from, 0, "ties on the round go to the lowest id");
        assert_ne!(
            expected,
            net.peer(0).model().to_vec(),
            "the mean is not one neighbour's model"
        );
    }
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

// ---------------------------------------------------------------- relayed neighbours
//
// A relay carries small updates, not a joiner's model download (the daemon refuses one on a
// relayed-only connection). The driver marks such neighbours with `Input::LinkClass`, and a
// joiner must take its model from a direct neighbour, or wait for one.

/// A trained ring of four peers (ids 0..4) and a fresh joiner (id 4) not yet connected; the
/// harness records every frame from here on.
fn trained_ring_and_joiner(startup_timeout: u64) -> (LockStep, u32) {
    let dim = 12;
    let centres = random_vectors(5, dim, 21);
    let make = |i: u32, init: f32| {
        let learner = Quadratic {
            centre: centres[i as usize].clone(),
            lr: 0.05,
            steps: 0,
        };
        let config = PeerConfig {
            startup_timeout,
            ..config(i.into())
        };
        Peer::new(i, config, Box::new(learner), Array1::from_elem(dim, init)).unwrap()
    };
    let mut net = LockStep::new((0..4).map(|i| make(i, 0.0)).collect(), 1_000);
    net.start_with_edges(ring_edges(4));
    net.run_rounds(20, 200);
    let joiner = net.add_peer(make(4, 50.0));
    net.recorded = Some(Vec::new());
    (net, joiner)
}

/// Marks `relayed` as reachable only through a relay, connects the joiner to `neighbours`
/// and starts it.
fn start_joiner(net: &mut LockStep, joiner: u32, relayed: u32, neighbours: &[u32]) {
    net.input(
        joiner,
        Input::LinkClass {
            peer: relayed,
            relayed: true,
        },
    );
    for &j in neighbours {
        net.connect(joiner, j);
    }
    net.input(joiner, Input::Start);
    net.deliver();
}

/// The `want_model` flags of every snapshot request `from` sent to `to` so far.
fn model_requests(net: &LockStep, from: u32, to: u32) -> Vec<bool> {
    net.recorded
        .as_ref()
        .expect("recording")
        .iter()
        .filter(|(f, t, _)| *f == from && *t == to)
        .filter_map(|(_, _, bytes)| match Message::decode(bytes, usize::MAX) {
            Ok(Message::SnapshotRequest(r)) => Some(r.want_model),
            _ => None,
        })
        .collect()
}

#[test]
fn joiner_downloads_from_a_direct_neighbour_not_through_a_relay() {
    let (mut net, joiner) = trained_ring_and_joiner(2_000_000);
    // Neighbour 0 is reached through a relay and says hello first: before relayed links were
    // told apart, the joiner adopted from the first newer neighbour, i.e. through the relay.
    start_joiner(&mut net, joiner, 0, &[0, 2]);
    assert_eq!(net.adopted.len(), 1, "{:?}", net.adopted);
    let (who, from, round) = net.adopted[0];
    assert_eq!(
        (who, from),
        (joiner, 2),
        "adopted from the direct neighbour"
    );
    assert!(
        round >= 19,
        "continues from the neighbours' round, got {round}"
    );
    assert_eq!(
        net.peer(joiner).model().to_vec(),
        net.peer(2).model().to_vec()
    );
    // The relayed neighbour got a snapshot request for the joiner's copy of it (small state
    // a relay must carry), never one for its model.
    let to_relayed = model_requests(&net, joiner, 0);
    assert!(!to_relayed.is_empty(), "the copy of 0 was never requested");
    assert!(
        to_relayed.iter().all(|&want| !want),
        "model asked through the relay: {to_relayed:?}"
    );
    assert!(net.peer(joiner).neighbour(&0).unwrap().relayed);
    assert!(!net.peer(joiner).neighbour(&2).unwrap().relayed);
    net.run_rounds(10, 200);
    assert!(net.peer(joiner).neighbour(&0).unwrap().copy.is_some());
    assert_copies_exact(&net);
}

#[test]
fn joiner_behind_a_relay_waits_for_a_direct_neighbour() {
    let (mut net, joiner) = trained_ring_and_joiner(50_000);
    start_joiner(&mut net, joiner, 0, &[0]);
    for _ in 0..30 {
        net.tick();
    }
    // Its only newer neighbour is relayed: it waits, within the startup deadline, having
    // fetched only the small copy of 0 through the relay.
    assert!(net.adopted.is_empty(), "{:?}", net.adopted);
    assert_eq!(net.peer(joiner).phase(), PeerPhase::Starting);
    assert_eq!(net.peer(joiner).stats().local_steps, 0);
    assert!(net.peer(joiner).neighbour(&0).unwrap().copy.is_some());
    // A direct neighbour appears: the joiner downloads from it at once.
    net.connect(joiner, 1);
    net.deliver();
    assert_eq!(net.adopted.len(), 1, "{:?}", net.adopted);
    assert_eq!(net.adopted[0].0, joiner);
    assert_eq!(net.adopted[0].1, 1, "adopted from the direct newcomer");
    assert!(model_requests(&net, joiner, 0).iter().all(|&want| !want));
    net.run_rounds(10, 200);
    assert_copies_exact(&net);
}

#[test]
fn hole_punch_makes_a_relayed_neighbour_a_donor() {
    let (mut net, joiner) = trained_ring_and_joiner(50_000);
    start_joiner(&mut net, joiner, 3, &[3]);
    for _ in 0..10 {
        net.tick();
    }
    assert!(net.adopted.is_empty(), "{:?}", net.adopted);
    assert!(model_requests(&net, joiner, 3).iter().all(|&want| !want));
    // The hole punch succeeded: the driver says the path is direct now.
    net.input(
        joiner,
        Input::LinkClass {
            peer: 3,
            relayed: false,
        },
    );
    net.deliver();
    assert_eq!(net.adopted.len(), 1, "{:?}", net.adopted);
    assert_eq!(net.adopted[0].1, 3);
    assert_eq!(model_requests(&net, joiner, 3).last(), Some(&true));
    net.run_rounds(10, 200);
    assert_copies_exact(&net);
}

#[test]
fn joiner_behind_a_relay_only_waits_as_long_as_an_adoption_may() {
    let startup = 20_000;
    let (mut net, joiner) = trained_ring_and_joiner(startup);
    start_joiner(&mut net, joiner, 1, &[1]);
    // Still waiting just before its last re-armed deadline (1 + 5 waits), started right after.
    let bound = 6 * startup / 1_000;
    for _ in 0..bound - 2 {
        net.tick();
    }
    assert_eq!(net.peer(joiner).phase(), PeerPhase::Starting);
    for _ in 0..4 {
        net.tick();
    }
    assert_ne!(net.peer(joiner).phase(), PeerPhase::Starting);
    assert!(net.adopted.is_empty(), "{:?}", net.adopted);
    assert!(model_requests(&net, joiner, 1).iter().all(|&want| !want));
}
