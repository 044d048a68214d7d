//! The NAT lab of `docs/deploy.md`, in network namespaces this test creates: a "public"
//! namespace holding the bootstrap node, which also serves as a circuit relay, and two
//! "private" namespaces, each joined to the public one by a veth pair, that can reach the
//! public node but not each other (no route between them, and the public namespace does not
//! forward: `net.ipv4.ip_forward = 0`). The private nodes listen on their namespace's
//! loopback only, so no peer can dial them: the no-inbound half of a NAT, without NAT tools
//! (this machine has no iptables, nft or tc).
//!
//! It must show the two private nodes training together through the relay (each lists the
//! other as a relayed neighbour and gossip bytes crossed the circuit), AutoNAT reporting them
//! private and the public node public, their reservations on the relay, a DCUtR hole punch
//! attempted and counted (it cannot succeed without a route), and the worst final accuracy
//! within 2 points of the same three nodes connected directly on loopback.
//!
//! Prints `SKIPPED:` with the reason where namespaces cannot be made.

mod common;

use std::time::{Duration, Instant};

use common::netns::{Namespaces, exec, ip, log, node_file, spawn_in, unavailable, veth, wait_done};
use common::{TempDir, args, binary, doc_block, start, wait_for};

/// Rounds each node trains: long enough (about 30 s here) that the relayed edge, which comes
/// up some 10 s in (AutoNAT's first probe, the reservation, then discovery finding the
/// relayed address), carries a good part of the run.
const ROUNDS: u64 = 2000;
/// Nodes in either run: the public one (shard 0) and two private ones.
const NODES: usize = 3;
/// The public node's address, on its namespace's loopback: local to the public namespace,
/// reached from each private one through its own veth (no forwarding needed).
const PUBLIC_IP: &str = "10.232.0.1";

/// The lab's namespaces: [public, private a, private b].
fn create() -> Result<(Namespaces, [String; 3]), String> {
    let id = std::process::id() % 100_000;
    let names = [
        format!("murmur-lab-pub-{id}"),
        format!("murmur-lab-a-{id}"),
        format!("murmur-lab-b-{id}"),
    ];
    let mut ns = Namespaces::default();
    for name in &names {
        ns.add(name)?;
    }
    let public = names[0].as_str();
    ip(&[
        "-n",
        public,
        "addr",
        "add",
        &format!("{PUBLIC_IP}/32"),
        "dev",
        "lo",
    ])?;
    exec(public, &["sysctl", "-qw", "net.ipv4.ip_forward=0"])?;
    for (side, private) in names[1..].iter().enumerate() {
        let net = side + 1;
        veth(
            (
                public,
                &format!("mlp{net}{id}"),
                &format!("10.232.{net}.1/24"),
            ),
            (
                private,
                &format!("mlq{net}{id}"),
                &format!("10.232.{net}.2/24"),
            ),
        )?;
        // Only the public node's address is routed: nothing leads to the other private net.
        ip(&[
            "-n",
            private,
            "route",
            "add",
            &format!("{PUBLIC_IP}/32"),
            "via",
            &format!("10.232.{net}.1"),
        ])?;
    }
    Ok((ns, names))
}

/// Top-k updates: some 0.5 KiB per update, so each circuit carries well over libp2p's default
/// circuit limit of 128 KiB and lives only by `relay.max_circuit_bytes`.
const CODEC: &str = "topk:0.1";

fn node_args(i: usize) -> Vec<String> {
    args(&[
        "--codec",
        CODEC,
        "--shard",
        &i.to_string(),
        "--shards",
        &NODES.to_string(),
        "--min-peers",
        &NODES.to_string(),
        "--max-rounds",
        &ROUNDS.to_string(),
    ])
}

