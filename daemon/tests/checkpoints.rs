//! Checkpoint loss, across real processes: damaged checkpoints with higher round numbers never
//! make a node drop its valid ones; a restart with another model refuses to start (naming both
//! fingerprints) instead of overwriting the old model's checkpoints, and `--fresh` keeps them
//! in a new generation; a failed write is reported as failed, with its cause; AdamW's
//! noise-corrected second moment trains, checkpoints its noise average and resumes.

mod common;

use std::path::Path;
use std::time::Duration;

use common::{TempDir, args, assert_refused, log, start, wait_for};
use murmur_daemon::checkpoint;

/// Runs a lone node (it trains on its own, no swarm) on `data` until it finished `rounds`,
/// then stops it with SIGTERM; returns its log.
fn train_alone(data: &Path, rounds: u64, extra: &[&str]) -> String {
    let mut a = args(&[
        "--max-rounds",
        &rounds.to_string(),
        "--checkpoint-every",
        "100",
    ]);
    a.extend(args(extra));
    let mut node = start(data, &a);
    wait_for(&node, Duration::from_secs(60), "training done", |s| s.done);
    assert!(node.stop(Duration::from_secs(10)).unwrap(), "clean exit");
    log(&node)
}

/// Rounds of the checkpoints at the top of `dir` (the current generation), newest first.
fn rounds(dir: &Path) -> Vec<u64> {
    let mut rounds: Vec<u64> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| {
            let name = e.ok()?.file_name().into_string().ok()?;
            name.strip_prefix("round-")?
                .strip_suffix(".meta")?
                .parse()
                .ok()
        })
        .collect();
    rounds.sort_unstable_by(|a, b| b.cmp(a));
    rounds
}

/// Copies round `from`'s files to `round`: a checkpoint that fails its checks.
fn plant_damaged(dir: &Path, round: u64, from: u64) {
    for ext in ["meta", "safetensors"] {
        std::fs::copy(
            dir.join(format!("round-{from:010}.{ext}")),
            dir.join(format!("round-{round:010}.{ext}")),
        )
        .unwrap();
    }
    assert!(checkpoint::load(dir, round).is_err());
}

#[test]
fn damaged_checkpoints_with_higher_rounds_do_not_prune_the_valid_ones() {
    let dir = TempDir::new("ckpt-damaged");
    let data = dir.join("n");
    let config = dir.join("murmur.toml");
    std::fs::write(&config, "[checkpoint]\nkeep = 2\n").unwrap();
    let cfg = config.to_str().unwrap();
    train_alone(&data, 300, &["--config", cfg]);
    let ckpt = data.join("checkpoints");
    assert_eq!(rounds(&ckpt), vec![300, 200]);
    plant_damaged(&ckpt, 900, 300);
    plant_damaged(&ckpt, 1000, 300);

    let log = train_alone(&data, 500, &["--config", cfg]);
    assert!(log.contains("resumed round=300"), "{log}");
    assert!(log.contains("damaged checkpoint set aside"), "{log}");
    assert_eq!(
        rounds(&ckpt),
        vec![500, 400],
        "the newest valid checkpoints are kept, the damaged ones do not count"
    );
    assert_eq!(rounds(&ckpt.join(checkpoint::DAMAGED_DIR)), vec![1000, 900]);
    assert_eq!(checkpoint::newest(&ckpt).unwrap().meta.round, 500);
}

#[test]
fn another_model_refuses_to_overwrite_the_checkpoints_and_fresh_keeps_them() {
    let dir = TempDir::new("ckpt-model");
    let data = dir.join("n");
    train_alone(&data, 200, &[]);
    let ckpt = data.join("checkpoints");
    let old = checkpoint::newest(&ckpt).unwrap();
    assert_eq!(old.meta.round, 200);
    let old_fingerprint = format!("{:#018x}", old.peer.fingerprint);

    let data_arg = data.to_str().unwrap();
    let refused = assert_refused(
        &[
            "run",
            "--data-dir",
            data_arg,
            "--model",
            "mlp:16",
            "--no-http",
        ],
        &[
            "cannot resume from the checkpoint at round 200",
            &format!("written for model fingerprint {old_fingerprint}"),
            "pass --fresh to start from round 0 in a new checkpoint generation",
        ],
    );
    assert!(
        refused.matches("fingerprint 0x").count() == 2,
        "names both fingerprints: {refused}"
    );
    assert_eq!(rounds(&ckpt), vec![200, 100], "nothing touched");

    // --fresh: the old generation is moved aside whole, the new model starts from round 0.
    let log = train_alone(&data, 100, &["--model", "mlp:16", "--fresh"]);
    assert!(!log.contains("resumed"), "{log}");
    assert!(log.contains("fresh start: the previous checkpoints (newest round 200) are kept in"));
    let kept = ckpt.join("generation-1");
    assert_eq!(rounds(&kept), vec![200, 100]);
    let again = checkpoint::load(&kept, 200).unwrap();
    assert_eq!(again.peer, old.peer, "the old model's round 200 is intact");
    let new = checkpoint::newest(&ckpt).unwrap();
    assert_eq!(new.meta.round, 100);
    assert_ne!(new.peer.fingerprint, old.peer.fingerprint);
}

