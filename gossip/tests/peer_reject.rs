//! Hostile and broken frames: every one is rejected with a named error, counted, and leaves
//! the receiving peer's state bit-for-bit unchanged.

mod peer_support;

use murmur_gossip::message::MessageError;
use murmur_gossip::message::{
    AlgorithmKind, Hello, Message, PROTOCOL_VERSION, PushShare, Snapshot, SnapshotRequest, Update,
};
use murmur_gossip::peer::testing::LockStep;
use murmur_gossip::peer::{
    Algorithm, CodecSpec, DecodeError, Input, Mode, Output, Peer, PeerConfig, RejectReason,
};
use ndarray::Array1;
use peer_support::*;

const DIM: usize = 24;

fn cfg() -> PeerConfig {
    PeerConfig {
        algorithm: Algorithm::Choco {
            codec: CodecSpec::DenseF32,
            gamma: 0.5,
        },
        local_steps: 1,
        mode: Mode::RoundTagged { timeout: 10_000 },
        fingerprint: 42,
        // These tests forge many bad frames from one neighbour to check each rejection; the
        // misbehaviour policy that would exclude it is tested in peer_hostile.rs.
        misbehaviour_threshold: 0,
        ..PeerConfig::default()
    }
}

fn quad_peer(id: u32, dim: usize, centre: f32) -> Peer<u32> {
    let learner = Quadratic {
        centre: vec![centre; dim],
        lr: 0.1,
        steps: 0,
    };
    Peer::new(id, cfg(), Box::new(learner), Array1::zeros(dim)).unwrap()
}

/// The first update a stand-alone peer with model `init` sends (its frame carries `init`).
fn first_update(dim: usize, init: Vec<f32>) -> Vec<u8> {
    let frozen = Frozen { dim };
    let mut p = Peer::new(1u32, cfg(), Box::new(frozen), Array1::from(init)).unwrap();
    p.handle(0, Input::NeighbourUp(0));
    p.handle(0, Input::Start);
    let out = p.handle(10_000_000, Input::Timer(murmur_gossip::peer::TimerToken(0)));
    assert!(out.contains(&Output::WantCompute), "{out:?}");
    let out = p.handle(10_000_000, Input::ComputeGranted);
    out.into_iter()
        .find_map(|o| match o {
            Output::Send { bytes, .. } => Some(bytes),
            _ => None,
        })
        .unwrap()
}

fn snapshot_of(state: &Peer<u32>, from: u32) -> (String, String) {
    (
        format!("{:?}", state.checkpoint()),
        format!("{:?}", state.neighbour(&from)),
    )
}

fn swarm() -> LockStep {
    let peers = vec![
        quad_peer(0, DIM, 1.0),
        quad_peer(1, DIM, -1.0),
        quad_peer(2, DIM, 3.0),
    ];
    let mut net = LockStep::new(peers, 1_000);
    net.start_with_edges([(0, 1), (1, 2), (0, 2)]);
    net.run_rounds(5, 20);
    net
}

fn expect_rejected(
    net: &mut LockStep,
    from: u32,
    bytes: Vec<u8>,
    check: impl Fn(&RejectReason) -> bool,
    name: &str,
) {
    let before = snapshot_of(net.peer(0), from);
    let rejected_before = net.peer(0).stats().rejected.total();
    let n = net.rejected.len();
    net.input(0, Input::Message { from, bytes });
    let after = snapshot_of(net.peer(0), from);
    assert_eq!(before, after, "{name}: state changed");
    assert_eq!(net.rejected.len(), n + 1, "{name}: not rejected");
    let (_, _, reason) = &net.rejected[n];
    assert!(check(reason), "{name}: wrong reason {reason:?}");
    assert_eq!(net.peer(0).stats().rejected.total(), rejected_before + 1);
    println!("{name}: rejected with \"{reason}\"");
}

