//! The simulator as a user meets it: nonsense settings refused with the key and its range,
//! output paths named in errors, a graph too large to report refused before allocating, and
//! `summary.json` with numbers as numbers.

use std::path::PathBuf;
use std::process::Command;

fn sim(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_murmur-sim"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn quick() -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("examples/quick.toml")
        .to_string_lossy()
        .into_owned()
}

fn temp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("murmur-sim-op-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn assert_refused(args: &[&str], expected: &str) {
    let (ok, _, stderr) = sim(args);
    assert!(!ok, "murmur-sim {args:?} succeeded");
    assert!(stderr.contains(expected), "murmur-sim {args:?}: {stderr}");
}

#[test]
fn nonsense_settings_are_refused_with_the_key_and_its_range() {
    let out = temp("refused");
    let out = out.to_str().unwrap();
    let q = quick();
    for (set, expected) in [
        (
            "network.latency={kind=\"uniform\",min_ms=-5.0,max_ms=10.0}",
            "network.latency.min_ms = -5 must be a finite number >= 0",
        ),
        (
            "network.latency={kind=\"uniform\",min_ms=5.0,max_ms=1.0}",
            "network.latency.min_ms = 5 must be <= max_ms = 1",
        ),
        (
            "network.loss=1.5",
            "network.loss = 1.5 must be a probability in [0, 1]",
        ),
        (
            "task.optimizer.lr=0",
            "task.optimizer.lr = 0 must be a finite number > 0",
        ),
        ("eval_every=0", "eval_every = 0 never evaluates"),
        ("gossip.gamma=2.0", "gamma = 2 must be in (0, 1]"),
        (
            "peer.noise_std=0.01",
            "peer.noise_std: noise_std was removed",
        ),
        (
            "peer.privacy={clip=0.0, noise_multiplier=4.0}",
            "privacy.clip = 0 must be a finite number > 0",
        ),
        (
            "peer.privacy={clip=1.0, noise_multiplier=0.01}",
            "privacy.noise_multiplier = 0.01 must be a finite number >= 1",
        ),
        (
            "peer.privacy={clip=1.0, noise_multiplier=4.0, delta=1.5}",
            "privacy.delta = 1.5 must be in (0, 1)",
        ),
    ] {
        assert_refused(&["run", &q, "--out", out, "--set", set], expected);
    }
    assert_refused(
        &["topology", "exponential", "--n", "1000000000"],
        "--n = 1000000000 must be in 1..=100000",
    );
}

#[test]
fn an_unusable_out_directory_is_named() {
    let dir = temp("out");
    let file = dir.join("a-file");
    std::fs::write(&file, b"").unwrap();
    let out = file.join("results");
    assert_refused(
        &[
            "run",
            &quick(),
            "--out",
            out.to_str().unwrap(),
            "--rounds",
            "2",
        ],
        &format!(
            "--out {}: cannot create the output directory",
            out.display()
        ),
    );
}

#[test]
fn summary_json_holds_numbers_as_numbers() {
    let dir = temp("summary");
    let (ok, _, stderr) = sim(&[
        "run",
        &quick(),
        "--out",
        dir.to_str().unwrap(),
        "--rounds",
        "20",
        "--set",
        "baselines=[]",
    ]);
    assert!(ok, "{stderr}");
    let text = std::fs::read_to_string(dir.join("summary.json")).unwrap();
    let doc: serde_json::Value = serde_json::from_str(&text).unwrap();
    for key in ["accuracy", "bytes", "rounds", "consensus"] {
        assert!(doc[key].is_number(), "{key} is not a number in {text}");
    }
    assert_eq!(doc["rounds"], 20, "{text}");
    let _ = std::fs::remove_dir_all(&dir);
}