#[test]
fn a_failed_checkpoint_write_is_reported_as_failed_with_its_cause() {
    let dir = TempDir::new("ckpt-unwritable");
    // A regular file where the checkpoint directory's parent should be: the write fails even
    // for root (whom directory permissions would not stop).
    let blocker = dir.join("not-a-dir");
    std::fs::write(&blocker, b"").unwrap();
    let config = dir.join("murmur.toml");
    std::fs::write(
        &config,
        format!(
            "[checkpoint]\ndir = {:?}\n",
            blocker.join("checkpoints").to_str().unwrap()
        ),
    )
    .unwrap();
    let mut node = start(
        &dir.join("n"),
        &args(&["--config", config.to_str().unwrap(), "--max-rounds", "20"]),
    );
    wait_for(&node, Duration::from_secs(60), "training done", |s| s.done);
    // A daemon whose last state is not on disk does not exit as if all were well: a
    // supervisor (systemd, a script) must see the failure.
    assert!(
        !node.stop(Duration::from_secs(10)).unwrap(),
        "exit status 0 after the final checkpoint failed:\n{}",
        log(&node)
    );
    let log = log(&node);
    assert!(
        !log.contains("checkpoint round=20"),
        "claims success:\n{log}"
    );
    assert!(
        log.contains("checkpoint FAILED round=20: cannot write checkpoint round 20 to")
            && log.contains("Not a directory"),
        "{log}"
    );
    assert!(log.contains("checkpoint failed"), "the ERROR line: {log}");
    assert!(
        log.contains("murmur: the final checkpoint could not be written (round 20: cannot write"),
        "the exit names why: {log}"
    );
}

#[test]
fn the_noise_corrected_adamw_trains_checkpoints_its_average_and_resumes() {
    let dir = TempDir::new("ckpt-noise");
    let model = [
        "--data",
        "shakespeare",
        "--model",
        "transformer:layers=1,width=16,heads=2,context=16",
        "--set",
        "task.batch_size=8",
    ];
    let with = |extra: &'static str| {
        let mut a = model.to_vec();
        a.extend([
            "--set",
            "task.optimizer.kind=\"adamw\"",
            "--set",
            "task.optimizer.lr=0.001",
        ]);
        if !extra.is_empty() {
            a.extend(["--set", extra]);
        }
        a
    };
    let plain = dir.join("plain");
    train_alone(&plain, 2, &with(""));
    let noisy = dir.join("noisy");
    train_alone(&noisy, 2, &with("task.optimizer.second_moment_peers=8"));
    let (p, n) = (
        checkpoint::newest(&plain.join("checkpoints")).unwrap(),
        checkpoint::newest(&noisy.join("checkpoints")).unwrap(),
    );
    assert_eq!((p.meta.round, n.meta.round), (2, 2));
    // The learner state carries the noise average beside AdamW's two moments.
    let dim = n.peer.dim as usize;
    assert!(
        n.peer.learner_state.len() >= p.peer.learner_state.len() + 4 * dim,
        "{} vs {} bytes for {dim} parameters",
        n.peer.learner_state.len(),
        p.peer.learner_state.len()
    );
    assert_ne!(n.peer.model, p.peer.model, "the option changes the step");
    let log = train_alone(&noisy, 4, &with("task.optimizer.second_moment_peers=8"));
    assert!(log.contains("resumed round=2"), "{log}");
    assert_eq!(
        checkpoint::newest(&noisy.join("checkpoints"))
            .unwrap()
            .meta
            .round,
        4
    );

    // Where the learner cannot split its batches, the setting is refused by name.
    let data_arg = dir.join("refused");
    assert_refused(
        &[
            "run",
            "--data-dir",
            data_arg.to_str().unwrap(),
            "--no-http",
            "--set",
            "task.optimizer.second_moment_peers=8",
        ],
        &["optimizer.second_moment_peers = 8 needs a deep model"],
    );
}
