//! Network namespaces for partition tests: a private switched network the test creates and
//! always removes.
//!
//! [`NetLab::new`] builds, with `ip`:
//! - a hub namespace holding one Linux bridge per group (`br0`, `br1`, …), the bridges joined
//!   by veth "trunk" pairs (`br0` ↔ `brK`);
//! - one namespace per node, with a veth `eth0` plugged into its group's bridge, address
//!   `10.77.0.<i + 1>/24` and loopback up.
//!
//! [`NetLab::partition`] takes the trunks down (the groups can no longer reach each other,
//! each group still works inside), [`NetLab::heal`] brings them up. Dropping the lab deletes
//! every namespace (which removes the veths and bridges with them), also when a test panics.
//! The addresses exist only inside these namespaces, never on the host's network.
//!
//! Creating namespaces needs `CAP_SYS_ADMIN`. [`NetLab::available`] probes it; tests call
//! [`skip_without_netns`], which prints `SKIPPED: …` with the reason rather than passing
//! silently.

use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};

/// Prefix of every namespace this module creates (with the process id, so parallel test
/// binaries and leftovers of a killed run never collide).
const PREFIX: &str = "mrm";

static LAB_COUNTER: AtomicU32 = AtomicU32::new(0);

/// Runs `ip` with `args`, returning its output or a readable error.
fn ip(args: &[&str]) -> Result<Output, String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("cannot run `ip`: {e}"))?;
    if out.status.success() {
        Ok(out)
    } else {
        Err(format!(
            "`ip {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// A private switched network of namespaces (see the module docs).
#[derive(Debug)]
pub struct NetLab {
    hub: String,
    nodes: Vec<String>,
    groups: Vec<usize>,
    trunks: Vec<String>,
    created: Vec<String>,
}

impl NetLab {
    /// Whether this process may create network namespaces (tries one and removes it).
    pub fn available() -> Result<(), String> {
        let probe = format!("{PREFIX}{}probe", std::process::id());
        ip(&["netns", "add", &probe])?;
        ip(&["netns", "del", &probe])?;
        Ok(())
    }

    /// A lab with `group_sizes[g]` nodes in group g (nodes numbered across groups in order).
    pub fn new(group_sizes: &[usize]) -> Result<NetLab, String> {
        let total: usize = group_sizes.iter().sum();
        if total == 0 || total > 250 || group_sizes.is_empty() {
            return Err(format!("unsupported lab shape {group_sizes:?}"));
        }
        remove_leftovers();
        let tag = format!(
            "{PREFIX}{}x{}",
            std::process::id(),
            LAB_COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let mut lab = NetLab {
            hub: format!("{tag}hub"),
            nodes: Vec::new(),
            groups: Vec::new(),
            trunks: Vec::new(),
            created: Vec::new(),
        };
        // From here on, an error drops `lab`, which removes what was created.
        lab.build(&tag, group_sizes)?;
        Ok(lab)
    }

    fn add_ns(&mut self, name: &str) -> Result<(), String> {
        ip(&["netns", "add", name])?;
        self.created.push(name.to_string());
        ip(&["-n", name, "link", "set", "lo", "up"])?;
        Ok(())
    }

    fn build(&mut self, tag: &str, group_sizes: &[usize]) -> Result<(), String> {
        let hub = self.hub.clone();
        self.add_ns(&hub)?;
        for g in 0..group_sizes.len() {
            let br = format!("br{g}");
            ip(&["-n", &hub, "link", "add", &br, "type", "bridge"])?;
            ip(&["-n", &hub, "link", "set", &br, "up"])?;
        }
        for g in 1..group_sizes.len() {
            let (a, b) = (format!("t0g{g}"), format!("t{g}g0"));
            ip(&[
                "-n", &hub, "link", "add", &a, "type", "veth", "peer", "name", &b,
            ])?;
            ip(&["-n", &hub, "link", "set", &a, "master", "br0"])?;
            ip(&["-n", &hub, "link", "set", &b, "master", &format!("br{g}")])?;
            ip(&["-n", &hub, "link", "set", &a, "up"])?;
            ip(&["-n", &hub, "link", "set", &b, "up"])?;
            self.trunks.push(a);
            self.trunks.push(b);
        }
        let mut i = 0usize;
        for (g, &size) in group_sizes.iter().enumerate() {
            for _ in 0..size {
                let ns = format!("{tag}n{i}");
                self.add_ns(&ns)?;
                let port = format!("p{i}");
                ip(&[
                    "-n", &hub, "link", "add", &port, "type", "veth", "peer", "name", "eth0",
                    "netns", &ns,
                ])?;
                ip(&[
                    "-n",
                    &hub,
                    "link",
                    "set",
                    &port,
                    "master",
                    &format!("br{g}"),
                ])?;
                ip(&["-n", &hub, "link", "set", &port, "up"])?;
                ip(&[
                    "-n",
                    &ns,
                    "addr",
                    "add",
                    &format!("{}/24", Self::addr_of(i)),
                    "dev",
                    "eth0",
                ])?;
                ip(&["-n", &ns, "link", "set", "eth0", "up"])?;
                self.nodes.push(ns);
                self.groups.push(g);
                i += 1;
            }
        }
        Ok(())
    }

    /// Address of node `i` inside the lab.
    pub fn addr_of(i: usize) -> String {
        format!("10.77.0.{}", i + 1)
    }

    /// Number of nodes.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether the lab has no nodes (never, by construction).
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Group of node `i`.
    pub fn group_of(&self, i: usize) -> usize {
        self.groups[i]
    }

    /// Namespace name of node `i`.
    pub fn namespace(&self, i: usize) -> &str {
        &self.nodes[i]
    }

    /// A command that runs `program` inside node `i`'s namespace.
    pub fn command(&self, i: usize, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.nodes[i]]).arg(program);
        c
    }

    fn set_trunks(&self, state: &str) -> Result<(), String> {
        for t in &self.trunks {
            ip(&["-n", &self.hub, "link", "set", t, state])?;
        }
        Ok(())
    }

    /// Cuts every group off from the others (trunk links down).
    pub fn partition(&self) -> Result<(), String> {
        self.set_trunks("down")
    }

    /// Reconnects the groups (trunk links up).
    pub fn heal(&self) -> Result<(), String> {
        self.set_trunks("up")
    }
}

impl Drop for NetLab {
    fn drop(&mut self) {
        // Node namespaces first (their veth ends go with them), the hub last.
        for ns in self.created.iter().rev() {
            if let Err(e) = ip(&["netns", "del", ns]) {
                eprintln!("netlab cleanup: {e}");
            }
        }
    }
}

/// Deletes namespaces this module created in processes that no longer exist (a test run
/// killed before its labs were dropped).
fn remove_leftovers() {
    let Ok(out) = ip(&["netns", "list"]) else {
        return;
    };
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let name = line.split_whitespace().next().unwrap_or_default();
        let Some(rest) = name.strip_prefix(PREFIX) else {
            continue;
        };
        let pid: String = rest.chars().take_while(char::is_ascii_digit).collect();
        if !pid.is_empty() && !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            let _ = ip(&["netns", "del", name]);
        }
    }
}

/// Returns `true` when namespaces can be created; otherwise prints why the calling test is
/// skipped (`SKIPPED: <test>: …`) and returns `false`.
pub fn skip_without_netns(test: &str) -> bool {
    match NetLab::available() {
        Ok(()) => true,
        Err(e) => {
            println!("SKIPPED: {test}: network namespaces are not available here ({e})");
            eprintln!("SKIPPED: {test}: network namespaces are not available here ({e})");
            false
        }
    }
}