/// The same three nodes with direct connections on loopback: the worst final accuracy.
fn direct_run(dir: &TempDir) -> f64 {
    let first = start(&dir.join("direct-0"), &node_args(0));
    let mut rest = Vec::new();
    for i in 1..NODES {
        let mut a = node_args(i);
        a.extend(args(&["--bootstrap", &first.addr]));
        rest.push(start(&dir.join(&format!("direct-{i}")), &a));
    }
    let done = |s: &murmur_daemon::status::Status| s.done;
    let mut worst = f64::INFINITY;
    for node in std::iter::once(&first).chain(&rest) {
        let s = wait_for(
            node,
            Duration::from_secs(240),
            "a direct node to finish",
            done,
        );
        assert_eq!(s.round, ROUNDS);
        worst = worst.min(f64::from(s.accuracy.unwrap_or(0.0)));
    }
    worst
}

#[test]
fn private_nodes_train_together_through_a_relay() {
    if let Some(why) = unavailable() {
        println!("SKIPPED: {why}");
        return;
    }
    let (_namespaces, names) = match create() {
        Ok(ns) => ns,
        Err(why) => {
            println!("SKIPPED: cannot create network namespaces: {why}");
            return;
        }
    };
    // The lab's premise: a private namespace has no way to the other.
    for (from, to) in [(1, "10.232.2.2"), (2, "10.232.1.2")] {
        assert!(
            exec(&names[from], &["ip", "route", "get", to]).is_err(),
            "{} can route to {to}",
            names[from]
        );
    }
    let dir = TempDir::new("relay-lab");

    // The public node: bootstrap and relay, run with docs/deploy.md's murmur.toml (its data
    // dir overridden; private addresses count for AutoNAT in the lab).
    let toml = dir.join("murmur.toml");
    std::fs::write(&toml, doc_block("toml")).unwrap();
    let public_args = args(&[
        "--codec",
        CODEC,
        "--config",
        toml.to_str().unwrap(),
        "--autonat-private-ips",
        "--min-peers",
        &NODES.to_string(),
        "--max-rounds",
        &ROUNDS.to_string(),
    ]);
    let mut nodes = vec![spawn_in(&names[0], &dir.join("public"), &public_args)];
    let started = Instant::now();
    let boot = loop {
        if let Some(doc) = node_file(&nodes[0])
            && let Some(id) = doc["peer_id"].as_str()
        {
            break format!("/ip4/{PUBLIC_IP}/tcp/4001/p2p/{id}");
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the public node wrote no node.json:\n{}",
            log(&nodes[0])
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    for (i, ns) in names.iter().enumerate().skip(1) {
        let mut a = node_args(i);
        a.extend(args(&[
            "--listen",
            "/ip4/127.0.0.1/tcp/0",
            "--bootstrap",
            &boot,
            "--autonat-private-ips",
        ]));
        nodes.push(spawn_in(ns, &dir.join(&format!("private-{i}")), &a));
    }
    let statuses = wait_done(
        &mut nodes,
        Duration::from_secs(300),
        &format!("{ROUNDS} rounds"),
    );
    let ids: Vec<&str> = statuses
        .iter()
        .map(|s| s["peer_id"].as_str().unwrap())
        .collect();

    println!(
        "{:<10} {:>9} {:>10} {:>8} {:>12} {:>12} {:>7} {:>9}",
        "node", "accuracy", "reach", "relays", "relayed_out", "relayed_in", "punches", "circuits"
    );
    for (i, s) in statuses.iter().enumerate() {
        let nat = &s["nat"];
        println!(
            "{:<10} {:>9.4} {:>10} {:>8} {:>12} {:>12} {:>7} {:>9}",
            if i == 0 { "public" } else { "private" },
            s["accuracy"].as_f64().unwrap_or(0.0),
            nat["reachability"].as_str().unwrap_or("?"),
            nat["relays"].as_array().map_or(0, Vec::len),
            nat["relayed_bytes_sent"],
            nat["relayed_bytes_received"],
            nat["hole_punch_attempts"],
            nat["circuits_served"],
        );
    }
    let public = &statuses[0];
    assert_eq!(public["nat"]["reachability"], "public", "{public:#}");
    assert_eq!(public["nat"]["relay_serving"], true);
    // One circuit per direction at most (the two private nodes may dial each other at
    // once): none was cut at a limit and reopened.
    let circuits = public["nat"]["circuits_served"].as_u64().unwrap_or(0);
    assert!(
        (1..=2).contains(&circuits),
        "the relay carried {circuits} circuits: {public:#}"
    );
    let mut punches = 0;
    for i in 1..NODES {
        let s = &statuses[i];
        let other = ids[3 - i];
        let nat = &s["nat"];
        assert_eq!(s["round"].as_u64(), Some(ROUNDS), "private {i}");
        assert_eq!(nat["reachability"], "private", "private {i}: {s:#}");
        assert_eq!(nat["relays"], serde_json::json!([ids[0]]), "private {i}");
        // Training together through the relay: each has the other as a relayed neighbour,
        // and gossip crossed the circuit both ways.
        assert_eq!(s["neighbour_paths"][other], "relayed", "private {i}: {s:#}");
        assert_eq!(s["neighbour_paths"][ids[0]], "direct", "private {i}: {s:#}");
        for key in ["relayed_bytes_sent", "relayed_bytes_received"] {
            let bytes = nat[key].as_u64().unwrap_or(0);
            assert!(bytes > 256 << 10, "private {i}: {key} = {bytes}");
        }
        // Of its two neighbours, the relayed one got a real share of the gossip (not just
        // the last rounds).
        let share = nat["relayed_bytes_sent"].as_f64().unwrap_or(0.0)
            / s["bytes_sent"].as_f64().unwrap_or(f64::INFINITY);
        println!(
            "private {i}: {:.1}% of its gossip bytes went through the relay",
            100.0 * share
        );
        assert!(
            share >= 0.15,
            "private {i}: only {share:.3} of its gossip was relayed"
        );
        assert_eq!(
            nat["hole_punch_successes"], 0,
            "no route: no hole punch can work"
        );
        punches += nat["hole_punch_attempts"].as_u64().unwrap_or(0);
        assert_eq!(s["rejected_protocol"], 0, "private {i} rejected frames");
    }
    assert!(punches >= 1, "no DCUtR attempt was made or counted");
    let lab_worst = statuses
        .iter()
        .map(|s| s["accuracy"].as_f64().unwrap_or(0.0))
        .fold(f64::INFINITY, f64::min);
    // What docs/deploy.md tells an operator to read: `murmur status` and /metrics.
    for (i, node) in nodes.iter().enumerate().skip(1) {
        let http = node_file(node).unwrap()["http"]
            .as_str()
            .unwrap()
            .to_string();
        let bin = binary().to_str().unwrap();
        let text = exec(&node.ns, &[bin, "status", "--addr", &http]).unwrap();
        for line in [
            format!("reachable  private (reserved on relays {})", ids[0]),
            format!("{} (relayed)", ids[3 - i]),
            format!("{} (direct)", ids[0]),
        ] {
            assert!(
                text.contains(&line),
                "murmur status lacks {line:?}:\n{text}"
            );
        }
        let curl = format!(
            "curl -s {http}/metrics | grep -E '^murmur_(reachability|relay|hole_punches|circuits)'"
        );
        let metrics = exec(&node.ns, &["sh", "-c", &curl]).unwrap();
        for series in [
            "murmur_reachability{state=\"private\"} 1",
            "murmur_relay_reservations 1",
            "murmur_relayed_neighbours 1",
            "murmur_hole_punches_total{result=\"success\"} 0",
        ] {
            assert!(metrics.contains(series), "{series} missing:\n{metrics}");
        }
    }
    let http = node_file(&nodes[0]).unwrap()["http"]
        .as_str()
        .unwrap()
        .to_string();
    let text = exec(
        &nodes[0].ns,
        &[binary().to_str().unwrap(), "status", "--addr", &http],
    )
    .unwrap();
    assert!(
        text.contains("reachable  public (no relay reservation)"),
        "{text}"
    );
    assert!(text.contains("relay      serving: "), "{text}");
    drop(nodes);

    let direct_worst = direct_run(&dir);
    println!(
        "summary: relay_lab=ok rounds={ROUNDS} lab_worst_accuracy={lab_worst:.4} direct_worst_accuracy={direct_worst:.4} hole_punch_attempts={punches}"
    );
    assert!(
        lab_worst >= direct_worst - 0.02,
        "through the relay the worst node reached {lab_worst:.4}, directly {direct_worst:.4}"
    );
}
