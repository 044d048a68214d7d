//! Access control across real processes: with a private-network key only key holders
//! connect; an allow-list keeps other peer ids out; per-peer rate limits count rejections.

mod common;

use std::time::Duration;

use common::{TempDir, args, start, wait_for};
use murmur_daemon::identity;

#[test]
fn a_node_without_the_pre_shared_key_cannot_connect() {
    let dir = TempDir::new("pnet");
    let key = dir.join("swarm.key");
    identity::write_secret(&key, &identity::generate_psk()).unwrap();
    let other_key = dir.join("other.key");
    identity::write_secret(&other_key, &identity::generate_psk()).unwrap();
    let k = key.to_str().unwrap();

    let a = start(
        &dir.join("a"),
        &args(&["--psk", k, "--shards", "2", "--min-peers", "2"]),
    );
    let b = start(
        &dir.join("b"),
        &args(&[
            "--psk",
            k,
            "--shard",
            "1",
            "--shards",
            "2",
            "--min-peers",
            "2",
            "--bootstrap",
            &a.addr,
        ]),
    );
    let t = Duration::from_secs(30);
    wait_for(&b, t, "key holders connect and train", |s| {
        s.neighbours == vec![a.peer_id.clone()] && s.round >= 5
    });

    // No key at all, and the wrong key: neither completes a connection.
    let outsider = start(&dir.join("c"), &args(&["--bootstrap", &a.addr]));
    let wrong = start(
        &dir.join("d"),
        &args(&["--psk", other_key.to_str().unwrap(), "--bootstrap", &a.addr]),
    );
    wait_for(&a, t, "a refused the outsiders", |s| s.rejected_access >= 2);
    std::thread::sleep(Duration::from_secs(2));
    for n in [&outsider, &wrong] {
        let s = n.status().unwrap();
        assert_eq!(s.connected_peers, 0, "{} connected", s.peer_id);
        assert!(s.neighbours.is_empty());
    }
    let s = a.status().unwrap();
    assert_eq!(s.neighbours, vec![b.peer_id.clone()]);
    assert_eq!(s.connected_peers, 1, "only the key holder is connected");
}

#[test]
fn allow_list_and_rate_limits_keep_peers_out_and_count_rejections() {
    let dir = TempDir::new("allow");
    // Learn b's id first so a can allow it.
    let b_dir = dir.join("b");
    let out = std::process::Command::new(common::binary())
        .args(["id", "--data-dir", b_dir.to_str().unwrap()])
        .output()
        .unwrap();
    let b_id = String::from_utf8(out.stdout).unwrap().trim().to_string();

    let a = start(
        &dir.join("a"),
        &args(&[
            "--allow",
            &b_id,
            "--shards",
            "2",
            "--min-peers",
            "2",
            "--max-frames-per-sec",
            "20",
        ]),
    );
    let b = start(
        &b_dir,
        &args(&[
            "--shard",
            "1",
            "--shards",
            "2",
            "--min-peers",
            "2",
            "--bootstrap",
            &a.addr,
        ]),
    );
    assert_eq!(b.peer_id, b_id);
    let t = Duration::from_secs(30);
    wait_for(&a, t, "the allowed peer is a neighbour", |s| {
        s.neighbours == vec![b_id.clone()]
    });

    let stranger = start(&dir.join("c"), &args(&["--bootstrap", &a.addr]));
    std::thread::sleep(Duration::from_secs(3));
    let s = stranger.status().unwrap();
    assert!(
        s.neighbours.is_empty() && s.connected_peers == 0,
        "stranger got in: {s:?}"
    );
    assert_eq!(a.status().unwrap().neighbours, vec![b_id.clone()]);

    // b gossips far faster than 20 frames/s: a refuses the excess and counts it.
    let metrics = murmur_daemon::http::get(&a.http, "/metrics", Duration::from_secs(5)).unwrap();
    let line = metrics
        .lines()
        .find(|l| l.starts_with("murmur_rejected_total{reason=\"rate-limit\"}"))
        .unwrap_or_else(|| panic!("no rate-limit rejections in\n{metrics}"));
    let count: f64 = line.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(count > 0.0, "{line}");
    assert!(a.status().unwrap().rejected_access as f64 >= count);
}
