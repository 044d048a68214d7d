//! Hostile peers against real daemons: five `murmur run` processes on loopback, the last of
//! them started with `--adversary` (a testing-only option that rewrites its outgoing gossip
//! frames into an attack while its protocol state stays honest, see `murmur_daemon::adversary`).
//!
//! - `huge` (values ±1e4) with `--clip-radius 10`: the four honest peers' mean accuracy stays
//!   within 2 points of the same swarm without an adversary (all five honest, the same four
//!   measured). The run without clipping is printed for `docs/reliability.md` (the damage
//!   without the defence) and asserted to be worse than the clipped run.
//! - `nan` and `wrong-dim`: the honest neighbours count the rejected frames (status
//!   `rejected_protocol` and the `murmur_rejected_total` metric) and still finish training.
//! - `replay` and `flood`: honest accuracy within 2 points of the honest swarm; the flood's
//!   mangled frames are rejected.
//!
//! The adversary is the last node, never the bootstrap node, so excluding it (the gossip peer
//! reports it as misbehaving, the daemon disconnects it) does not cut discovery.

mod reliability_common;

use std::time::{Duration, Instant};

use murmur_daemon::status::Status;
use reliability_common::{TempDir, node_args, start_node, stop_all, wait_all_done};

const PEERS: usize = 5;
const ROUNDS: u64 = 150;

/// Runs the swarm with node `PEERS - 1` attacking as `adversary` (none: all honest) and
/// returns the honest nodes' final statuses, their `/metrics` texts and the wall time.
fn run(
    name: &str,
    rounds: u64,
    adversary: Option<&str>,
    extra: &[&str],
) -> (Vec<Status>, Vec<String>, Duration) {
    let dir = TempDir::new(name);
    let started = Instant::now();
    let mut common = vec!["--eval-every", "25"];
    common.extend(extra);
    let first = start_node(&dir, 0, &node_args(0, PEERS, rounds, &common), None);
    let boot = first.addr.clone();
    let mut nodes = vec![first];
    for i in 1..PEERS {
        let mut args = node_args(i, PEERS, rounds, &common);
        if i == PEERS - 1
            && let Some(kind) = adversary
        {
            args.extend(["--adversary".to_string(), kind.to_string()]);
        }
        nodes.push(start_node(&dir, i, &args, Some(&boot)));
    }
    let honest = &nodes[..PEERS - 1];
    let statuses = wait_all_done(honest, Duration::from_secs(90));
    let metrics = honest
        .iter()
        .map(|n| {
            murmur_daemon::http::get(&n.http, "/metrics", Duration::from_secs(5))
                .unwrap_or_default()
        })
        .collect();
    let wall = started.elapsed();
    stop_all(&mut nodes);
    (statuses, metrics, wall)
}

fn mean_accuracy(statuses: &[Status]) -> f32 {
    let sum: f32 = statuses
        .iter()
        .map(|s| s.accuracy.expect("evaluated at the end"))
        .sum();
    sum / statuses.len() as f32
}

fn report(what: &str, statuses: &[Status], wall: Duration) -> f32 {
    let acc = mean_accuracy(statuses);
    let rejected: Vec<u64> = statuses.iter().map(|s| s.rejected_protocol).collect();
    let neighbours: Vec<usize> = statuses.iter().map(|s| s.neighbours.len()).collect();
    let adopted: Vec<bool> = statuses.iter().map(|s| s.adopted.is_some()).collect();
    eprintln!(
        "{what}: honest mean accuracy {acc:.4}, rejected {rejected:?}, neighbours {neighbours:?}, adopted {adopted:?}, {:.1} s",
        wall.as_secs_f64()
    );
    acc
}

