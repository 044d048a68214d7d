//! Checkpoints: emitted on schedule, round-trip through bytes, refuse what does not fit, and a
//! crashed peer restored from one resumes its round and rejoins with exact copies.

mod peer_support;

use murmur_gossip::peer::testing::LockStep;
use murmur_gossip::peer::{
    Algorithm, CheckpointError, CodecSpec, Input, Mode, Peer, PeerCheckpoint, PeerConfig,
};
use ndarray::Array1;
use peer_support::*;

const N: u32 = 6;
const DIM: usize = 30;

fn config(seed: u64) -> PeerConfig {
    PeerConfig {
        algorithm: Algorithm::Choco {
            codec: CodecSpec::AdaptiveThreshold { density: 0.1 },
            gamma: 0.2,
        },
        local_steps: 2,
        mode: Mode::RoundTagged { timeout: 5_000 },
        checkpoint_every: 5,
        seed,
        ..PeerConfig::default()
    }
}

fn peer(i: u32, centres: &[Vec<f32>]) -> Peer<u32> {
    let learner = Quadratic {
        centre: centres[i as usize].clone(),
        lr: 0.05,
        steps: 0,
    };
    Peer::new(i, config(i.into()), Box::new(learner), Array1::zeros(DIM)).unwrap()
}

fn swarm(centres: &[Vec<f32>]) -> LockStep {
    let mut net = LockStep::new((0..N).map(|i| peer(i, centres)).collect(), 1_000);
    net.start_with_edges(ring_edges(N));
    net
}

#[test]
fn checkpoints_are_due_on_schedule_and_round_trip() {
    let centres = random_vectors(N as usize, DIM, 4);
    let mut net = swarm(&centres);
    net.run_rounds(12, 50);
    let due: Vec<u64> = net
        .checkpoints_due
        .iter()
        .filter(|(p, _)| *p == 0)
        .map(|(_, r)| *r)
        .collect();
    assert_eq!(due, vec![5, 10]);
    let cp = net.peer(0).checkpoint();
    assert_eq!(cp.round, 12);
    assert_eq!(cp.learner_state, 24u64.to_le_bytes());
    let bytes = cp.encode();
    assert_eq!(PeerCheckpoint::decode(&bytes), Ok(cp.clone()));
    // Truncations and flipped bytes never panic.
    for cut in 0..bytes.len().min(200) {
        assert!(PeerCheckpoint::decode(&bytes[..cut]).is_err());
    }
    let mut longer = bytes.clone();
    longer.push(0);
    assert_eq!(
        PeerCheckpoint::decode(&longer),
        Err(CheckpointError::TrailingBytes(1))
    );
    for k in 0..bytes.len() {
        let mut flipped = bytes.clone();
        flipped[k] ^= 0x5a;
        let _ = PeerCheckpoint::decode(&flipped);
    }
}

#[test]
fn restore_refuses_what_does_not_fit_and_leaves_peer_unchanged() {
    let centres = random_vectors(N as usize, DIM, 4);
    let mut net = swarm(&centres);
    net.run_rounds(3, 20);
    let cp = net.peer(1).checkpoint();
    let mut fresh = peer(1, &centres);
    let before = format!("{:?}", fresh.checkpoint());
    let mut nan = cp.clone();
    nan.model[3] = f32::NAN;
    assert_eq!(fresh.restore(nan), Err(CheckpointError::NonFinite("model")));
    let mut short = cp.clone();
    short.x_hat.pop();
    assert!(matches!(
        fresh.restore(short),
        Err(CheckpointError::WrongLength { what: "x_hat", .. })
    ));
    let mut other = cp.clone();
    other.fingerprint ^= 1;
    assert!(matches!(
        fresh.restore(other),
        Err(CheckpointError::Mismatch(_))
    ));
    let mut bad_learner = cp.clone();
    bad_learner.learner_state = vec![1, 2, 3];
    assert!(matches!(
        fresh.restore(bad_learner),
        Err(CheckpointError::Learner(_))
    ));
    assert_eq!(before, format!("{:?}", fresh.checkpoint()));
    fresh.handle(0, Input::Start);
    assert_eq!(fresh.restore(cp), Err(CheckpointError::NotFresh));
}

#[test]
fn crashed_peer_resumes_from_checkpoint_and_resynchronises() {
    let centres = random_vectors(N as usize, DIM, 4);
    let mut clean = swarm(&centres);
    clean.run_rounds(80, 400);

    let mut net = swarm(&centres);
    net.run_rounds(20, 100);
    let cp = net.peer(2).checkpoint();
    // Crash: peer 2 vanishes, the others keep training for a while.
    net.disconnect(1, 2);
    net.disconnect(2, 3);
    net.run_until_round(&[0, 1, 3, 4, 5], 30, 200);
    // Restart from the checkpoint, reconnect.
    let mut restarted = peer(2, &centres);
    restarted.restore(cp.clone()).unwrap();
    net.replace_peer(2, restarted);
    net.connect(1, 2);
    net.connect(2, 3);
    net.input(2, Input::Start);
    net.run_until_round(&[0, 1, 2, 3, 4, 5], 80, 1_000);

    let p2 = net.peer(2);
    assert!(p2.round() >= 80);
    assert_eq!(p2.stats().models_adopted, 0, "a restored peer never adopts");
    assert!(p2.stats().snapshots_installed >= 2);
    assert_copies_exact(&net);
    // Training ends where the uninterrupted run ended.
    let mut worst = 0.0f32;
    for (a, b) in net.peers().iter().zip(clean.peers()) {
        for (x, y) in a.model().iter().zip(b.model().iter()) {
            worst = worst.max((x - y).abs());
        }
    }
    println!("worst parameter difference to the uninterrupted run: {worst:e}");
    assert!(worst < 1e-2, "{worst}");
}
