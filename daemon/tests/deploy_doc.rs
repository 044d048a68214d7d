//! `docs/deploy.md` stays true: its `murmur.toml` parses and passes every start-up check (the
//! relay lab, `tests/relay_netns.rs`, runs a node with it), and its systemd unit passes
//! `systemd-analyze verify` with `ExecStart` pointing at this build's binary (`SKIPPED:`
//! where systemd-analyze is absent).

mod common;

use std::process::Command;

use common::{TempDir, assert_silent_success, binary, doc_block};
use murmur_daemon::config::Config;

#[test]
fn the_relay_configuration_parses_validates_and_serves_a_relay() {
    let config = Config::parse(&doc_block("toml")).expect("deploy.md's murmur.toml parses");
    config
        .validate()
        .expect("deploy.md's murmur.toml passes the start-up checks");
    assert!(config.relay.serve);
    assert_eq!(
        config.node.listen,
        ["/ip4/0.0.0.0/tcp/4001", "/ip4/0.0.0.0/udp/4001/quic-v1"],
        "the ports the guide says to open"
    );
}

#[test]
fn the_systemd_unit_verifies() {
    let unit = doc_block("ini");
    let exec = "ExecStart=/usr/local/bin/murmur run --config /etc/murmur/murmur.toml";
    assert!(unit.contains(exec), "{unit}");
    let dir = TempDir::new("deploy-unit");
    let file = dir.join("murmur.service");
    let ours = format!(
        "ExecStart={} run --config /etc/murmur/murmur.toml",
        binary().display()
    );
    std::fs::write(&file, unit.replace(exec, &ours)).unwrap();
    let Ok(out) = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&file)
        .output()
    else {
        println!("SKIPPED: systemd-analyze not installed; the unit file went unverified");
        return;
    };
    assert_silent_success(&out, "systemd-analyze verify");
}
