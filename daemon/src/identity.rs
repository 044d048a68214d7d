//! The node's persistent identity (an ed25519 key, created on first start with mode 0600) and
//! the optional private-network pre-shared key.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use anyhow::{Context, Result, bail};
use libp2p::identity::Keypair;
use libp2p::pnet::PreSharedKey;
use rand::RngCore;

/// Loads the key at `path`, or creates it (mode 0600, parent directories created) when absent.
/// A key file readable by group or others is refused: it is the node's identity.
pub fn load_or_create(path: &Path) -> Result<Keypair> {
    match fs::read(path) {
        Ok(bytes) => {
            refuse_readable_by_others(path, "identity key")?;
            // libp2p's own error names a cargo feature (rsa) for any unknown key type, an empty
            // file included: say what the file is instead.
            Keypair::from_protobuf_encoding(&bytes).map_err(|_| {
                anyhow::anyhow!(
                    "identity key {} is not a libp2p key ({}): restore it from a backup, or \
                     move it away to start with a new key (the node gets a new peer id)",
                    path.display(),
                    if bytes.is_empty() {
                        "the file is empty".to_string()
                    } else {
                        format!("{} bytes that do not decode", bytes.len())
                    }
                )
            })
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                fs::create_dir_all(dir)?;
            }
            let key = Keypair::generate_ed25519();
            let bytes = key.to_protobuf_encoding()?;
            // create_new + mode 0600: the key never exists with wider permissions, and two
            // daemons racing on one directory cannot both create it.
            let mut file = fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)
                .with_context(|| format!("creating identity key {}", path.display()))?;
            file.write_all(&bytes)?;
            file.sync_all()?;
            Ok(key)
        }
        Err(e) => Err(e).with_context(|| format!("reading identity key {}", path.display())),
    }
}

/// Reads a pre-shared key in the go-ipfs `swarm.key` format
/// (`/key/swarm/psk/1.0.0/`, `/base16/`, 64 hex digits).
pub fn load_psk(path: &Path) -> Result<PreSharedKey> {
    let text = fs::read_to_string(path)
        .with_context(|| format!("reading pre-shared key {}", path.display()))?;
    refuse_readable_by_others(path, "pre-shared key")?;
    text.trim().parse::<PreSharedKey>().map_err(|_| {
        anyhow::anyhow!(
            "pre-shared key {} is not a swarm.key file: expected the lines \
             /key/swarm/psk/1.0.0/, /base16/ and 64 hex digits (`murmur psk <file>` writes one)",
            path.display()
        )
    })
}

/// A secret (the identity or the network key) readable by group or others is refused.
fn refuse_readable_by_others(path: &Path, what: &str) -> Result<()> {
    let mode = fs::metadata(path)
        .with_context(|| format!("reading {what} {}", path.display()))?
        .permissions()
        .mode()
        & 0o777;
    if mode & 0o077 != 0 {
        bail!(
            "{what} {} has mode {mode:o}; a secret must not be readable by others: chmod 600 {}",
            path.display(),
            path.display()
        );
    }
    Ok(())
}

/// A fresh random pre-shared key in the `swarm.key` format.
pub fn generate_psk() -> String {
    let mut key = [0u8; 32];
    rand::rng().fill_bytes(&mut key);
    let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
    format!("/key/swarm/psk/1.0.0/\n/base16/\n{hex}\n")
}

/// Writes `contents` to `path` with mode 0600 (refuses to overwrite).
pub fn write_secret(path: &Path, contents: &str) -> Result<()> {
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    file.write_all(contents.as_bytes())?;
    file.sync_all()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("murmur-id-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn key_is_created_with_mode_0600_and_reloaded_unchanged() {
        let dir = temp_dir("key");
        let path = dir.join("sub/identity.key");
        let first = load_or_create(&path).unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let again = load_or_create(&path).unwrap();
        assert_eq!(first.public().to_peer_id(), again.public().to_peer_id());

        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        let err = load_or_create(&path).unwrap_err().to_string();
        assert!(err.contains("chmod 600"), "{err}");
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn generated_psk_parses_and_garbage_does_not() {
        let dir = temp_dir("psk");
        let path = dir.join("swarm.key");
        write_secret(&path, &generate_psk()).unwrap();
        load_psk(&path).unwrap();
        assert!(write_secret(&path, "again").is_err(), "never overwrites");
        write_secret(
            &dir.join("bad.key"),
            "/key/swarm/psk/1.0.0/\n/base16/\nzz\n",
        )
        .unwrap();
        let err = load_psk(&dir.join("bad.key")).unwrap_err().to_string();
        assert!(
            err.contains("is not a swarm.key file") && err.contains("murmur psk <file>"),
            "{err}"
        );
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_psk_readable_by_others_is_refused_like_the_identity_key() {
        let dir = temp_dir("psk-mode");
        let path = dir.join("swarm.key");
        write_secret(&path, &generate_psk()).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        let err = load_psk(&path).unwrap_err().to_string();
        assert!(
            err.contains("has mode 644") && err.contains("chmod 600"),
            "{err}"
        );
        fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn an_empty_identity_key_is_named_as_such_not_as_a_cargo_feature() {
        let dir = temp_dir("empty-key");
        let path = dir.join("identity.key");
        write_secret(&path, "").unwrap();
        let err = load_or_create(&path).unwrap_err().to_string();
        assert!(
            err.contains("is not a libp2p key (the file is empty)")
                && err.contains("new peer id")
                && !err.contains("feature"),
            "{err}"
        );
        fs::remove_dir_all(dir).unwrap();
    }
}
