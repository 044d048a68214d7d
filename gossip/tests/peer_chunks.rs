//! Chunked snapshots (`peer::transfer`): a model larger than one chunk joins, resyncs and is
//! served in chunks no frame of which outgrows the chunk size; every chunk is checked against
//! the hash its manifest announced; a bad chunk is refused and fetched again, a lost one is
//! asked again, a donor that stops answering does not stop the join; and what is assembled is
//! bit for bit what was announced.

mod peer_support;

use std::sync::atomic::{AtomicUsize, Ordering};

use murmur_gossip::message::{Message, SnapshotChunk};
use murmur_gossip::peer::testing::{Faults, LockStep};
use murmur_gossip::peer::{
    Algorithm, CodecSpec, CopyStorage, Input, JoinModel, Mode, Peer, PeerConfig, RejectReason,
    metropolis_weight,
};
use ndarray::Array1;
use peer_support::*;

const DIM: usize = 1000;
const CHUNK: usize = 64;
/// Chunks of one vector of DIM values.
const CHUNKS: u64 = DIM.div_ceil(CHUNK) as u64;

fn config(seed: u64, copies: CopyStorage) -> PeerConfig {
    PeerConfig {
        algorithm: Algorithm::Choco {
            codec: CodecSpec::AdaptiveThreshold { density: 0.05 },
            gamma: 0.3,
        },
        copies,
        local_steps: 1,
        mode: Mode::RoundTagged { timeout: 20_000 },
        seed,
        snapshot_chunk_values: CHUNK,
        snapshot_window: 3,
        ..PeerConfig::default()
    }
}

/// A trained swarm of 6 peers on the exponential graph and a fresh joiner (id 6, far from it)
/// not yet connected; frames are recorded from here on.
fn trained_swarm_and_joiner(copies: CopyStorage, join_model: JoinModel) -> (LockStep, u32) {
    let centres = random_vectors(7, DIM, 31);
    let make = |i: u32, init: f32| {
        let learner = Quadratic {
            centre: centres[i as usize].clone(),
            lr: 0.05,
            steps: 0,
        };
        let config = PeerConfig {
            join_model,
            ..config(i.into(), copies)
        };
        Peer::new(i, config, Box::new(learner), Array1::from_elem(DIM, init)).unwrap()
    };
    let mut net = LockStep::new((0..6).map(|i| make(i, 0.0)).collect(), 1_000);
    net.start_with_edges(exponential_edges(6));
    net.run_rounds(30, 600);
    let joiner = net.add_peer(make(6, 40.0));
    net.recorded = Some(Vec::new());
    (net, joiner)
}

fn join(net: &mut LockStep, joiner: u32, neighbours: &[u32]) {
    for &j in neighbours {
        net.connect(joiner, j);
    }
    net.input(joiner, Input::Start);
    net.deliver();
}

/// The Metropolis-weighted mean of the public copies of `donors`, in id order and in f64, as
/// a joiner of degree `degree` computes it.
fn mean_of_copies(net: &LockStep, donors: &[u32], degree: usize) -> Vec<f32> {
    let w = |j: u32| metropolis_weight(degree, net.peer(j).degree());
    let total: f64 = donors.iter().map(|&j| w(j)).sum();
    (0..DIM)
        .map(|k| {
            let sum: f64 = donors
                .iter()
                .map(|&j| w(j) * f64::from(net.peer(j).public_copy()[k]))
                .sum();
            (sum / total) as f32
        })
        .collect()
}

/// The largest frame recorded, manifests aside (one hash per chunk, checked on their own).
fn largest_frame(net: &LockStep) -> usize {
    let frames = net.recorded.as_ref().unwrap();
    for (_, _, b) in frames {
        if let Ok(Message::SnapshotManifest(m)) = Message::decode(b, usize::MAX) {
            assert!(m.chunk_hashes.len() as u64 <= 2 * CHUNKS);
            assert!(
                b.len() <= 64 * CHUNKS as usize + 64,
                "a {}-byte manifest",
                b.len()
            );
        }
    }
    frames
        .iter()
        .filter(|(_, _, b)| {
            !matches!(
                Message::decode(b, usize::MAX),
                Ok(Message::SnapshotManifest(_))
            )
        })
        .map(|(_, _, b)| b.len())
        .max()
        .unwrap_or(0)
}

