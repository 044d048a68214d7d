//! Live edge agreement between real processes: three nodes where two bootstrap from the first
//! at the same moment (so they also dial each other at the same moment, a race that used to
//! leave one node listing a neighbour that did not list it back, refusing its frames for good).
//! Every try must end with every node listing both others within 5 s of the last start.
//!
//! `MURMUR_EDGE_TRIES` sets the number of tries (default 20; `scripts/edges.sh` prints the
//! `summary:` line).

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::{TempDir, args, start};

#[test]
fn simultaneous_bootstraps_give_symmetric_neighbour_sets_every_time() {
    let tries: usize = std::env::var("MURMUR_EDGE_TRIES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let dir = TempDir::new("edges");
    let node_args = |i: usize| {
        args(&[
            "--shard",
            &i.to_string(),
            "--shards",
            "3",
            "--min-peers",
            "3",
        ])
    };
    let mut symmetric = 0;
    let mut worst = Duration::ZERO;
    let mut failures = Vec::new();
    for t in 0..tries {
        let base = dir.join(&format!("try-{t}"));
        let first = start(&base.join("n0"), &node_args(0));
        let boot = first.addr.clone();
        let spawn = |i: usize| {
            let dir = base.join(format!("n{i}"));
            let mut a = node_args(i);
            a.extend(args(&["--bootstrap", &boot]));
            std::thread::spawn(move || start(&dir, &a))
        };
        let (h1, h2) = (spawn(1), spawn(2));
        let nodes = [first, h1.join().unwrap(), h2.join().unwrap()];
        let started = Instant::now();
        let ids: Vec<String> = nodes.iter().map(|n| n.peer_id.clone()).collect();
        let expected = |i: usize| -> BTreeSet<String> {
            (0..3).filter(|&j| j != i).map(|j| ids[j].clone()).collect()
        };
        let mut last: Vec<BTreeSet<String>>;
        let ok = loop {
            last = nodes
                .iter()
                .map(|n| {
                    n.status()
                        .map(|s| s.neighbours.into_iter().collect::<BTreeSet<_>>())
                        .unwrap_or_default()
                })
                .collect::<Vec<_>>();
            if (0..3).all(|i| last[i] == expected(i)) {
                break true;
            }
            if started.elapsed() > Duration::from_secs(5) {
                break false;
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        if ok {
            symmetric += 1;
            worst = worst.max(started.elapsed());
        } else {
            failures.push(format!("try {t}: neighbours {last:?}, ids {ids:?}"));
        }
    }
    println!(
        "summary: tries={tries} symmetric={symmetric} worst_agreement_s={:.2}",
        worst.as_secs_f64()
    );
    assert!(
        failures.is_empty(),
        "one-sided links:\n{}",
        failures.join("\n")
    );
}
