//! What a node operator relies on, across real processes: one daemon per data directory (the
//! lock is released when the holder dies), one daemon per fixed TCP port, a periodic progress
//! line in plain text when the log is a file, `murmur status` in words, and `murmur bench`'s
//! figures.

mod common;

use std::time::Duration;

use common::{TempDir, args, assert_refused, run_to_exit, start, wait_for};

#[test]
fn a_second_daemon_on_one_data_dir_is_refused_and_the_lock_dies_with_its_holder() {
    let dir = TempDir::new("lock");
    let data = dir.join("node");
    let mut first = start(&data, &[]);
    let data_arg = data.to_str().unwrap();
    let pid = first.child.id().to_string();
    assert_refused(
        &["run", "--data-dir", data_arg, "--no-http"],
        &[
            &format!(
                "the data directory {data_arg} is in use by another murmur process (pid {pid})"
            ),
            "give this one another --data-dir",
        ],
    );
    assert!(first.status().is_ok(), "the first node keeps running");

    // A crash (SIGKILL) releases the lock: the directory is usable again at once.
    first.signal("KILL").unwrap();
    let _ = first.child.wait();
    let again = start(&data, &[]);
    assert_eq!(
        again.peer_id, first.peer_id,
        "same directory, same identity"
    );
}

#[test]
fn a_fixed_tcp_port_held_by_another_daemon_is_refused() {
    let dir = TempDir::new("port");
    let port = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap().port()
    };
    let listen = format!("/ip4/127.0.0.1/tcp/{port}");
    let first = start(&dir.join("a"), &args(&["--listen", &listen]));
    let status = first.status().unwrap();
    assert!(
        status
            .listen
            .iter()
            .any(|a| a.contains(&format!("/tcp/{port}/"))),
        "{:?}",
        status.listen
    );
    let stderr = assert_refused(
        &[
            "run",
            "--data-dir",
            dir.join("b").to_str().unwrap(),
            "--listen",
            &listen,
            "--no-http",
        ],
        &[
            &format!(
                "cannot listen on {listen}: TCP port {port} is already in use by another process"
            ),
            "pick a free port",
        ],
    );
    assert!(!stderr.contains("listening"), "{stderr}");
}

#[test]
fn a_running_node_logs_progress_in_plain_text_and_status_reads_as_words() {
    let dir = TempDir::new("progress");
    let config = dir.join("murmur.toml");
    std::fs::write(&config, "[log]\nprogress_secs = 1\n").unwrap();
    let node = murmur_daemon::demo::spawn_node(
        common::binary(),
        &dir.join("n"),
        &args(&[
            "--config",
            config.to_str().unwrap(),
            "--max-rounds",
            "30",
            "--checkpoint-every",
            "10",
        ]),
        Duration::from_secs(60),
    )
    .unwrap();
    wait_for(&node, Duration::from_secs(60), "training done", |s| {
        s.done && s.last_checkpoint == Some(30)
    });
    // `murmur status` prints words, not Rust values, and takes a host name.
    let out = run_to_exit(&["status", "--addr", &node.http], Duration::from_secs(10));
    assert!(out.success, "{out:?}");
    assert!(
        out.stdout
            .contains("phase      done: trained its 30 rounds, still serving its model")
            && out.stdout.contains("(last at round 30)"),
        "{}",
        out.stdout
    );
    assert!(!out.stdout.contains("Some("), "{}", out.stdout);
    let port = node.http.rsplit(':').next().unwrap();
    let by_name = run_to_exit(
        &["status", "--addr", &format!("localhost:{port}")],
        Duration::from_secs(10),
    );
    assert!(
        by_name.success && by_name.stdout.contains(&node.peer_id),
        "{by_name:?}"
    );
    drop(node);

    // With info logs going to a file: one progress line per period, and no colour codes.
    let log_path = dir.join("chatty.log");
    let mut chatty = std::process::Command::new(common::binary())
        .args(["run", "--data-dir", dir.join("m").to_str().unwrap()])
        .args(["--listen", "/ip4/127.0.0.1/tcp/0", "--no-http"])
        .args(["--config", config.to_str().unwrap()])
        .env("RUST_LOG", "info")
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log_path).unwrap())
        .spawn()
        .unwrap();
    let progress_lines = || {
        std::fs::read_to_string(&log_path)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains("progress"))
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    let began = std::time::Instant::now();
    while progress_lines().len() < 2 && began.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = chatty.kill();
    let _ = chatty.wait();
    let text = std::fs::read_to_string(&log_path).unwrap();
    let progress = progress_lines();
    assert!(
        progress.len() >= 2,
        "fewer than 2 progress lines in\n{text}"
    );
    assert!(
        progress[1].contains("round=") && progress[1].contains("rounds_per_sec="),
        "{}",
        progress[1]
    );
    assert!(
        !text.contains('\u{1b}'),
        "ANSI escape codes in a log file:\n{text}"
    );
}

#[test]
fn an_unreachable_bootstrap_peer_is_logged_at_once() {
    let dir = TempDir::new("bootstrap");
    let id = run_to_exit(
        &["id", "--data-dir", dir.join("other").to_str().unwrap()],
        Duration::from_secs(10),
    );
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let bootstrap = format!("/ip4/127.0.0.1/tcp/{closed}/p2p/{}", id.stdout.trim());
    let node = start(&dir.join("n"), &args(&["--bootstrap", &bootstrap]));
    let began = std::time::Instant::now();
    while !common::log(&node).contains("cannot reach bootstrap peer")
        && began.elapsed() < Duration::from_secs(10)
    {
        std::thread::sleep(Duration::from_millis(100));
    }
    let text = common::log(&node);
    assert!(
        text.contains("cannot reach bootstrap peer")
            && text.contains("check the --bootstrap address"),
        "{text}"
    );
}

/// `murmur bench` ends with a `summary:` line whose figures obey what they measure: gossip
/// frames are a part of what libp2p wrote, no daemon had more neighbours than the rule
/// allows (and each found one), the steady-state CPU per peer-round was measured, and the
/// start-up fits inside the run.
#[test]
fn bench_summary_carries_cpu_startup_wire_share_and_degree() {
    // Enough rounds that the demo's 200 ms status polls see the steady part (about a
    // second per run at 4000 rounds/s).
    let out = run_to_exit(
        &["bench", "--peers", "3", "--rounds", "6000"],
        Duration::from_secs(240),
    );
    assert!(out.success, "{out:?}");
    let summary = out.stdout.lines().last().unwrap_or_default();
    let values: std::collections::BTreeMap<&str, f64> = summary
        .strip_prefix("summary: ")
        .unwrap_or_else(|| panic!("the last line is the summary: {}", out.stdout))
        .split(' ')
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap();
            (k, v.parse().unwrap_or_else(|_| panic!("{kv}")))
        })
        .collect();
    let get = |key: &str| {
        *values
            .get(key)
            .unwrap_or_else(|| panic!("{key} in {summary}"))
    };
    for key in ["cpu_us_per_peer_round", "cpu_us_per_peer_round_overlap"] {
        assert!(get(key).is_finite() && get(key) > 0.0, "{summary}");
    }
    let share = get("gossip_share_of_wire");
    assert!(share > 0.0 && share <= 1.0, "{summary}");
    // Three peers: the exponential rule links each to both others.
    assert_eq!(get("degree_bound"), 2.0, "{summary}");
    assert!(
        (1.0..=get("degree_bound")).contains(&get("max_degree")),
        "{summary}"
    );
    let startup = get("startup_s");
    assert!(startup > 0.0 && startup < get("seconds"), "{summary}");
}
