//! Per-edge figures ([`LinkStats`]) and the last update's figures ([`UpdateFigures`]): what a
//! dashboard shows must add up to the peer's totals, match the other end of the edge and the
//! codec, and follow the edge's life.

mod peer_support;

use murmur_compress::{CodecSpec, build, entropy_bound_bits_per_entry};
use murmur_gossip::peer::testing::LockStep;
use murmur_gossip::peer::{Algorithm, Input, LinkStats, Mode, Peer, PeerConfig, UpdateFigures};
use ndarray::Array1;
use peer_support::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const DIM: usize = 2_000;

fn cfg(mode: Mode) -> PeerConfig {
    PeerConfig {
        algorithm: Algorithm::Choco {
            codec: CodecSpec::TopK { density: 0.01 },
            gamma: 0.5,
        },
        local_steps: 1,
        mode,
        fingerprint: 7,
        misbehaviour_threshold: 0,
        ..PeerConfig::default()
    }
}

fn triangle(mode: Mode) -> LockStep {
    let peers = (0..3)
        .map(|i| {
            let learner = Quadratic {
                centre: vec![i as f32 - 1.0; DIM],
                lr: 0.1,
                steps: 0,
            };
            Peer::new(i, cfg(mode.clone()), Box::new(learner), Array1::zeros(DIM)).unwrap()
        })
        .collect();
    let mut net = LockStep::new(peers, 1_000);
    net.start_with_edges([(0, 1), (1, 2), (0, 2)]);
    net
}

fn link(net: &LockStep, i: u32, j: u32) -> LinkStats {
    net.peer(i)
        .link_stats(&j)
        .unwrap_or_else(|| panic!("{i} has no edge to {j}"))
        .clone()
}

#[test]
fn links_add_up_to_the_totals_and_match_the_other_end() {
    let mut net = triangle(Mode::RoundTagged { timeout: 10_000 });
    net.run_rounds(12, 200);
    for i in 0..3u32 {
        let p = net.peer(i);
        let links: Vec<LinkStats> = p.neighbours().map(|j| link(&net, i, *j)).collect();
        let sum = |f: fn(&LinkStats) -> u64| links.iter().map(f).sum::<u64>();
        let s = p.stats();
        // Every frame of a clean run goes to or comes from a neighbour.
        assert_eq!(sum(|l| l.bytes_sent), s.bytes_sent, "peer {i}");
        assert_eq!(sum(|l| l.messages_sent), s.messages_sent, "peer {i}");
        assert_eq!(sum(|l| l.bytes_received), s.bytes_received, "peer {i}");
        assert_eq!(sum(|l| l.updates_sent), s.updates_sent, "peer {i}");
        assert_eq!(sum(|l| l.update_bytes_sent), s.update_bytes_sent);
        assert_eq!(sum(|l| l.update_entries_sent), s.update_entries_sent);
        assert_eq!(sum(|l| l.updates_applied), s.updates_applied);
        for j in p.neighbours() {
            let (mine, theirs) = (link(&net, i, *j), link(&net, *j, i));
            // The lock-step network loses nothing: what i sent j, j received from i
            // (frames still in flight at the end excepted).
            assert!(theirs.bytes_received <= mine.bytes_sent);
            assert!(
                mine.bytes_sent - theirs.bytes_received <= 2 * mine.update_bytes_sent / 12,
                "{i}->{j}: sent {} received {}",
                mine.bytes_sent,
                theirs.bytes_received
            );
            assert!(theirs.updates_applied >= mine.updates_sent - 1);
            // Lock-step rounds mix only this round's contributions.
            assert_eq!(mine.last_staleness, Some(0), "{i}->{j}");
            assert_eq!(mine.rejected.total(), 0);
        }
    }
}

