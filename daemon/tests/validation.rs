//! Nonsense settings and broken secrets stop `murmur run` at once, with a message that names
//! the setting (or file) and says what is accepted; no node starts.

mod common;

use common::{TempDir, assert_refused};

/// `murmur run --data-dir <fresh dir> <flags>` is refused with every one of `expected`.
fn refused(dir: &TempDir, flags: &[&str], expected: &[&str]) {
    let data = dir.join(&format!(
        "d{}",
        flags.join("_").replace(['/', ':', '.'], "-")
    ));
    let mut args = vec!["run", "--data-dir", data.to_str().unwrap(), "--no-http"];
    args.extend_from_slice(flags);
    assert_refused(&args, expected);
}

#[test]
fn every_nonsense_value_is_refused_with_the_setting_and_its_range() {
    let dir = TempDir::new("validation");
    let cases: &[(&[&str], &[&str])] = &[
        (
            &["--lr", "nan"],
            &["task.optimizer.lr = NaN must be a finite number > 0"],
        ),
        (
            &["--lr=-0.5"],
            &["task.optimizer.lr = -0.5 must be a finite number > 0"],
        ),
        // As the issue typed it: a negative number after the flag is its value, not a flag.
        (
            &["--lr", "-0.5"],
            &["task.optimizer.lr = -0.5 must be a finite number > 0"],
        ),
        (
            &["--lr", "0"],
            &["task.optimizer.lr = 0 must be a finite number > 0"],
        ),
        (
            &["--model", "linear"],
            &["model linear fits a regression target, but this data has 10 classes"],
        ),
        (
            &["--topology", "random-k:0"],
            &["topology.rule (--topology) = \"random-k:0\": K must be at least 1"],
        ),
        (
            &["--eval-every", "0"],
            &["run.eval_every (--eval-every) = 0 must be >= 1"],
        ),
        (
            &["--max-rounds", "0"],
            &["run.max_rounds (--max-rounds) = 0 must be >= 1"],
        ),
        (
            &["--shards", "0"],
            &["shard.count (--shards) = 0 must be >= 1"],
        ),
        (
            &["--shard", "3", "--shards", "2"],
            &["shard.index (--shard) = 3 must be below shard.count (--shards) = 2"],
        ),
        (
            &["--max-frames-per-sec", "0"],
            &["access.max_frames_per_sec (--max-frames-per-sec) = 0 must be a finite number > 0"],
        ),
        (
            &["--allow", "notapeer"],
            &[
                "access.allow_peers (--allow) = \"notapeer\" is not a peer id",
                "murmur id --data-dir",
            ],
        ),
        (
            &["--bootstrap", "/ip4/127.0.0.1/tcp/4001"],
            &["must end in /p2p/<peer id>"],
        ),
        (&["--gamma", "1.5"], &["gamma = 1.5 must be in (0, 1]"]),
        // --set reaches every key of the file, and a named flag overrides it.
        (
            &["--set", "gossip.gamma=2"],
            &["gamma = 2 must be in (0, 1]"],
        ),
        (
            &["--set", "gossip.gamma=0.3", "--gamma", "7"],
            &["gamma = 7 must be in (0, 1]"],
        ),
        (
            &["--set", "task.optimizer.lr=-1"],
            &["task.optimizer.lr = -1 must be a finite number > 0"],
        ),
        (&["--set", "gossip.nope=1"], &["unknown field `nope`"]),
        (&["--set", "gamma"], &["--set: expected key=value"]),
        (
            &["--dp-clip", "0", "--dp-noise", "4"],
            &["privacy.clip (--dp-clip) = 0 must be a finite number > 0"],
        ),
        (
            &["--dp-clip", "-1", "--dp-noise", "4"],
            &["privacy.clip (--dp-clip) = -1 must be a finite number > 0"],
        ),
        (
            &["--dp-clip", "1", "--dp-noise", "0.01"],
            &[
                "privacy.noise_multiplier (--dp-noise) = 0.01 must be a finite number >= 1",
                "std = sigma x clip",
            ],
        ),
        (
            &["--dp-clip", "1", "--dp-noise", "4", "--dp-delta", "1.5"],
            &["privacy.delta (--dp-delta) = 1.5 must be in (0, 1)"],
        ),
        (
            &["--dp-clip", "1"],
            &["privacy.clip (--dp-clip) is set but privacy.noise_multiplier (--dp-noise) is not"],
        ),
        (
            &["--dp-clip", "1", "--dp-noise", "4", "--local-steps", "0"],
            &["needs gossip.local_steps (--local-steps) >= 1"],
        ),
    ];
    for (flags, expected) in cases {
        refused(&dir, flags, expected);
    }
}