#[test]
fn hostile_frames_are_rejected_without_state_change() {
    let mut net = swarm();
    let hello = |dim: u32, fingerprint: u64, algorithm: AlgorithmKind| {
        Message::Hello(Hello {
            dim,
            fingerprint,
            algorithm,
            degree: 2,
            round: 5,
            seq: 5,
            reply_wanted: false,
        })
        .encode()
    };

    // Malformed and oversize frames.
    expect_rejected(
        &mut net,
        1,
        vec![],
        |r| *r == RejectReason::Message(MessageError::Empty),
        "empty",
    );
    expect_rejected(
        &mut net,
        1,
        vec![PROTOCOL_VERSION as u8, 200, 7, 7],
        |r| matches!(r, RejectReason::Message(MessageError::Malformed(_))),
        "garbage",
    );
    let cap = net.peer(0).max_message_bytes();
    expect_rejected(
        &mut net,
        1,
        vec![1; cap + 1],
        |r| matches!(r, RejectReason::Message(MessageError::TooLarge { .. })),
        "oversize",
    );
    let mut v2 = hello(DIM as u32, 42, AlgorithmKind::Choco);
    v2[0] = (PROTOCOL_VERSION + 1) as u8;
    expect_rejected(
        &mut net,
        1,
        v2,
        |r| {
            matches!(
                r,
                RejectReason::Message(MessageError::UnsupportedVersion { .. })
            )
        },
        "version",
    );
    let mut trailing = hello(DIM as u32, 42, AlgorithmKind::Choco);
    trailing.push(0);
    expect_rejected(
        &mut net,
        1,
        trailing,
        |r| {
            matches!(
                r,
                RejectReason::Message(MessageError::TrailingBytes { extra: 1 })
            )
        },
        "trailing",
    );
    let update = first_update(DIM, vec![0.5; DIM]);
    for cut in [1, update.len() / 2, update.len() - 1] {
        expect_rejected(
            &mut net,
            1,
            update[..cut].to_vec(),
            |r| matches!(r, RejectReason::Message(_) | RejectReason::Codec(_)),
            "truncated update",
        );
    }

    // A well-formed message around a broken codec frame: the codec's own error, named.
    let Message::Update(inner) = Message::decode(&update, usize::MAX).unwrap() else {
        panic!("first_update sends an update")
    };
    let rewrap = |frame: Vec<u8>| {
        Message::Update(Update {
            frame,
            ..inner.clone()
        })
        .encode()
    };
    let mut future = inner.frame.clone();
    future[0] = murmur_compress::FORMAT_VERSION + 1;
    expect_rejected(
        &mut net,
        1,
        rewrap(future),
        |r| {
            matches!(
                r,
                RejectReason::Codec(DecodeError::UnsupportedVersion { .. })
            )
        },
        "codec version",
    );
    expect_rejected(
        &mut net,
        1,
        rewrap(inner.frame[..inner.frame.len() - 1].to_vec()),
        |r| matches!(r, RejectReason::Codec(_)),
        "truncated codec frame",
    );

    // Wrong model family.
    expect_rejected(
        &mut net,
        1,
        hello(DIM as u32 + 1, 42, AlgorithmKind::Choco),
        |r| matches!(r, RejectReason::WrongDimension { expected: DIM, got } if *got == DIM + 1),
        "hello dim",
    );
    expect_rejected(
        &mut net,
        1,
        hello(DIM as u32, 43, AlgorithmKind::Choco),
        |r| matches!(r, RejectReason::FingerprintMismatch { .. }),
        "fingerprint",
    );
    expect_rejected(
        &mut net,
        1,
        hello(DIM as u32, 42, AlgorithmKind::Dpsgd),
        |r| matches!(r, RejectReason::AlgorithmMismatch { .. }),
        "algorithm",
    );

    // Wrong dimension and non-finite updates.
    expect_rejected(
        &mut net,
        1,
        first_update(DIM + 3, vec![0.5; DIM + 3]),
        |r| matches!(r, RejectReason::WrongDimension { expected: DIM, got } if *got == DIM + 3),
        "update dim",
    );
    let marker = 1234.5f32;
    let mut init = vec![0.25; DIM];
    init[3] = marker;
    let good = first_update(DIM, init);
    for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
        let mut forged = good.clone();
        let pos = forged
            .windows(4)
            .position(|w| w == marker.to_le_bytes())
            .expect("dense frame carries raw f32");
        forged[pos..pos + 4].copy_from_slice(&bad.to_le_bytes());
        expect_rejected(
            &mut net,
            1,
            forged,
            |r| *r == RejectReason::NonFinite { what: "update" },
            "non-finite update",
        );
    }

    // Snapshots: unsolicited, wrong dimension, non-finite.
    let snapshot = |nonce: u64, x_hat: Vec<f32>| {
        Message::Snapshot(Snapshot {
            nonce,
            seq: 99,
            round: 9,
            degree: 2,
            x_hat,
            model: None,
        })
        .encode()
    };
    expect_rejected(
        &mut net,
        1,
        snapshot(777, vec![0.0; DIM]),
        |r| *r == RejectReason::UnsolicitedSnapshot,
        "unsolicited snapshot",
    );
    expect_rejected(
        &mut net,
        1,
        snapshot(777, vec![0.0; DIM - 1]),
        |r| matches!(r, RejectReason::WrongDimension { .. }),
        "snapshot dim",
    );
    let mut nan = vec![0.0; DIM];
    nan[5] = f32::NAN;
    expect_rejected(
        &mut net,
        1,
        snapshot(777, nan),
        |r| matches!(r, RejectReason::NonFinite { .. }),
        "snapshot non-finite",
    );

    // A push-sum share to a CHOCO peer, and a stranger.
    let share = Message::PushShare(PushShare {
        round: 1,
        weight: 0.5,
        values: vec![0.0; DIM],
    })
    .encode();
    expect_rejected(
        &mut net,
        1,
        share,
        |r| matches!(r, RejectReason::UnexpectedMessage { .. }),
        "push share",
    );
    expect_rejected(
        &mut net,
        9,
        hello(DIM as u32, 42, AlgorithmKind::Choco),
        |r| *r == RejectReason::NotANeighbour,
        "stranger",
    );

    let counts = &net.peer(0).stats().rejected;
    println!("{counts:?}");
    // Each kind lands in its own counter: the codec's dimension and finiteness failures are
    // counted with the peer's own (hello, snapshot) ones; only broken codec frames are `codec`.
    assert_eq!(
        counts.wrong_dimension, 3,
        "hello, update and snapshot dimension"
    );
    assert_eq!(counts.non_finite, 4, "3 forged updates and 1 snapshot");
    assert_eq!(counts.codec, 2, "the two broken codec frames");
    assert!(counts.malformed >= 2 && counts.fingerprint_mismatch == 1);

    // The honest swarm is unaffected and keeps training.
    net.rejected.clear();
    net.run_rounds(5, 20);
    assert!(net.rejected.is_empty());
    assert_copies_exact(&net);
}

