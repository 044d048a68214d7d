//! Hostile neighbours that cost honest peers something even though every bad frame is
//! rejected: replayed updates (which must not trigger snapshot resyncs), neighbours whose
//! frames are all garbage (which must be excluded so rounds stop waiting for them), snapshot
//! request floods (bounded sends), and honest lossy links (which must never trip the
//! misbehaviour policy).

mod peer_support;

use murmur_compress as compress;
use murmur_gossip::message::{Message, SnapshotRequest, Update};
use murmur_gossip::peer::testing::{Faults, LockStep};
use murmur_gossip::peer::{Algorithm, CodecSpec, Mode, PeerConfig, RejectCounts, RejectReason};
use peer_support::*;

const N: u32 = 8;
const DIM: usize = 200;

fn config(codec: CodecSpec, timeout: u64) -> PeerConfig {
    PeerConfig {
        algorithm: Algorithm::Choco { codec, gamma: 0.4 },
        local_steps: 1,
        mode: Mode::RoundTagged { timeout },
        snapshot_timeout: 3_000,
        gap_grace: 2_000,
        ..PeerConfig::default()
    }
}

fn swarm(config: &PeerConfig, seed: u64) -> LockStep {
    quadratic_swarm(config, random_vectors(N as usize, DIM, seed), 0.05)
}

fn neighbours_of(i: u32) -> Vec<u32> {
    exponential_edges(N)
        .into_iter()
        .filter_map(|(a, b)| {
            if a == i {
                Some(b)
            } else if b == i {
                Some(a)
            } else {
                None
            }
        })
        .collect()
}

fn total(net: &LockStep, f: fn(&murmur_gossip::peer::PeerStats) -> u64) -> u64 {
    net.peers().iter().map(|p| f(p.stats())).sum()
}

/// Runs `ticks` ticks; with `replay`, after each tick peer `attacker` re-sends its last
/// `replay` earlier updates to every neighbour (the frames exactly as first sent).
fn replay_run(ticks: usize, attacker: u32, replay: usize) -> LockStep {
    let cfg = config(CodecSpec::AdaptiveThreshold { density: 0.05 }, 20_000);
    let mut net = swarm(&cfg, 3);
    net.recorded = Some(Vec::new());
    net.start_with_edges(exponential_edges(N));
    let mut sent_updates: Vec<(u32, Vec<u8>)> = Vec::new();
    for _ in 0..ticks {
        net.tick();
        let log = net.recorded.replace(Vec::new()).unwrap();
        for (from, to, bytes) in log {
            if from == attacker
                && matches!(Message::decode(&bytes, usize::MAX), Ok(Message::Update(_)))
            {
                sent_updates.push((to, bytes));
            }
        }
        if replay > 0 {
            // The last `replay` updates to each neighbour, all already applied there.
            let start = sent_updates
                .len()
                .saturating_sub(replay * neighbours_of(attacker).len());
            for (to, bytes) in sent_updates[start..].iter().cloned() {
                net.inject(attacker, to, bytes);
            }
            net.deliver();
        }
    }
    net
}

#[test]
fn replayed_updates_are_dropped_without_snapshot_traffic() {
    let ticks = 120;
    let clean = replay_run(ticks, 5, 0);
    let attacked = replay_run(ticks, 5, 4);
    let replays_seen: u64 = neighbours_of(5)
        .iter()
        .map(|&j| attacked.peer(j).stats().duplicates_dropped)
        .sum();
    let (clean_bytes, attacked_bytes) = (
        total(&clean, |s| s.bytes_sent),
        total(&attacked, |s| s.bytes_sent),
    );
    println!(
        "clean: {clean_bytes} B sent, {} snapshots; replay: {attacked_bytes} B sent, {} snapshots, {replays_seen} replays dropped",
        total(&clean, |s| s.snapshots_sent),
        total(&attacked, |s| s.snapshots_sent),
    );
    assert!(replays_seen > 100, "the replays reached the neighbours");
    assert_eq!(
        total(&attacked, |s| s.snapshot_requests_sent),
        total(&clean, |s| s.snapshot_requests_sent),
        "replays must not trigger resyncs"
    );
    assert!(
        (attacked_bytes as f64) <= 1.02 * clean_bytes as f64,
        "replay run sent {attacked_bytes} B, clean {clean_bytes} B"
    );
    // Dropping a replay changes nothing: the runs are bit-identical.
    for (a, c) in attacked.peers().iter().zip(clean.peers()) {
        assert_eq!(a.round(), c.round());
        assert_eq!(a.model(), c.model(), "peer {}", a.id());
    }
    assert_copies_exact(&attacked);
    assert!(
        attacked.misbehaving.is_empty(),
        "replays are not rejections"
    );
}

