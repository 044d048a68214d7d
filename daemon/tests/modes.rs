//! Every averaging algorithm and mode the daemon's config accepts, and the DiLoCo outer step,
//! run end to end by four `murmur run` processes on loopback (digits): each ends with every
//! peer within 2 points of the CHOCO default's worst accuracy, the models agree and honest
//! peers reject none of each other's frames.

mod common;

use std::time::Duration;

use common::{TempDir, binary};
use murmur_daemon::demo::{DemoOptions, SwarmReport, Transport, run_swarm};

fn swarm(dir: &TempDir, name: &str, extra: &[&str], transport: Transport) -> SwarmReport {
    let opts = DemoOptions {
        peers: 4,
        rounds: 500,
        extra: extra.iter().map(|s| s.to_string()).collect(),
        dir: Some(dir.join(name)),
        keep: true,
        timeout: Duration::from_secs(180),
        transport,
    };
    run_swarm(binary(), &opts, |line| eprintln!("{name}: {line}"))
        .unwrap_or_else(|e| panic!("{name}: {e:#}"))
}

#[test]
fn every_algorithm_and_mode_trains_within_two_points_of_choco() {
    let dir = TempDir::new("modes");
    let choco = swarm(&dir, "choco", &[], Transport::Tcp);
    let reference = choco.worst_accuracy();
    assert!(reference >= 0.9, "CHOCO default reached only {reference}");
    let tcp = Transport::Tcp;
    let variants: &[(&str, &[&str], Transport)] = &[
        ("dpsgd", &["--algorithm", "dpsgd"], tcp),
        ("push-sum", &["--algorithm", "push-sum"], tcp),
        (
            "push-sum one-peer-exponential",
            &[
                "--algorithm",
                "push-sum",
                "--topology",
                "one-peer-exponential",
            ],
            tcp,
        ),
        (
            "push-sum random:1",
            &["--algorithm", "push-sum", "--push", "random:1"],
            tcp,
        ),
        (
            "compressed-push-sum",
            &["--algorithm", "compressed-push-sum"],
            tcp,
        ),
        (
            "compressed-push-sum one-peer-exponential",
            &[
                "--algorithm",
                "compressed-push-sum",
                "--topology",
                "one-peer-exponential",
            ],
            tcp,
        ),
        ("async", &["--mode", "async"], tcp),
        ("aggregate", &["--copies", "aggregate"], tcp),
        // DiLoCo outer Nesterov step on each round's 4 local steps (η = 0.2, μ = 0.9).
        (
            "outer step",
            &["--local-steps", "4", "--outer-lr", "0.2"],
            tcp,
        ),
        // No TCP listener at all: every connection is QUIC v1.
        ("quic-only", &[], Transport::Quic),
    ];
    println!(
        "{:<32} {:>9} {:>11} {:>9}",
        "variant", "worst_acc", "consensus", "rejected"
    );
    println!(
        "{:<32} {:>9.4} {:>11.2e} {:>9}",
        "choco (default)",
        reference,
        choco.relative_consensus(),
        0
    );
    let mut failures = Vec::new();
    for (name, extra, transport) in variants {
        let dir_name = name.replace([' ', ':'], "-");
        let r = swarm(&dir, &dir_name, extra, *transport);
        let worst = r.worst_accuracy();
        let consensus = r.relative_consensus();
        let rejected: u64 = r.statuses.iter().map(|s| s.rejected_protocol).sum();
        println!("{name:<32} {worst:>9.4} {consensus:>11.2e} {rejected:>9}");
        if worst < reference - 0.02 {
            failures.push(format!(
                "{name}: worst accuracy {worst} vs CHOCO {reference}"
            ));
        }
        if consensus > 0.01 {
            failures.push(format!("{name}: consensus {consensus}"));
        }
        // The outer step ran in every round of every node, and only where it was asked for.
        let outer_expected = extra.contains(&"--outer-lr");
        for s in &r.statuses {
            if outer_expected != (s.outer_steps > 0) || (outer_expected && s.outer_steps < s.round)
            {
                failures.push(format!(
                    "{name}: {} outer steps in {} rounds",
                    s.outer_steps, s.round
                ));
            }
        }
        if rejected > 0 {
            failures.push(format!(
                "{name}: {rejected} frames rejected between honest peers"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