#[test]
fn snapshot_request_floods_are_rate_limited() {
    let mut net = swarm();
    let limit = cfg().max_snapshots_per_round as usize;
    for k in 0..limit + 3 {
        let req = Message::SnapshotRequest(SnapshotRequest {
            nonce: 100 + k as u64,
            want_model: true,
        })
        .encode();
        net.input(
            0,
            Input::Message {
                from: 1,
                bytes: req,
            },
        );
    }
    assert_eq!(net.peer(0).stats().snapshots_sent as usize, limit);
    assert_eq!(net.peer(0).stats().rejected.rate_limited, 3);
}

#[test]
fn overflowing_update_is_refused_and_copy_kept() {
    let mut net = swarm();
    // A finite but huge update is accepted once (clipping is the defence against that), the
    // one that would overflow the copy to infinity is refused.
    let seq = net.peer(0).neighbour(&1).unwrap().applied_seq;
    let huge = {
        let mut p = Peer::new(
            1u32,
            cfg(),
            Box::new(Frozen { dim: DIM }),
            Array1::from(vec![3.0e38f32; DIM]),
        )
        .unwrap();
        p.handle(0, Input::NeighbourUp(0));
        p.handle(0, Input::Start);
        p.handle(10_000_000, Input::Timer(murmur_gossip::peer::TimerToken(0)));
        p.handle(10_000_000, Input::ComputeGranted)
            .into_iter()
            .find_map(|o| match o {
                Output::Send { bytes, .. } => Some(bytes),
                _ => None,
            })
            .unwrap()
    };
    // Rewrite the sequence number so the forged update is the next expected one.
    let Message::Update(mut u) = Message::decode(&huge, usize::MAX).unwrap() else {
        panic!()
    };
    u.seq = seq + 1;
    net.input(
        0,
        Input::Message {
            from: 1,
            bytes: Message::Update(u.clone()).encode(),
        },
    );
    assert_eq!(net.peer(0).neighbour(&1).unwrap().applied_seq, seq + 1);
    u.seq = seq + 2;
    expect_rejected(
        &mut net,
        1,
        Message::Update(u).encode(),
        |r| matches!(r, RejectReason::NonFinite { .. }),
        "overflow",
    );
}