#[test]
fn bits_per_entry_sit_above_the_entropy_bound_of_what_was_sent() {
    let mut net = triangle(Mode::RoundTagged { timeout: 10_000 });
    net.run_rounds(8, 200);
    let l = link(&net, 0, 1);
    let k = (0.01 * DIM as f64).ceil() as usize;
    // Top-k sends exactly k entries per update, so the bound is the one of density k/d.
    assert_eq!(l.update_entries_sent, k as u64 * l.updates_sent);
    let bound = entropy_bound_bits_per_entry(k, DIM).unwrap();
    let per_link = l.entropy_bound_bits_per_entry().unwrap();
    assert!((per_link - bound).abs() < 1e-9, "{per_link} vs {bound}");
    // Top-k carries f32 values: far above the sign-only bound, but never below it.
    let bits = l.bits_per_entry().unwrap();
    assert!(
        bits > bound && bits > 32.0,
        "{bits} bits/entry, bound {bound}"
    );
    let last = net.peer(0).last_update().expect("updates were sent");
    assert_eq!((last.nnz, last.dim), (k, DIM));
    assert!((last.density() - k as f64 / DIM as f64).abs() < 1e-12);
    assert!(last.residual_norm < last.input_norm);
}

#[test]
fn the_residual_norm_is_what_the_update_left_of_x_minus_x_hat() {
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let v: Vec<f32> = (0..5_000).map(|_| rng.random_range(-1.0f32..1.0)).collect();
    for spec in [
        CodecSpec::AdaptiveThreshold { density: 0.01 },
        CodecSpec::ScaledThreshold { density: 0.1 },
        CodecSpec::TopK { density: 0.05 },
        CodecSpec::DenseF16,
    ] {
        let q = build(&spec, 1).compress(&v);
        let f = UpdateFigures::measure(4, &v, &q);
        let dense = q.to_dense();
        let direct = v
            .iter()
            .zip(&dense)
            .map(|(a, b)| (f64::from(*a) - f64::from(*b)).powi(2))
            .sum::<f64>()
            .sqrt();
        let input = v.iter().map(|a| f64::from(*a).powi(2)).sum::<f64>().sqrt();
        assert!(
            (f.residual_norm - direct).abs() <= 1e-6 * input,
            "{spec:?}: {} vs {direct}",
            f.residual_norm
        );
        assert!((f.input_norm - input).abs() <= 1e-9 * input);
        assert_eq!((f.round, f.nnz, f.dim), (4, q.nnz(), v.len()));
    }
}

#[test]
fn a_rejection_is_counted_on_the_edge_it_came_from_only() {
    let mut net = triangle(Mode::RoundTagged { timeout: 10_000 });
    net.run_rounds(3, 100);
    net.inject(1, 0, vec![0xff; 9]);
    net.deliver();
    assert_eq!(link(&net, 0, 1).rejected.total(), 1);
    assert_eq!(link(&net, 0, 2).rejected.total(), 0);
    assert_eq!(net.peer(0).stats().rejected.total(), 1);
}

#[test]
fn an_edge_that_comes_back_starts_from_zero() {
    let mut net = triangle(Mode::RoundTagged { timeout: 10_000 });
    net.run_rounds(4, 100);
    assert!(link(&net, 0, 1).bytes_sent > 0);
    net.disconnect(0, 1);
    assert!(net.peer(0).link_stats(&1).is_none());
    net.input(0, Input::NeighbourUp(1));
    net.input(1, Input::NeighbourUp(0));
    let fresh = link(&net, 0, 1);
    assert!(
        fresh.update_bytes_sent == 0 && fresh.updates_applied == 0,
        "{fresh:?}"
    );
}

#[test]
fn a_straggler_shows_its_staleness_and_damping_on_its_edges() {
    let mut net = triangle(Mode::Async {
        max_staleness: 4,
        damping: 0.5,
        timeout: 3_000,
    });
    net.set_compute_every(2, 6);
    for _ in 0..400 {
        net.tick();
    }
    let l = link(&net, 0, 2);
    let fast = link(&net, 0, 1);
    println!("straggler edge {l:?}\nfast edge {fast:?}");
    // The straggler falls more than max_staleness behind: its contributions are dropped.
    assert!(l.stale_dropped > 0, "{l:?}");
    // The fast neighbour is never dropped; in async mode its update for a round may arrive
    // after the mix, so it is at most a round stale and damped for that.
    assert_eq!(fast.stale_dropped, 0, "{fast:?}");
    assert!(fast.last_staleness.is_some_and(|s| s <= 1), "{fast:?}");
    assert!(fast.damped_contributions <= fast.updates_applied);
}