fn count_kind(net: &LockStep, kind: &str) -> usize {
    net.recorded
        .as_ref()
        .unwrap()
        .iter()
        .filter(|(_, _, b)| Message::decode(b, usize::MAX).is_ok_and(|m| m.kind() == kind))
        .count()
}

#[test]
fn a_large_joiner_streams_the_copies_in_chunks_and_adopts_their_mean() {
    let (mut net, joiner) = trained_swarm_and_joiner(CopyStorage::PerNeighbour, JoinModel::Average);
    join(&mut net, joiner, &[0, 2, 3]);
    assert_eq!(net.adopted.len(), 1, "{:?}", net.adopted);
    assert!(net.rejected.is_empty(), "{:?}", net.rejected);
    // Bit for bit the mean of the three copies announced (nobody has moved since).
    assert_eq!(
        net.peer(joiner).model().to_vec(),
        mean_of_copies(&net, &[0, 2, 3], 3)
    );
    let stats = net.peer(joiner).stats();
    assert_eq!(
        stats.snapshot_chunks_received,
        3 * CHUNKS,
        "every chunk once"
    );
    assert_eq!(stats.local_steps, 0);
    // No frame of the join was larger than a chunk and its header, although one dense
    // snapshot would be 4000 bytes.
    let largest = largest_frame(&net);
    assert!(largest <= 4 * CHUNK + 64, "a {largest}-byte frame");
    assert_eq!(count_kind(&net, "snapshot"), 0, "no one-frame snapshot");

    // The joiner's public copy jumped to the adopted model: announced by hello, pulled by
    // its neighbours in chunks, so their copies are exact and training goes on.
    let everyone: Vec<u32> = (0..=joiner).collect();
    net.run_until_round(&everyone, net.peer(joiner).round() + 10, 400);
    assert_copies_exact(&net);
    let largest = largest_frame(&net);
    assert!(largest <= 4 * CHUNK + 64, "a {largest}-byte frame");
    for j in [0, 2, 3] {
        assert!(
            net.peer(j).stats().snapshot_chunks_received >= CHUNKS,
            "peer {j} pulled the joiner's copy in chunks"
        );
    }
    let gap = net
        .peer(joiner)
        .model()
        .iter()
        .zip(net.mean_model())
        .map(|(x, m)| (f64::from(*x) - m).abs())
        .fold(0.0, f64::max);
    assert!(gap < 1.0, "the joiner is far from the swarm: {gap}");
}

#[test]
fn with_aggregate_storage_the_joiner_adopts_the_mean_of_the_sum() {
    let (mut net, joiner) = trained_swarm_and_joiner(CopyStorage::Aggregate, JoinModel::Average);
    join(&mut net, joiner, &[1, 4]);
    assert_eq!(net.adopted.len(), 1, "{:?}", net.adopted);
    // The sum adds the copies in arrival order, so the mean agrees to rounding.
    let expected = mean_of_copies(&net, &[1, 4], 2);
    for (a, b) in net.peer(joiner).model().iter().zip(&expected) {
        assert!((a - b).abs() <= 1e-5 * b.abs().max(1.0), "{a} vs {b}");
    }
    let everyone: Vec<u32> = (0..=joiner).collect();
    net.run_until_round(&everyone, net.peer(joiner).round() + 5, 400);
    assert!(net.rejected.is_empty(), "{:?}", net.rejected);
}