/// Real frames of every kind, mutated (bit flips, truncations, inflated bytes, random bytes):
/// the peer never panics and every frame it refuses is counted.
#[test]
fn mutated_frames_never_panic() {
    use rand::{Rng, SeedableRng};
    let mut net = swarm();
    net.recorded = Some(Vec::new());
    net.input(1, Input::NeighbourDown(0));
    net.input(1, Input::NeighbourUp(0));
    net.run_rounds(3, 20);
    let frames: Vec<Vec<u8>> = net
        .recorded
        .take()
        .unwrap()
        .into_iter()
        .filter(|(from, to, _)| *from == 1 && *to == 0)
        .map(|(_, _, b)| b)
        .collect();
    let kinds: std::collections::BTreeSet<&str> = frames
        .iter()
        .map(|f| Message::decode(f, usize::MAX).unwrap().kind())
        .collect();
    assert!(kinds.len() >= 3, "{kinds:?}");
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
    let mut fed = 0u64;
    for _ in 0..20_000 {
        let mut f = frames[rng.random_range(0..frames.len())].clone();
        match rng.random_range(0..4) {
            0 => {
                let k = rng.random_range(0..f.len());
                f[k] ^= 1 << rng.random_range(0..8);
            }
            1 => f.truncate(rng.random_range(0..f.len())),
            2 => {
                let k = rng.random_range(0..f.len());
                f[k] = 0xff;
            }
            _ => f = (0..rng.random_range(0..64)).map(|_| rng.random()).collect(),
        }
        let before = net.peer(0).stats().rejected.total();
        net.input(0, Input::Message { from: 1, bytes: f });
        fed += 1;
        let after = net.peer(0).stats().rejected.total();
        assert!(after == before || after == before + 1);
    }
    println!(
        "{fed} mutated frames, {} rejected",
        net.peer(0).stats().rejected.total()
    );
}

/// A sparse update is applied in place, touching only its entries; the one that would
/// overflow the copy is refused and the copy is left bit for bit as it was, the entries it
/// had already added undone.
#[test]
fn overflowing_sparse_update_is_refused_and_the_copy_restored_exactly() {
    let mut net = swarm();
    let seq = net.peer(0).neighbour(&1).unwrap().applied_seq;
    // Top-4 of 24: entries 0, 5, 11 and 23 carry 3e38, the rest nothing.
    let mut v = vec![0.0f32; DIM];
    for i in [0, 5, 11, 23] {
        v[i] = 3.0e38;
    }
    let frame = murmur_compress::build(
        &CodecSpec::TopK {
            density: 4.0 / DIM as f32,
        },
        0,
    )
    .compress(&v)
    .encode();
    let update = |seq: u64| {
        Message::Update(murmur_gossip::message::Update {
            seq,
            round: 0,
            degree: 1,
            frame: frame.clone(),
        })
        .encode()
    };
    net.input(
        0,
        Input::Message {
            from: 1,
            bytes: update(seq + 1),
        },
    );
    let info = net.peer(0).neighbour(&1).unwrap();
    assert_eq!(info.applied_seq, seq + 1);
    let before: Vec<u32> = info.copy.unwrap().iter().map(|x| x.to_bits()).collect();
    expect_rejected(
        &mut net,
        1,
        update(seq + 2),
        |r| matches!(r, RejectReason::NonFinite { .. }),
        "sparse overflow",
    );
    let info = net.peer(0).neighbour(&1).unwrap();
    assert_eq!(info.applied_seq, seq + 1);
    let after: Vec<u32> = info.copy.unwrap().iter().map(|x| x.to_bits()).collect();
    assert_eq!(before, after, "the refused update left a trace in the copy");
}
