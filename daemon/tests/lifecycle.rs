//! Node lifecycle across real processes: SIGTERM leaves a checkpoint and a restart resumes
//! from exactly that round; a daemon joining a running swarm adopts its neighbours' model
//! before its first local step: the mean of their public copies (`gossip.join_model =
//! "average"`, the default) or one donor's model (`"donor"`).

mod common;

use std::time::Duration;

use common::{TempDir, args, log, start, wait_for};
use murmur_daemon::checkpoint;

#[test]
fn sigterm_leaves_a_checkpoint_and_a_restart_resumes_from_that_round() {
    let dir = TempDir::new("restart");
    let shard = |i: usize| {
        args(&[
            "--shard",
            &i.to_string(),
            "--shards",
            "2",
            "--min-peers",
            "2",
        ])
    };
    let a = start(&dir.join("a"), &shard(0));
    let mut b_args = shard(1);
    b_args.extend(args(&["--bootstrap", &a.addr, "--checkpoint-every", "0"]));
    let mut b = start(&dir.join("b"), &b_args);
    let t = Duration::from_secs(60);
    wait_for(&b, t, "b past round 50", |s| s.round >= 50);

    assert!(
        b.stop(Duration::from_secs(10)).unwrap(),
        "clean exit on SIGTERM"
    );
    let ckpt_dir = dir.join("b").join("checkpoints");
    let saved = checkpoint::newest(&ckpt_dir).expect("checkpoint written on SIGTERM");
    let round = saved.meta.round;
    assert!(round >= 50, "checkpoint at round {round}");
    assert!(log(&b).contains(&format!("checkpoint round={round}")));
    drop(b);

    // Alone, a swarm member does not race ahead on its own shard: it pauses.
    let paused = wait_for(&a, t, "a paused without neighbours", |s| {
        s.phase == "isolated"
    });
    std::thread::sleep(Duration::from_millis(500));
    let later = a.status().unwrap();
    assert!(
        later.round <= paused.round + 1,
        "{} -> {}",
        paused.round,
        later.round
    );

    let b = start(&dir.join("b"), &b_args);
    let status = wait_for(&b, t, "b resumed and training", |s| s.round > round + 20);
    assert_eq!(status.resumed_from, Some(round));
    assert!(log(&b).contains(&format!("resumed round={round}")));

    // `murmur status` prints the same node; /metrics carries murmur's and libp2p's metrics.
    let out = std::process::Command::new(common::binary())
        .args(["status", "--addr", &b.http])
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains(&b.peer_id) && text.contains(&format!("resumed    from round {round}")),
        "{text}"
    );
    let metrics = murmur_daemon::http::get(&b.http, "/metrics", Duration::from_secs(5)).unwrap();
    for name in [
        "murmur_round ",
        "murmur_bytes_sent_total ",
        "libp2p_swarm_",
        "libp2p_bandwidth_bytes_total",
    ] {
        assert!(metrics.contains(name), "{name} missing from\n{metrics}");
    }
    // Resumed, not restarted: it never went back to round 0 and its model is a trained one.
    assert!(status.adopted.is_none(), "a resumed node does not adopt");
    drop(a);
}

#[test]
fn a_daemon_joining_a_running_swarm_adopts_the_model_before_training() {
    let donors = join_a_running_swarm("join", "average");
    assert!(
        donors >= 2,
        "the mean of several neighbours' copies, got {donors}"
    );
}

#[test]
fn a_daemon_joining_with_a_donor_adopts_one_neighbours_model() {
    assert_eq!(join_a_running_swarm("join-donor", "donor"), 1);
}

/// Three daemons train; a fourth joins with `gossip.join_model = join_model` and must adopt
/// a trained model before its first step. Returns how many neighbours it was made of.
fn join_a_running_swarm(name: &str, join_model: &str) -> u32 {
    let dir = TempDir::new(name);
    let setting = format!("gossip.join_model={join_model}");
    let shard = |i: usize| {
        args(&[
            "--shard",
            &i.to_string(),
            "--shards",
            "4",
            "--min-peers",
            "3",
            "--eval-every",
            "10",
            "--set",
            &setting,
        ])
    };
    let first = start(&dir.join("n0"), &shard(0));
    let mut others = Vec::new();
    for i in 1..3 {
        let mut a = shard(i);
        a.extend(args(&["--bootstrap", &first.addr]));
        others.push(start(&dir.join(&format!("n{i}")), &a));
    }
    let t = Duration::from_secs(60);
    let swarm = wait_for(&first, t, "swarm past round 150", |s| {
        s.round >= 150 && s.accuracy.is_some_and(|a| a > 0.8)
    });

    let mut a = shard(3);
    a.extend(args(&["--bootstrap", &first.addr]));
    let joiner = start(&dir.join("n3"), &a);
    let status = wait_for(&joiner, t, "the joiner adopted a model", |s| {
        s.adopted.is_some() && s.accuracy.is_some()
    });
    let (from, round) = status.adopted.clone().unwrap();
    assert_eq!(
        status.steps_before_adoption,
        Some(0),
        "adopted before any local step"
    );
    assert!(
        round >= swarm.round,
        "adopted round {round} < swarm round {}",
        swarm.round
    );
    assert!(
        [&first]
            .iter()
            .chain(others.iter().collect::<Vec<_>>().iter())
            .any(|n| n.peer_id == from),
        "adopted from a swarm member"
    );
    // Its first evaluation already shows the swarm's accuracy, not a fresh model's.
    let acc = status.accuracy.unwrap();
    assert!(acc > 0.8, "joiner accuracy {acc} right after joining");
    let donors = status.adopted_donors.expect("donor count reported");
    assert!(
        log(&joiner).contains(&format!("adopted from={from} donors={donors}")),
        "the log says where the model came from"
    );
    donors
}
