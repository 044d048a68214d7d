//! A network partition between real daemons, and its heal.
//!
//! Eight `murmur run` processes, each in its own network namespace (`murmur_tests::netns`),
//! four per switch; the switches are joined by a trunk link. After warm-up the trunk goes down
//! (`ip link set … down`): every node must keep making rounds while cut off. Then the trunk
//! comes back up: edges across the cut are listed again and the models re-converge (consensus
//! distance under 1% of the mean model's squared norm, the halves' gap back to where it was)
//! with every node at ≥ 80% accuracy. The short cut (6 s) runs in the default suite; the long
//! one (30 s) is opt-in (`--ignored`) because it costs 35 s, see its docs.
//!
//! Needs the rights to create namespaces; where it has none it prints `SKIPPED: …` and
//! returns (never a silent pass). Status and models are read from inside each namespace
//! (bash's `/dev/tcp` against the node's loopback HTTP endpoint), so nothing is ever bound
//! to an address outside loopback and the lab.

mod reliability_common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use murmur_daemon::demo::consensus;
use murmur_daemon::status::Status;
use murmur_tests::netns::{NetLab, skip_without_netns};
use reliability_common::{TempDir, binary};

const GROUP: usize = 4;
const ROUNDS: u64 = 100_000; // never reached: the test decides when to stop
const HTTP: &str = "127.0.0.1:9464";

struct NsNode {
    child: Child,
    index: usize,
}