/// Garbage frames of every kind an honest peer never sends, `k` selects one.
fn garbage(k: u64) -> Vec<u8> {
    let update = |frame: Vec<u8>| {
        Message::Update(Update {
            seq: 1 + k,
            round: k,
            degree: 3,
            frame,
        })
        .encode()
    };
    let mut dense = compress::build(&CodecSpec::DenseF32, 0);
    match k % 4 {
        0 => {
            // Non-finite values: a valid dense frame with one entry overwritten by NaN.
            let marker = 1234.5f32;
            let mut v = vec![0.0; DIM];
            v[7] = marker;
            let mut frame = dense.compress(&v).encode();
            let pos = frame
                .windows(4)
                .position(|w| w == marker.to_le_bytes())
                .expect("dense frame carries raw f32");
            frame[pos..pos + 4].copy_from_slice(&f32::NAN.to_le_bytes());
            update(frame)
        }
        1 => update(dense.compress(&vec![0.5; DIM + 5]).encode()),
        2 => update(vec![0xff; 40]),
        _ => vec![0xde, 0xad, 0xbe, 0xef],
    }
}

/// Peer `bad` never computes (so it never sends a real update) but keeps sending garbage to its
/// neighbours every tick; returns the ticks the honest peers took for `rounds` rounds.
fn garbage_run(threshold: u32, rounds: u64, max_ticks: usize) -> (LockStep, usize, Vec<f32>) {
    let bad = N - 1;
    let timeout_ticks = 20;
    let cfg = PeerConfig {
        misbehaviour_threshold: threshold,
        ..config(CodecSpec::DenseF32, timeout_ticks * 1_000)
    };
    let init = random_vectors(N as usize, DIM, 9);
    let mut net = frozen_swarm(&cfg, &init, &exponential_edges(N));
    net.set_compute_every(bad, u64::MAX);
    let honest: Vec<u32> = (0..bad).collect();
    let mut k = 0;
    let mut ticks = max_ticks;
    for t in 0..max_ticks {
        if honest.iter().all(|&i| net.peer(i).round() >= rounds) {
            ticks = t;
            break;
        }
        for j in neighbours_of(bad) {
            net.inject(bad, j, garbage(k));
            k += 1;
        }
        net.tick();
    }
    let mut honest_mean = vec![0.0f32; DIM];
    for x in &init[..bad as usize] {
        for (m, v) in honest_mean.iter_mut().zip(x) {
            *m += v / bad as f32;
        }
    }
    (net, ticks, honest_mean)
}

#[test]
fn garbage_sender_is_excluded_and_rounds_stop_waiting_for_it() {
    let bad = N - 1;
    let rounds = 40;
    let threshold = PeerConfig::default().misbehaviour_threshold;
    let (net, ticks, honest_mean) = garbage_run(threshold, rounds, 2_000);
    // Once excluded (after `threshold` rejections, one per tick), rounds take a tick each; the
    // first round waited at most one timeout (20 ticks).
    println!("policy on: {rounds} rounds in {ticks} ticks");
    assert!(
        ticks <= rounds as usize + 20 + 5,
        "{rounds} rounds took {ticks} ticks"
    );
    let mut flagged: Vec<(u32, u32)> = net.misbehaving.iter().map(|(i, j, _)| (*i, *j)).collect();
    flagged.sort();
    let expected: Vec<(u32, u32)> = neighbours_of(bad).into_iter().map(|j| (j, bad)).collect();
    assert_eq!(flagged, expected, "each neighbour reports it exactly once");
    for (_, _, rejected) in &net.misbehaving {
        assert_eq!(*rejected, u64::from(threshold));
    }
    for j in neighbours_of(bad) {
        let p = net.peer(j);
        assert!(p.neighbours().all(|n| *n != bad));
        assert_eq!(p.excluded().copied().collect::<Vec<_>>(), vec![bad]);
        assert_eq!(p.stats().misbehaving_excluded, 1);
        let r = &p.stats().rejected;
        assert!(r.non_finite > 0 && r.wrong_dimension > 0 && r.codec > 0);
        assert!(r.unsupported_version + r.malformed > 0);
    }
    // Later garbage is refused as coming from a non-neighbour; a reconnect is refused.
    assert!(
        net.rejected
            .iter()
            .any(|(_, from, r)| *from == bad && *r == RejectReason::NotANeighbour)
    );
    // The honest peers averaged among themselves: consensus on the honest mean.
    for i in 0..bad {
        let err: f32 = net
            .peer(i)
            .model()
            .iter()
            .zip(&honest_mean)
            .map(|(x, m)| (x - m).abs())
            .fold(0.0, f32::max);
        assert!(err < 0.05, "peer {i} is {err} from the honest mean");
    }

    // Control: without the policy every round waits for the full timeout.
    let (off, ticks_off, _) = garbage_run(0, rounds, 300);
    println!(
        "policy off: {} rounds in {ticks_off} ticks",
        off.peer(0).round()
    );
    assert!(off.misbehaving.is_empty());
    assert!(ticks_off >= 300 && off.peer(0).round() < 20);
}

