//! A model above one snapshot chunk and above the aggregate threshold, across real processes:
//! `mlp:1024,1024` on the digits (1,126,410 parameters: a dense snapshot of x̂ and x would be
//! 9 MB against the 4 MiB frame cap). Three daemons train with the defaults (`copies =
//! "auto"` picks the aggregate sum at this size); a fourth joins and must adopt the mean of
//! several neighbours' copies, streamed to it in verified chunks, before its first step; then
//! a node killed with SIGKILL restarts from its checkpoint, has its neighbours' copies
//! resynchronised in chunks and trains on. `scripts/large_model.sh` runs the same at 10M.

mod common;

use std::time::Duration;

use common::{TempDir, args, start, wait_for};

const MODEL: &str = "mlp:1024,1024";
const PARAMS: u64 = 64 * 1024 + 1024 + 1024 * 1024 + 1024 + 1024 * 10 + 10;

#[test]
fn a_large_model_joins_in_chunks_from_several_neighbours_and_survives_kill_9() {
    let dir = TempDir::new("large-model");
    let node = |i: usize| {
        args(&[
            "--model",
            MODEL,
            "--shard",
            &i.to_string(),
            "--shards",
            "4",
            "--min-peers",
            "3",
            "--eval-every",
            "5",
            "--checkpoint-every",
            "5",
        ])
    };
    let first = start(&dir.join("n0"), &node(0));
    let mut nodes = vec![first];
    for i in 1..3 {
        let mut a = node(i);
        a.extend(args(&["--bootstrap", &nodes[0].addr]));
        nodes.push(start(&dir.join(&format!("n{i}")), &a));
    }
    let t = Duration::from_secs(180);
    let swarm = wait_for(&nodes[0], t, "the swarm past round 20 and learning", |s| {
        s.round >= 20 && s.accuracy.is_some_and(|a| a > 0.5)
    });
    assert_eq!(swarm.model_bytes, 4 * PARAMS, "the model is the size named");
    assert_eq!(swarm.copies, "aggregate", "auto storage at 1.1M parameters");

    let mut a = node(3);
    a.extend(args(&["--bootstrap", &nodes[0].addr]));
    let joiner = start(&dir.join("n3"), &a);
    let status = wait_for(&joiner, t, "the joiner adopted the swarm's model", |s| {
        s.adopted.is_some() && s.accuracy.is_some()
    });
    assert_eq!(status.steps_before_adoption, Some(0));
    let donors = status.adopted_donors.unwrap();
    assert!(donors >= 2, "made of {donors} neighbours' copies");
    // Every donor's copy came in chunks of 2^18 values: 5 per copy at this size.
    let per_copy = PARAMS.div_ceil(1 << 18);
    assert!(
        status.snapshot_chunks_received >= u64::from(donors) * per_copy,
        "{} chunks for {donors} copies of {per_copy}",
        status.snapshot_chunks_received
    );
    assert_eq!(status.rejected_protocol, 0, "nothing refused");
    let acc = status.accuracy.unwrap();
    assert!(
        acc > 0.5,
        "the joiner's first evaluation shows the swarm's model ({acc})"
    );

    // kill -9 one of the first three once it has a checkpoint; it resumes and trains on, and
    // its neighbours' copies of it are repaired by chunked snapshots.
    let victim = 2;
    let before = wait_for(&nodes[victim], t, "a checkpoint to resume from", |s| {
        s.last_checkpoint.is_some()
    });
    nodes[victim].signal("KILL").expect("kill -9");
    let _ = nodes[victim].child.wait();
    let mut a = node(victim);
    a.extend(args(&["--bootstrap", &nodes[0].addr]));
    nodes[victim] = start(&dir.join(&format!("n{victim}")), &a);
    let resumed = wait_for(&nodes[victim], t, "the restarted node trains on", |s| {
        s.resumed_from.is_some() && s.round >= s.resumed_from.unwrap() + 10
    });
    let from = resumed.resumed_from.unwrap();
    assert!(
        from >= before.last_checkpoint.unwrap(),
        "resumed from {from}, checkpoint was {:?}",
        before.last_checkpoint
    );
    assert!(
        resumed.adopted.is_none(),
        "a resumed node keeps its own model"
    );
    let served: u64 = nodes
        .iter()
        .chain([&joiner])
        .filter_map(|n| n.status().ok())
        .map(|s| s.snapshot_chunks_sent)
        .sum();
    assert!(
        served >= u64::from(donors) * per_copy,
        "chunks served: {served}"
    );
}
