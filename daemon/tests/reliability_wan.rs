//! Two daemons over a WAN-like link: every byte between them goes through a seeded relay of
//! `murmur_tests::relay` (50 ms ± 10 ms each way, and connection cuts standing in for lost
//! frames, see that module for why loss is a cut). Both must finish their rounds with a
//! trained model.
//!
//! One relay per node, each forwarding to its node's listen port, and each node announces
//! only its relay's address (`--announce`), so identify and Kademlia never hand out the real
//! listen address: whoever dials whom, and however often a cut forces a redial, the
//! connection crosses a relay. Each node reports the addresses it dialled (`dialed_addrs` in
//! its status); the test asserts that they are relay addresses only.

mod reliability_common;

use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use murmur_tests::relay::{Relay, RelayConfig};
use reliability_common::{TempDir, accuracy, node_args, start_node, stop_all, wait_all_done};

const ROUNDS: u64 = 150;

/// What one run measured.
struct Figures {
    accuracy: f32,
    delay_ms: f64,
    connections: u64,
    cuts: u64,
    bytes: u64,
    wall: Duration,
    /// Every address either node dialled.
    dialed: Vec<String>,
    /// The relays' addresses.
    relays: Vec<String>,
}

/// A free loopback port for a daemon to listen on (its relay must know it before the daemon
/// starts, since the daemon announces the relay's address).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn run(config: RelayConfig, name: &str) -> Figures {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = TempDir::new(name);
    let ports = [free_port(), free_port()];
    let relays: Vec<Relay> = ports
        .iter()
        .enumerate()
        .map(|(i, &port)| {
            let upstream = SocketAddr::from(([127, 0, 0, 1], port));
            let config = RelayConfig {
                seed: config.seed.wrapping_add(1000 * i as u64),
                ..config.clone()
            };
            rt.block_on(Relay::start(upstream, config)).unwrap()
        })
        .collect();
    let relay_addrs: Vec<String> = relays
        .iter()
        .map(|r| format!("/ip4/127.0.0.1/tcp/{}", r.addr().port()))
        .collect();
    let args = |i: usize| {
        let listen = format!("/ip4/127.0.0.1/tcp/{}", ports[i]);
        node_args(
            i,
            2,
            ROUNDS,
            &[
                "--eval-every",
                "25",
                "--listen",
                &listen,
                "--announce",
                &relay_addrs[i],
            ],
        )
    };
    let first = start_node(&dir, 0, &args(0), None);
    let via_relay = format!("{}/p2p/{}", relay_addrs[0], first.peer_id);
    let started = Instant::now();
    let second = start_node(&dir, 1, &args(1), Some(&via_relay));
    let mut nodes = vec![first, second];
    let statuses = wait_all_done(&nodes, Duration::from_secs(80));
    let wall = started.elapsed();
    stop_all(&mut nodes);
    let (mean, _) = accuracy(&statuses);
    let sum = |f: fn(&Relay) -> u64| relays.iter().map(f).sum::<u64>();
    let chunks = sum(|r| r.stats().chunks.load(Ordering::Relaxed)).max(1);
    let delay_micros = sum(|r| r.stats().delay_micros.load(Ordering::Relaxed));
    let mut dialed: Vec<String> = statuses
        .iter()
        .flat_map(|s| s.dialed_addrs.iter().cloned())
        .collect();
    dialed.sort();
    dialed.dedup();
    Figures {
        accuracy: mean,
        delay_ms: delay_micros as f64 / chunks as f64 / 1e3,
        connections: sum(|r| r.stats().connections.load(Ordering::Relaxed)),
        cuts: sum(|r| r.stats().cuts.load(Ordering::Relaxed)),
        bytes: sum(|r| r.stats().bytes.load(Ordering::Relaxed)),
        wall,
        dialed,
        relays: relay_addrs,
    }
}

/// Every address a node dialled is a relay's (with or without the `/p2p/<id>` suffix).
fn assert_only_relays(f: &Figures) {
    assert!(!f.dialed.is_empty(), "no node reports a dialled connection");
    for addr in &f.dialed {
        assert!(
            f.relays
                .iter()
                .any(|r| addr == r || addr.starts_with(&format!("{r}/p2p/"))),
            "a connection bypassed the relays: dialled {addr} (relays {:?})",
            f.relays
        );
    }
}

fn report(label: &str, f: &Figures) {
    println!(
        "wan ({label}): {ROUNDS} rounds in {:.1} s through the relays (mean one-way delay \
         {:.1} ms, {} connections, {} cuts, {} bytes relayed, dialled {:?}), mean accuracy \
         {:.4}",
        f.wall.as_secs_f64(),
        f.delay_ms,
        f.connections,
        f.cuts,
        f.bytes,
        f.dialed,
        f.accuracy
    );
}

#[test]
fn two_daemons_train_through_a_delaying_relay() {
    let config = RelayConfig {
        cut: 0.0,
        ..RelayConfig::wan(11)
    };
    let f = run(config, "wan-delay");
    report("delay only", &f);
    assert_only_relays(&f);
    assert!(f.connections >= 1, "no connection through the relays");
    assert!(
        (40.0..=60.0).contains(&f.delay_ms),
        "mean delay {} ms",
        f.delay_ms
    );
    // Every round waits for the other's update, which crosses a relay: ≥ 40 ms per round.
    assert!(
        f.wall >= Duration::from_millis(40 * ROUNDS),
        "{ROUNDS} rounds in {:?}: the traffic cannot have gone through the relays",
        f.wall
    );
    assert!(
        f.accuracy >= 0.85,
        "accuracy {} after {ROUNDS} rounds over the WAN link",
        f.accuracy
    );
}

/// With 1% of chunks cutting the connection: the daemons redial, and since each announces
/// only its relay's address, every redial crosses a relay again.
#[test]
fn two_daemons_survive_connection_cuts() {
    let f = run(RelayConfig::wan(11), "wan-cuts");
    report("1% cuts", &f);
    assert!(f.cuts >= 1, "the relays never cut the connection");
    assert!(
        f.connections >= 2,
        "{} connections through the relays: no reconnection went through them",
        f.connections
    );
    assert_only_relays(&f);
    assert!(
        f.wall >= Duration::from_millis(40 * ROUNDS),
        "{ROUNDS} rounds in {:?}: part of the traffic bypassed the relays",
        f.wall
    );
    assert!(
        f.accuracy >= 0.85,
        "accuracy {} after {ROUNDS} rounds with cuts",
        f.accuracy
    );
}