#[test]
fn huge_values_are_bounded_by_clipping_within_2_points_of_the_honest_swarm() {
    // What clipping bounds is the gossip: a peer that starts late (a loaded machine) would
    // otherwise adopt the model of a neighbour ahead of it, and the attacker's snapshot model
    // is forged too. Adoption from a hostile neighbour is not defended yet (one CI run in
    // five adopted it and ended at 64%), so these runs do not adopt.
    let no_adopt = ["--set", "gossip.adopt_on_join=false"];
    let clip = ["--clip-radius", "10", no_adopt[0], no_adopt[1]];
    let (honest, _, wall) = run("hostile-baseline", ROUNDS, None, &clip);
    let baseline = report("no adversary, clip 10", &honest, wall);
    let (attacked, _, wall) = run("hostile-huge-clip", ROUNDS, Some("huge"), &clip);
    let clipped = report("huge, clip 10", &attacked, wall);
    let (unclipped, _, wall) = run("hostile-huge-noclip", ROUNDS, Some("huge"), &no_adopt);
    let damaged = report("huge, no clipping", &unclipped, wall);
    eprintln!("summary: baseline={baseline:.4} huge_clip10={clipped:.4} huge_noclip={damaged:.4}");
    assert!(
        clipped >= baseline - 0.02,
        "with clipping the honest peers reach {clipped}, the honest swarm {baseline}"
    );
    assert!(
        damaged < clipped,
        "without clipping the attack should cost accuracy ({damaged} vs {clipped})"
    );
}

/// Honest nodes reject the adversary's frames by `reason` and still finish training.
fn rejected_and_finished(kind: &str, reason: &str) {
    let (statuses, metrics, wall) = run(&format!("hostile-{kind}"), 60, Some(kind), &[]);
    report(kind, &statuses, wall);
    let total: u64 = statuses.iter().map(|s| s.rejected_protocol).sum();
    assert!(total > 0, "no honest node rejected a {kind} frame");
    let counted = metrics
        .iter()
        .filter(|m| m.contains(&format!("reason=\"{reason}\"")))
        .count();
    assert!(counted > 0, "no honest node counted a {reason:?} rejection");
    for s in &statuses {
        assert!(s.round >= 60, "{} stopped at round {}", s.peer_id, s.round);
        let acc = s.accuracy.expect("evaluated");
        assert!(
            acc.is_finite() && acc > 0.5,
            "{} reached only {acc}",
            s.peer_id
        );
    }
}

#[test]
fn non_finite_values_are_rejected_and_counted() {
    rejected_and_finished("nan", "non-finite");
}

#[test]
fn wrong_dimensions_are_rejected_and_counted() {
    rejected_and_finished("wrong-dim", "wrong-dimension");
}

/// Replays (old sequence numbers after every update) and floods (each frame nine times plus
/// eight mangled copies) cost the honest peers no more than 2 points against the honest
/// swarm; the flood's mangled frames are rejected and counted.
#[test]
fn replays_and_floods_leave_honest_accuracy_within_2_points() {
    let rounds = 100;
    let (honest, _, wall) = run("hostile-baseline-plain", rounds, None, &[]);
    let baseline = report("no adversary", &honest, wall);
    let (replayed, _, wall) = run("hostile-replay", rounds, Some("replay"), &[]);
    let replay = report("replay", &replayed, wall);
    let (flooded, _, wall) = run("hostile-flood", rounds, Some("flood"), &[]);
    let flood = report("flood", &flooded, wall);
    eprintln!("summary: baseline={baseline:.4} replay={replay:.4} flood={flood:.4}");
    assert!(
        replay >= baseline - 0.02,
        "replays: {replay} against {baseline}"
    );
    // The replayed updates were recognised as such (dropped and counted, not applied twice);
    // the honest swarm drops none.
    let dropped: Vec<u64> = replayed.iter().map(|s| s.duplicates_dropped).collect();
    assert!(
        dropped.iter().sum::<u64>() > 0,
        "no honest node counted a replayed update: {dropped:?}"
    );
    let honest_dropped: u64 = honest.iter().map(|s| s.duplicates_dropped).sum();
    assert_eq!(honest_dropped, 0, "duplicates counted in an honest swarm");
    assert!(
        flood >= baseline - 0.02,
        "flood: {flood} against {baseline}"
    );
    let rejected: u64 = flooded
        .iter()
        .map(|s| s.rejected_protocol + s.rejected_access)
        .sum();
    assert!(rejected > 0, "no honest node rejected a flooded frame");
}