#[test]
fn nonsense_in_the_config_file_is_refused_with_the_key() {
    let dir = TempDir::new("validation-file");
    for (toml, expected) in [
        (
            "[node]\nmax_connections = 0\n",
            "node.max_connections = 0 must be >= 1",
        ),
        (
            "[checkpoint]\nkeep = 0\n",
            "checkpoint.keep = 0 must be >= 1",
        ),
        (
            "[node]\nping_interval_secs = 0\n",
            "node.ping_interval_secs = 0 must be >= 1",
        ),
        (
            "[task]\nbatch_size = 0\n",
            "task.batch_size = 0 must be >= 1",
        ),
        (
            "[task.optimizer]\nmomentum = 1.5\n",
            "task.optimizer.momentum = 1.5 must be in [0, 1)",
        ),
        (
            "[gossip]\nnoise_std = 0.01\n",
            "gossip.noise_std was removed",
        ),
        (
            "[privacy]\nclip = 1.0\nnoise_multiplier = 0.5\n",
            "privacy.noise_multiplier (--dp-noise) = 0.5 must be",
        ),
    ] {
        let file = dir.join("murmur.toml");
        std::fs::write(&file, toml).unwrap();
        refused(&dir, &["--config", file.to_str().unwrap()], &[expected]);
    }
}

#[test]
fn broken_secrets_are_named_with_what_to_do() {
    use std::os::unix::fs::PermissionsExt;
    let dir = TempDir::new("validation-secrets");
    // An empty identity key: libp2p's own error spoke of a cargo feature (rsa).
    let data = dir.join("empty-key");
    std::fs::create_dir_all(&data).unwrap();
    let key = data.join("identity.key");
    murmur_daemon::identity::write_secret(&key, "").unwrap();
    let stderr = assert_refused(
        &["run", "--data-dir", data.to_str().unwrap(), "--no-http"],
        &["is not a libp2p key (the file is empty)", "new peer id"],
    );
    assert!(!stderr.contains("feature"), "{stderr}");

    // A malformed pre-shared key: was `InvalidKeyFile`.
    let psk = dir.join("bad.key");
    murmur_daemon::identity::write_secret(&psk, "not a key\n").unwrap();
    refused(
        &dir,
        &["--psk", psk.to_str().unwrap()],
        &["is not a swarm.key file", "`murmur psk <file>` writes one"],
    );
    // A pre-shared key readable by others: was accepted while the identity key was refused.
    let open = dir.join("open.key");
    murmur_daemon::identity::write_secret(&open, &murmur_daemon::identity::generate_psk()).unwrap();
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o644)).unwrap();
    refused(
        &dir,
        &["--psk", open.to_str().unwrap()],
        &["has mode 644", "chmod 600"],
    );
}

#[test]
fn demo_and_status_refuse_nonsense_in_words() {
    assert_refused(&["demo", "--rounds", "0"], &["--rounds = 0 must be >= 1"]);
    assert_refused(&["demo", "--peers", "0"], &["--peers = 0 must be >= 1"]);
    // A port nobody listens on: the address and what to check, not a bare OS error.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().to_string()
    };
    assert_refused(
        &["status", "--addr", &closed],
        &[
            &format!("cannot connect to {closed}"),
            "is the node running",
        ],
    );
    assert_refused(
        &["status", "--addr", "no-port"],
        &["\"no-port\" is not host:port (e.g. 127.0.0.1:9464 or localhost:9464)"],
    );
}
