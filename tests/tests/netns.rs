//! The namespace lab of the fault harness: nodes in one group reach each other, a partition
//! cuts the groups apart, a heal joins them again, and nothing is left behind.
//! Skips with a printed `SKIPPED:` line where namespaces cannot be created.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use murmur_tests::netns::{NetLab, skip_without_netns};

const PROBE: &str = env!("CARGO_BIN_EXE_netprobe");

/// Kills the server when the test ends, however it ends.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn reaches(lab: &NetLab, from: usize, to: usize) -> bool {
    lab.command(from, PROBE)
        .args(["probe", &format!("{}:7000", NetLab::addr_of(to)), "400"])
        .stderr(Stdio::null())
        .status()
        .expect("run netprobe")
        .success()
}

fn namespaces() -> String {
    let out = Command::new("ip").args(["netns", "list"]).output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn partition_cuts_the_groups_and_heal_joins_them() {
    if !skip_without_netns("partition_cuts_the_groups_and_heal_joins_them") {
        return;
    }
    let lab = NetLab::new(&[2, 2]).expect("build the lab");
    let names: Vec<String> = (0..lab.len())
        .map(|i| lab.namespace(i).to_string())
        .collect();
    let _server = Server(
        lab.command(0, PROBE)
            .args(["serve", &format!("{}:7000", NetLab::addr_of(0))])
            .stdout(Stdio::null())
            .spawn()
            .expect("start netprobe server"),
    );
    // The server needs a moment to bind.
    let started = Instant::now();
    while !reaches(&lab, 1, 0) {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "server never came up"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!((lab.group_of(1), lab.group_of(2)), (0, 1));
    println!(
        "netns: node 1 reached node 0 {:?} after start",
        started.elapsed()
    );
    assert!(reaches(&lab, 2, 0), "across groups before the partition");
    lab.partition().unwrap();
    assert!(reaches(&lab, 1, 0), "inside a group during the partition");
    assert!(!reaches(&lab, 2, 0), "across groups during the partition");
    assert!(!reaches(&lab, 3, 0), "across groups during the partition");
    lab.heal().unwrap();
    // Neighbour (ARP) entries that failed during the partition are retried after a while.
    for node in [2, 3] {
        let healed = Instant::now();
        while !reaches(&lab, node, 0) {
            assert!(
                healed.elapsed() < Duration::from_secs(15),
                "node {node}: the heal never reconnected"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        println!(
            "netns: node {node} reached node 0 {:?} after the heal",
            healed.elapsed()
        );
    }
    drop(_server);
    drop(lab);
    let left = namespaces();
    for n in names {
        assert!(!left.contains(&n), "namespace {n} left behind");
    }
}