#[test]
fn excluded_neighbour_is_refused_on_reconnect() {
    let bad = N - 1;
    let (mut net, _, _) = garbage_run(PeerConfig::default().misbehaviour_threshold, 5, 200);
    let j = neighbours_of(bad)[0];
    net.connect(j, bad);
    net.deliver();
    assert!(net.peer(j).neighbours().all(|n| *n != bad));
    assert_eq!(net.peer(j).stats().excluded_reconnects, 1);
}

#[test]
fn snapshot_request_flood_sends_a_bounded_number_of_snapshots() {
    let cfg = config(CodecSpec::AdaptiveThreshold { density: 0.05 }, 20_000);
    let mut net = swarm(&cfg, 4);
    net.start_with_edges(exponential_edges(N));
    let limit = u64::from(cfg.max_snapshots_per_round);
    let (victim, flooder) = (0, 1);
    let before = net.peer(victim).stats().snapshots_sent;
    let round0 = net.peer(victim).round();
    let mut nonce = 1_000;
    for _ in 0..60 {
        for _ in 0..50 {
            nonce += 1;
            let req = Message::SnapshotRequest(SnapshotRequest {
                nonce,
                want_model: true,
            })
            .encode();
            net.inject(flooder, victim, req);
        }
        net.tick();
    }
    let rounds = net.peer(victim).round() - round0;
    let served = net.peer(victim).stats().snapshots_sent - before;
    println!("{served} snapshots served for 3000 requests over {rounds} rounds");
    assert!(rounds >= 50, "the flood did not stall the victim: {rounds}");
    assert!(
        served <= limit * (rounds + 1),
        "{served} > {limit} × {rounds}"
    );
    assert!(net.peer(victim).stats().rejected.rate_limited >= 3_000 - served);
    // Rate limiting (and the unsolicited snapshots the flooder then receives) are not
    // misbehaviour: an honest peer under retries can hit them.
    assert!(net.misbehaving.is_empty());
}

#[test]
fn honest_lossy_links_never_trip_the_policy() {
    // The strictest policy: a single counted rejection would exclude a neighbour.
    let cfg = PeerConfig {
        misbehaviour_threshold: 1,
        misbehaviour_window: 1_000_000,
        ..config(CodecSpec::AdaptiveThreshold { density: 0.1 }, 4_000)
    };
    let mut net = swarm(&cfg, 5);
    net.start_with_edges(exponential_edges(N));
    net.set_faults(Some(Faults {
        drop: 0.05,
        duplicate: 0.05,
        reorder: 0.05,
        seed: 7,
    }));
    net.run_rounds(300, 4_000);
    net.set_faults(None);
    net.run_rounds(10, 200);
    println!(
        "injected drop/dup/reorder {:?}; gaps {}, duplicates {}, snapshots installed {}, rejections {}",
        net.injected,
        total(&net, |s| s.gaps_detected),
        total(&net, |s| s.duplicates_dropped),
        total(&net, |s| s.snapshots_installed),
        net.rejected.len(),
    );
    assert!(net.injected.iter().all(|&k| k > 50), "{:?}", net.injected);
    assert!(total(&net, |s| s.gaps_detected) > 0 && total(&net, |s| s.duplicates_dropped) > 0);
    assert!(net.misbehaving.is_empty(), "{:?}", net.misbehaving);
    assert!(
        net.rejected
            .iter()
            .all(|(_, _, r)| !RejectCounts::counts_as_misbehaviour(r)),
        "{:?}",
        net.rejected
    );
    for p in net.peers() {
        assert_eq!(p.excluded().count(), 0);
        assert_eq!(p.degree(), neighbours_of(*p.id()).len());
    }
    assert_copies_exact(&net);
}
