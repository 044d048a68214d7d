//! What `murmur run` claims before it starts anything: exclusive use of its data directory
//! and of the TCP ports it was told to listen on. Both failures are operator mistakes (a
//! second daemon on the same directory or port), so their messages say what to do.

use std::fs::{self, File, TryLockError};
use std::io::{Read, Seek, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use libp2p::Multiaddr;
use libp2p::multiaddr::Protocol;

/// Name of the lock file inside the data directory.
pub const LOCK_FILE: &str = "murmur.lock";

/// An exclusive lock on a data directory, held while this value lives. The OS releases it
/// when the process exits, crashes included (it is an `flock`, not a pid file), so a stale
/// lock file never keeps a restarted node out.
#[derive(Debug)]
pub struct DataDirLock {
    _file: File,
    path: PathBuf,
}

impl DataDirLock {
    /// Takes the lock of `dir` (created if needed), or fails naming the process holding it.
    pub fn acquire(dir: &Path) -> Result<Self> {
        fs::create_dir_all(dir)
            .with_context(|| format!("cannot create the data directory {}", dir.display()))?;
        let path = dir.join(LOCK_FILE);
        let mut file = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .with_context(|| format!("cannot open the lock file {}", path.display()))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let holder = read_holder(&mut file);
                bail!(
                    "the data directory {} is in use by another murmur process{holder}: two \
                     nodes on one directory would share one peer id and overwrite each other's \
                     checkpoints; stop that node or give this one another --data-dir",
                    dir.display()
                );
            }
            Err(TryLockError::Error(e)) => {
                return Err(e).with_context(|| format!("cannot lock {}", path.display()));
            }
        }
        // Record who holds it, for the message a second daemon prints.
        file.set_len(0)?;
        file.rewind()?;
        writeln!(file, "{}", std::process::id())?;
        file.sync_all()?;
        Ok(DataDirLock { _file: file, path })
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// " (pid N)" from the lock file's contents, or nothing when it holds no pid.
fn read_holder(file: &mut File) -> String {
    let mut text = String::new();
    let _ = file.read_to_string(&mut text);
    match text.trim().parse::<u32>() {
        Ok(pid) => format!(" (pid {pid})"),
        Err(_) => String::new(),
    }
}

/// The TCP socket address of a listen multiaddr with a fixed port (`/ip4|ip6/<ip>/tcp/<port>`
/// with port ≠ 0 and nothing after it but `/p2p`); None for anything else.
fn fixed_tcp_port(addr: &Multiaddr) -> Option<SocketAddr> {
    let mut parts = addr.iter();
    let ip: std::net::IpAddr = match parts.next()? {
        Protocol::Ip4(ip) => ip.into(),
        Protocol::Ip6(ip) => ip.into(),
        _ => return None,
    };
    let Protocol::Tcp(port) = parts.next()? else {
        return None;
    };
    if port == 0 || parts.any(|p| !matches!(p, Protocol::P2p(_))) {
        return None;
    }
    Some(SocketAddr::new(ip, port))
}

/// Refuses a fixed TCP listen port that another process already listens on.
///
/// libp2p's TCP transport sets `SO_REUSEPORT` on its listeners (so outgoing connections can
/// reuse the port), and Linux then lets a second libp2p process bind the very same port: both
/// print `listening` and inbound connections are split between two unrelated nodes. A plain
/// bind without `SO_REUSEPORT` still fails against such a listener, so try one first.
pub fn check_tcp_port_free(addr: &Multiaddr) -> Result<()> {
    let Some(sock) = fixed_tcp_port(addr) else {
        return Ok(());
    };
    match TcpListener::bind(sock) {
        Ok(probe) => {
            drop(probe);
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => bail!(
            "cannot listen on {addr}: TCP port {} is already in use by another process (another \
             murmur node?); stop it, or pick a free port (port 0 picks one)",
            sock.port()
        ),
        Err(e) => Err(e).with_context(|| format!("cannot listen on {addr}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("murmur-preflight-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn a_second_lock_on_one_directory_is_refused_until_the_first_is_dropped() {
        let dir = temp_dir("lock");
        let first = DataDirLock::acquire(&dir).unwrap();
        assert_eq!(
            fs::read_to_string(first.path()).unwrap().trim(),
            std::process::id().to_string()
        );
        let err = DataDirLock::acquire(&dir).unwrap_err().to_string();
        assert!(
            err.contains("is in use by another murmur process")
                && err.contains(&format!("(pid {})", std::process::id()))
                && err.contains("another --data-dir"),
            "{err}"
        );
        drop(first);
        DataDirLock::acquire(&dir).expect("free again once released");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn only_fixed_tcp_ports_are_probed() {
        let parse = |s: &str| s.parse::<Multiaddr>().unwrap();
        assert_eq!(
            fixed_tcp_port(&parse("/ip4/127.0.0.1/tcp/4122")),
            Some("127.0.0.1:4122".parse().unwrap())
        );
        assert_eq!(fixed_tcp_port(&parse("/ip4/127.0.0.1/tcp/0")), None);
        assert_eq!(
            fixed_tcp_port(&parse("/ip4/127.0.0.1/udp/4122/quic-v1")),
            None
        );
        assert_eq!(fixed_tcp_port(&parse("/ip4/127.0.0.1/tcp/4122/ws")), None);
    }

    #[test]
    fn a_port_held_by_a_listener_is_refused_and_a_free_one_passes() {
        let held = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = held.local_addr().unwrap().port();
        let addr: Multiaddr = format!("/ip4/127.0.0.1/tcp/{port}").parse().unwrap();
        let err = check_tcp_port_free(&addr).unwrap_err().to_string();
        assert!(
            err.contains(&format!("TCP port {port} is already in use")),
            "{err}"
        );
        drop(held);
        check_tcp_port_free(&addr).unwrap();
    }
}