#[test]
fn a_donor_model_larger_than_a_chunk_arrives_in_chunks_bit_for_bit() {
    let (mut net, joiner) = trained_swarm_and_joiner(CopyStorage::PerNeighbour, JoinModel::Donor);
    join(&mut net, joiner, &[0, 2]);
    assert_eq!(net.adopted.len(), 1, "{:?}", net.adopted);
    let (_, from, _) = net.adopted[0];
    assert_eq!(
        net.peer(joiner).model().to_vec(),
        net.peer(from).model().to_vec()
    );
    // x̂ and x from the donor, x̂ from the other.
    assert_eq!(
        net.peer(joiner).stats().snapshot_chunks_received,
        3 * CHUNKS
    );
    assert!(largest_frame(&net) <= 4 * CHUNK + 64);
}

/// Flips a bit of the first chunk peer 2 sends to the joiner (id 6).
#[allow(clippy::ptr_arg)] // the `Rewrite` signature
fn corrupt_first_chunk_from_2(from: u32, to: u32, bytes: &mut Vec<u8>) -> bool {
    static DONE: AtomicUsize = AtomicUsize::new(0);
    if from == 2
        && to == 6
        && matches!(
            Message::decode(bytes, usize::MAX),
            Ok(Message::SnapshotChunk(_))
        )
        && DONE.fetch_add(1, Ordering::SeqCst) == 0
    {
        let last = bytes.len() - 1;
        bytes[last] ^= 0x40;
    }
    true
}

#[test]
fn a_chunk_with_a_wrong_hash_is_refused_and_fetched_again() {
    let (mut net, joiner) = trained_swarm_and_joiner(CopyStorage::PerNeighbour, JoinModel::Average);
    net.rewrite = Some(corrupt_first_chunk_from_2);
    join(&mut net, joiner, &[0, 2, 3]);
    let bad: Vec<_> = net
        .rejected
        .iter()
        .filter(|(to, _, r)| *to == joiner && matches!(r, RejectReason::BadChunk { .. }))
        .collect();
    assert_eq!(bad.len(), 1, "{:?}", net.rejected);
    assert_eq!(bad[0].1, 2, "charged to the donor that sent it");
    assert_eq!(net.peer(joiner).stats().rejected.bad_chunk, 1);
    // Fetched again, and the mean is exact: the bad bits never reached the model.
    assert_eq!(net.adopted.len(), 1);
    assert_eq!(
        net.peer(joiner).model().to_vec(),
        mean_of_copies(&net, &[0, 2, 3], 3)
    );
    assert_eq!(
        net.peer(joiner).stats().snapshot_chunks_received,
        3 * CHUNKS
    );
}

/// Peer 3 stops answering the joiner after its manifest (as if it died mid-download).
#[allow(clippy::ptr_arg)] // the `Rewrite` signature
fn donor_3_dies_after_its_manifest(from: u32, to: u32, bytes: &mut Vec<u8>) -> bool {
    !(from == 3
        && to == 6
        && matches!(
            Message::decode(bytes, usize::MAX),
            Ok(Message::SnapshotChunk(SnapshotChunk { .. }))
        ))
}

#[test]
fn a_donor_that_dies_mid_download_does_not_stop_the_join() {
    let (mut net, joiner) = trained_swarm_and_joiner(CopyStorage::PerNeighbour, JoinModel::Average);
    net.rewrite = Some(donor_3_dies_after_its_manifest);
    join(&mut net, joiner, &[0, 2, 3]);
    assert!(net.adopted.is_empty(), "waits for the copy under way");
    // Its connection drops: the join goes on with the two others.
    net.rewrite = None;
    net.disconnect(joiner, 3);
    net.deliver();
    assert_eq!(net.adopted.len(), 1, "{:?}", net.adopted);
    assert_eq!(
        net.peer(joiner).model().to_vec(),
        mean_of_copies(&net, &[0, 2], 2)
    );
}