impl Drop for NsNode {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(lab: &NetLab, i: usize, dir: &Path, bootstrap: Option<&str>) -> (NsNode, String) {
    std::fs::create_dir_all(dir).unwrap();
    let log = std::fs::File::create(dir.join("node.log")).unwrap();
    let mut cmd = lab.command(i, binary());
    cmd.arg("run")
        .arg("--data-dir")
        .arg(dir)
        .args(["--listen", &format!("/ip4/{}/tcp/4001", NetLab::addr_of(i))])
        .args(["--http", HTTP])
        .args([
            "--shard",
            &i.to_string(),
            "--shards",
            &(2 * GROUP).to_string(),
        ])
        .args(["--min-peers", &(2 * GROUP).to_string()])
        .args(["--max-rounds", &ROUNDS.to_string(), "--eval-every", "20"])
        .args(["--checkpoint-every", "0"])
        // Label-skewed shards, so the halves really drift apart while cut off.
        .args(["--partition", "dirichlet:0.5"])
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log);
    if let Some(b) = bootstrap {
        cmd.args(["--bootstrap", b]);
    }
    let child = cmd.spawn().expect("start murmur in its namespace");
    let node = NsNode { child, index: i };
    let started = Instant::now();
    loop {
        if let Ok(text) = std::fs::read_to_string(dir.join("node.json"))
            && let Ok(doc) = serde_json::from_str::<serde_json::Value>(&text)
            && let Some(addr) = doc["listen"].as_array().and_then(|a| {
                a.iter()
                    .filter_map(|v| v.as_str())
                    .find(|s| s.contains("/tcp/"))
                    .map(str::to_string)
            })
        {
            return (node, addr);
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "node {i} never listened"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `GET path` against node `i`'s loopback HTTP endpoint, from inside its namespace: the body.
fn get_bytes(lab: &NetLab, i: usize, path: &str) -> Option<Vec<u8>> {
    let (host, port) = HTTP.split_once(':').unwrap();
    let script = format!(
        "exec 3<>/dev/tcp/{host}/{port} && printf 'GET {path} HTTP/1.1\\r\\nHost: murmur\\r\\nConnection: close\\r\\n\\r\\n' >&3 && timeout 5 cat <&3"
    );
    let out = lab.command(i, "bash").args(["-c", &script]).output().ok()?;
    let at = out.stdout.windows(4).position(|w| w == b"\r\n\r\n")?;
    Some(out.stdout[at + 4..].to_vec())
}

fn get(lab: &NetLab, i: usize, path: &str) -> Option<String> {
    String::from_utf8(get_bytes(lab, i, path)?).ok()
}

fn status(lab: &NetLab, i: usize) -> Option<Status> {
    serde_json::from_str(&get(lab, i, "/status")?).ok()
}

/// The node's `/model` (safetensors), flattened.
fn model(lab: &NetLab, i: usize) -> Vec<f32> {
    murmur_daemon::checkpoint::model_from_bytes(&get_bytes(lab, i, "/model").expect("model"))
        .expect("model safetensors")
}

/// Consensus distance relative to the squared norm of the mean model.
fn relative_consensus(models: &[Vec<f32>]) -> f64 {
    let (d, norm) = consensus(models);
    d / norm.max(1e-12)
}

/// Squared distance between the two halves' mean models, relative to the overall mean's norm.
fn halves_gap(models: &[Vec<f32>]) -> f64 {
    let mean = |ms: &[Vec<f32>]| -> Vec<f64> {
        let mut m = vec![0f64; ms[0].len()];
        for x in ms {
            for (a, &v) in m.iter_mut().zip(x) {
                *a += f64::from(v) / ms.len() as f64;
            }
        }
        m
    };
    let (a, b) = (mean(&models[..GROUP]), mean(&models[GROUP..]));
    let gap: f64 = a.iter().zip(&b).map(|(x, y)| (x - y).powi(2)).sum();
    let norm: f64 = a.iter().zip(&b).map(|(x, y)| ((x + y) / 2.0).powi(2)).sum();
    gap / norm.max(1e-12)
}

fn rounds(lab: &NetLab, nodes: &[NsNode]) -> Vec<u64> {
    nodes
        .iter()
        .map(|n| status(lab, n.index).map_or(0, |s| s.round))
        .collect()
}

fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let started = Instant::now();
    while !f() {
        assert!(started.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// Shorter than the daemons' dead-connection detection (ping every 5 s, closed after 10 s
/// unanswered): the cross edges stay listed, rounds fall back to the 1 s round timeout while
/// the cut lasts, and the swarm picks up at full speed after the heal.
#[test]
fn a_short_partition_slows_the_swarm_which_reconverges_after_the_heal() {
    if !skip_without_netns("a_short_partition_slows_the_swarm_which_reconverges_after_the_heal") {
        return;
    }
    partition_and_heal(6, false);
}

/// Longer than the detection: the daemons drop the dead edges and the halves train apart.
///
/// This test found a defect, since fixed: when a node's every neighbour sits across the cut (it depends on where the random peer ids hash on the
/// ring), it ends up with no edge at all; before daemon 90e5076/3005dba such a node completed
/// rounds as fast as it could step (~57 000 rounds against ~5 000 in one 30 s cut) and the swarm
/// did not re-converge after the heal. Since then an isolated swarm member pauses training; the
/// test has passed in every run since (4 of 4, re-converged 1.1–1.7 s after the heal). Opt-in
/// only because it takes 35 s and eight more daemons: run with `--ignored`.
#[test]
#[ignore = "slow (35 s): run with --ignored; see docs/reliability.md"]
fn a_long_partition_splits_the_swarm_which_reconverges_after_the_heal() {
    if !skip_without_netns("a_long_partition_splits_the_swarm_which_reconverges_after_the_heal") {
        return;
    }
    partition_and_heal(30, true);
}

fn partition_and_heal(cut_secs: u64, expect_drift: bool) {
    let lab = NetLab::new(&[GROUP, GROUP]).expect("build the namespace lab");
    let dir = TempDir::new("partition");
    let (first, boot) = start(&lab, 0, &dir.join("node-0"), None);
    let mut nodes = vec![first];
    for i in 1..2 * GROUP {
        nodes.push(start(&lab, i, &dir.join(&format!("node-{i}")), Some(&boot)).0);
    }
    let t = Duration::from_secs(60);
    wait_until("warm-up (round 60 everywhere)", t, || {
        rounds(&lab, &nodes).iter().all(|&r| r >= 60)
    });
    let models: Vec<Vec<f32>> = (0..2 * GROUP).map(|i| model(&lab, i)).collect();
    let before = (relative_consensus(&models), halves_gap(&models));

    lab.partition().expect("partition");
    let cut_at = rounds(&lab, &nodes);
    std::thread::sleep(Duration::from_secs(cut_secs));
    let during_rounds = rounds(&lab, &nodes);
    let models: Vec<Vec<f32>> = (0..2 * GROUP).map(|i| model(&lab, i)).collect();
    let during = (relative_consensus(&models), halves_gap(&models));
    // Edges still listed across the cut (libp2p notices a dead connection only after its
    // ping/idle timeouts, so some may survive a short partition).
    let ids_now: Vec<String> = (0..2 * GROUP)
        .map(|i| status(&lab, i).expect("status").peer_id)
        .collect();
    let cross_edges_during: usize = (0..GROUP)
        .map(|i| {
            status(&lab, i).map_or(0, |s| {
                s.neighbours
                    .iter()
                    .filter(|n| ids_now[GROUP..].contains(n))
                    .count()
            })
        })
        .sum();
    for (i, (a, b)) in cut_at.iter().zip(&during_rounds).enumerate() {
        assert!(
            b > a,
            "node {i} stopped training during the partition ({a} -> {b})"
        );
    }

    lab.heal().expect("heal");
    let healed = Instant::now();
    // Edges across the cut come back: some node of each half lists a neighbour of the other.
    let ids: Vec<String> = (0..2 * GROUP)
        .map(|i| status(&lab, i).expect("status").peer_id)
        .collect();
    wait_until("edges across the healed cut", t, || {
        (0..GROUP).any(|i| {
            status(&lab, i).is_some_and(|s| s.neighbours.iter().any(|n| ids[GROUP..].contains(n)))
        })
    });
    let reconnect_secs = healed.elapsed().as_secs_f64();
    let mut after = (f64::INFINITY, f64::INFINITY);
    wait_until("re-convergence after the heal", t, || {
        let models: Vec<Vec<f32>> = (0..2 * GROUP).map(|i| model(&lab, i)).collect();
        after = (relative_consensus(&models), halves_gap(&models));
        println!(
            "partition: {:.1} s after the heal: consensus {:.2e}, halves gap {:.2e}, rounds {:?}",
            healed.elapsed().as_secs_f64(),
            after.0,
            after.1,
            rounds(&lab, &nodes)
        );
        after.0 <= 0.01 && after.1 <= before.1.max(0.01)
    });
    let converge_secs = healed.elapsed().as_secs_f64();
    let accuracies: Vec<f32> = (0..2 * GROUP)
        .map(|i| status(&lab, i).and_then(|s| s.accuracy).unwrap_or(0.0))
        .collect();
    println!(
        "partition: rounds at the cut {cut_at:?}, {cut_secs} s later {during_rounds:?}, cross edges \
         still listed {cross_edges_during}; before consensus {:.2e} halves gap {:.2e}; after the {cut_secs} s cut {:.2e} / {:.2e}; \
         cross edges back {reconnect_secs:.1} s after the heal, re-converged {converge_secs:.1} s \
         after: {:.2e} / {:.2e}; accuracies {accuracies:?}",
        before.0, before.1, during.0, during.1, after.0, after.1
    );
    println!(
        "summary: partition_secs={cut_secs} reconnect_secs={reconnect_secs:.1} reconverge_secs={converge_secs:.1} gap_during={:.2e} gap_after={:.2e}",
        during.1, after.1
    );
    if expect_drift {
        assert!(
            during.1 > after.1,
            "the halves did not drift apart during the cut"
        );
    }
    for (i, a) in accuracies.iter().enumerate() {
        assert!(*a >= 0.80, "node {i} accuracy {a}");
    }
    // Leave cleanly: SIGTERM each daemon (ip netns exec replaced itself with murmur).
    for n in &nodes {
        let _ = Command::new("kill").arg(n.child.id().to_string()).status();
    }
    drop(nodes);
    drop(lab);
}
