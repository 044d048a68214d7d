//! `/dns4` bootstrap addresses on loopback: a node given
//! `--bootstrap /dns4/localhost/tcp/PORT/p2p/ID` resolves the name, connects and trains with
//! the node there; a name that does not resolve is logged at warn with the resolver's cause.
//! Both nodes stay `unknown` to AutoNAT: loopback dial-backs are no evidence of internet
//! reachability under the default `node.autonat_global_only`.

mod common;

use std::time::{Duration, Instant};

use common::{TempDir, args, log, start, wait_for};

const ROUNDS: u64 = 100;

#[test]
fn a_dns4_bootstrap_address_resolves_connects_and_trains() {
    let dir = TempDir::new("dns-bootstrap");
    let node_args = |i: usize| {
        args(&[
            "--shard",
            &i.to_string(),
            "--shards",
            "2",
            "--min-peers",
            "2",
            "--max-rounds",
            &ROUNDS.to_string(),
        ])
    };
    let first = start(&dir.join("n0"), &node_args(0));
    // /ip4/127.0.0.1/tcp/PORT/p2p/ID -> /dns4/localhost/tcp/PORT/p2p/ID
    let rest = first
        .addr
        .strip_prefix("/ip4/127.0.0.1")
        .unwrap_or_else(|| panic!("unexpected listen address {}", first.addr));
    let by_name = format!("/dns4/localhost{rest}");
    let mut second_args = node_args(1);
    second_args.extend(args(&["--bootstrap", &by_name]));
    let second = start(&dir.join("n1"), &second_args);

    let timeout = Duration::from_secs(120);
    let done = |s: &murmur_daemon::status::Status| s.done && s.round == ROUNDS;
    let s1 = wait_for(
        &second,
        timeout,
        "the dns-bootstrapped node to finish",
        done,
    );
    let s0 = wait_for(&first, timeout, "the bootstrap node to finish", done);
    assert_eq!(s1.neighbours, vec![first.peer_id.clone()]);
    assert_eq!(s0.neighbours, vec![second.peer_id.clone()]);
    assert!(
        s1.dialed_addrs
            .iter()
            .any(|a| a.starts_with("/dns4/localhost/")),
        "the connection was not dialled by name: {:?}",
        s1.dialed_addrs
    );
    for (name, s) in [("n0", &s0), ("n1", &s1)] {
        assert!(s.accuracy.unwrap_or(0.0) >= 0.8, "{name}: {:?}", s.accuracy);
        assert_eq!(
            s.nat.reachability,
            murmur_daemon::status::Reachability::Unknown,
            "{name}: loopback is no evidence of reachability"
        );
        assert_eq!(s.nat.relayed_bytes_sent, 0, "{name}: nothing is relayed");
    }

    // A name that does not resolve: warned about, with the cause.
    let id = &first.peer_id;
    let bad = format!("/dns4/no-such-host.invalid/tcp/4001/p2p/{id}");
    let lost = start(&dir.join("n2"), &args(&["--bootstrap", &bad]));
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let text = log(&lost);
        if let Some(line) = text
            .lines()
            .find(|l| l.contains("WARN") && l.contains("cannot reach bootstrap peer"))
        {
            // The cause (the resolver's answer) follows on the warning's continuation lines.
            assert!(
                line.contains("no-such-host.invalid") && text.contains("DNS error"),
                "the warning does not name the address and its cause:\n{text}"
            );
            println!("warned: {line}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no warning for an unresolvable bootstrap name:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    println!(
        "summary: dns_bootstrap=ok rounds={ROUNDS} accuracy_n0={:.4} accuracy_n1={:.4} unresolvable_warned=yes",
        s0.accuracy.unwrap_or(0.0),
        s1.accuracy.unwrap_or(0.0)
    );
}