#[test]
fn chunks_lost_on_the_way_are_asked_again() {
    let (mut net, joiner) = trained_swarm_and_joiner(CopyStorage::PerNeighbour, JoinModel::Average);
    net.set_faults(Some(Faults {
        drop: 0.15,
        duplicate: 0.05,
        reorder: 0.05,
        seed: 4,
    }));
    join(&mut net, joiner, &[0, 2, 3]);
    for _ in 0..20_000 {
        if !net.adopted.is_empty() {
            break;
        }
        net.tick();
    }
    assert_eq!(net.adopted.len(), 1, "joined despite losses");
    assert!(net.injected[0] > 0, "frames were dropped");
    assert!(
        net.peer(joiner).stats().snapshot_retries > 0,
        "lost chunks were asked again"
    );
    net.set_faults(None);
    // Once the losses stop, every copy is repaired (by chunked snapshots, whose retries take
    // a `snapshot_timeout` each) and exact.
    let everyone: Vec<u32> = (0..=joiner).collect();
    net.run_until_round(&everyone, net.peer(joiner).round() + 10, 2_000);
    let repaired = |net: &LockStep| {
        net.peers().iter().all(|p| {
            p.neighbours().all(|j| {
                let info = p.neighbour(j).unwrap();
                !info.awaiting_snapshot && info.applied_seq == net.peer(*j).seq()
            })
        })
    };
    let mut ticks = 0;
    while !repaired(&net) && ticks < 20_000 {
        net.tick();
        ticks += 1;
    }
    println!("repaired after {ticks} more ticks");
    assert_copies_exact(&net);
}

#[test]
fn a_manifest_whose_hashes_do_not_add_up_is_refused_before_anything_is_allocated() {
    fn break_root(_: u32, to: u32, bytes: &mut Vec<u8>) -> bool {
        static DONE: AtomicUsize = AtomicUsize::new(0);
        if to == 6
            && let Ok(Message::SnapshotManifest(mut m)) = Message::decode(bytes, usize::MAX)
            && DONE.fetch_add(1, Ordering::SeqCst) == 0
        {
            m.root[0] ^= 1;
            *bytes = Message::SnapshotManifest(m).encode();
        }
        true
    }
    let (mut net, joiner) = trained_swarm_and_joiner(CopyStorage::PerNeighbour, JoinModel::Average);
    net.rewrite = Some(break_root);
    join(&mut net, joiner, &[0, 2]);
    assert!(
        net.rejected.iter().any(|(to, _, r)| *to == joiner
            && *r
                == RejectReason::InvalidField {
                    what: "manifest root hash"
                }),
        "{:?}",
        net.rejected
    );
    // The request is retried after its timeout and the join completes, exactly.
    for _ in 0..3000 {
        if !net.adopted.is_empty() {
            break;
        }
        net.tick();
    }
    assert_eq!(net.adopted.len(), 1);
    // An unsolicited chunk is refused and named, and changes nothing.
    let model = net.peer(joiner).model().to_vec();
    net.inject(
        0,
        joiner,
        Message::SnapshotChunk(SnapshotChunk {
            nonce: 999,
            index: 0,
            values: vec![1.0; CHUNK],
        })
        .encode(),
    );
    net.deliver();
    assert_eq!(
        net.rejected.last().map(|(_, _, r)| r.clone()),
        Some(RejectReason::UnsolicitedSnapshot)
    );
    assert_eq!(net.peer(joiner).model().to_vec(), model);
}

#[test]
fn a_snapshot_within_one_chunk_is_still_one_frame() {
    let centres = random_vectors(3, 40, 5);
    let mut net = quadratic_swarm(&config(0, CopyStorage::PerNeighbour), centres, 0.05);
    net.start_with_edges(ring_edges(3));
    net.run_rounds(5, 100);
    net.recorded = Some(Vec::new());
    net.disconnect(0, 1);
    net.connect(0, 1);
    net.deliver();
    assert!(count_kind(&net, "snapshot") > 0);
    assert_eq!(count_kind(&net, "snapshot-manifest"), 0);
}
