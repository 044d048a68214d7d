//! Four `murmur run` processes on loopback, bootstrap addresses only (mDNS off), train the
//! digits shards: every peer reaches 90% test accuracy, the peers agree (consensus distance at
//! most 1% of the squared norm of the mean model) and they send at least 50x fewer bytes than
//! dense f32 updates would take (as gossip payload, and as every byte libp2p wrote). Every node exits cleanly on SIGTERM, leaving a checkpoint
//! whose safetensors model is the model it served.

mod common;

use std::time::Duration;

use common::{TempDir, binary};
use murmur_daemon::checkpoint;
use murmur_daemon::demo::{DemoOptions, run_swarm};

#[test]
fn four_daemons_learn_digits_agree_and_send_50x_fewer_bytes_than_dense() {
    let dir = TempDir::new("swarm");
    let opts = DemoOptions {
        peers: 4,
        rounds: 600,
        extra: Vec::new(),
        dir: Some(dir.0.clone()),
        keep: true,
        timeout: Duration::from_secs(120),
        transport: Default::default(),
    };
    let report = run_swarm(binary(), &opts, |line| eprintln!("{line}")).expect("swarm runs");
    murmur_daemon::demo::print_report(&report, report.train_secs);

    for s in &report.statuses {
        assert!(s.round >= 600, "{} stopped at round {}", s.peer_id, s.round);
        let acc = s.accuracy.expect("evaluated");
        assert!(acc >= 0.90, "{} reached only {acc}", s.peer_id);
        assert!(!s.neighbours.is_empty(), "{} had no neighbours", s.peer_id);
    }
    let rel = report.relative_consensus();
    assert!(
        rel <= 0.01,
        "consensus distance {rel} of the squared mean norm"
    );
    let saved = report.bytes_saved();
    assert!(saved >= 50.0, "only {saved:.1}x fewer bytes than dense");
    // Also on the wire: every byte libp2p wrote, all protocols and framing included.
    let wire = report.wire_saved();
    assert!(
        wire >= 50.0,
        "only {wire:.1}x fewer wire bytes than dense updates"
    );
    assert_eq!(
        report.clean_exits,
        Some(4),
        "every node exits cleanly on SIGTERM"
    );

    for i in 0..4 {
        let ckpt = dir.join(&format!("node-{i}")).join("checkpoints");
        let loaded = checkpoint::newest(&ckpt).expect("a checkpoint after SIGTERM");
        assert!(loaded.meta.round >= 600);
        let model = checkpoint::read_model(&loaded.model_path).unwrap();
        assert_eq!(model, loaded.peer.model);
    }
}
