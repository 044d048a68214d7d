//! The privacy ledger: what a data directory's data has spent across every run of the node.
//!
//! The peer counts the noised updates of one process (`PeerStats::private_rounds`); a
//! checkpoint cannot carry the count, because a node that crashes resumes from its last
//! checkpoint while its neighbours already received the updates sent after it. The ledger,
//! `<data_dir>/privacy-ledger.json`, holds the composed RDP (`murmur_gossip::privacy::Accountant`)
//! of every earlier run and is written ahead of the releases: before the update that would go
//! past what the file covers, the trainer reserves [`RESERVE_ROUNDS`] more rounds (an atomic
//! write, fsync and rename). A crash therefore over-counts by at most that many rounds (an ε
//! that is too large is still a valid bound); a clean stop settles the file to the exact
//! count. The ledger is not reset by `--fresh` (new checkpoints, same data); remove it only
//! for a data directory whose shard is new data.
//!
//! The noise key is drawn from the operating system at every start (`Peer::set_noise_key`):
//! a seed an observer could know would let it subtract the noise, and a generator resumed
//! from an older checkpoint would replay noise already spent.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use murmur_gossip::privacy::{Accountant, PrivacyConfig, PrivacySpent};
use serde::{Deserialize, Serialize};

/// File name of the ledger in the data directory.
pub const LEDGER_FILE: &str = "privacy-ledger.json";

/// Rounds reserved per write of the ledger: the most a crash can over-count.
pub const RESERVE_ROUNDS: u64 = 100;

/// Layout version of the ledger file.
const LEDGER_FORMAT: u16 = 1;

/// What the file holds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct LedgerFile {
    format: u16,
    /// The composed RDP of every release of this data (reserved ones included).
    spent: Accountant,
    /// Whether `spent` is exact (a clean stop) or a reservation (a crash may have run fewer).
    exact: bool,
}

/// A data directory's privacy ledger, open for one run (see the module docs).
#[derive(Debug)]
pub struct Ledger {
    path: PathBuf,
    /// Spent by earlier runs (an upper bound when the last one crashed).
    before: Accountant,
    config: PrivacyConfig,
    /// Releases of this run the file covers.
    reserved: u64,
}

impl Ledger {
    /// Opens (or starts) the ledger of `data_dir` for a run with `config`.
    pub fn open(data_dir: &Path, config: PrivacyConfig) -> Result<Self> {
        let path = data_dir.join(LEDGER_FILE);
        let before = match read(&path)? {
            Some(file) => {
                if !file.exact {
                    tracing::warn!(
                        rounds = file.spent.rounds,
                        path = %path.display(),
                        "the last run did not stop cleanly: its reserved privacy rounds count as spent"
                    );
                }
                file.spent
            }
            None => Accountant::new(),
        };
        Ok(Ledger {
            path,
            before,
            config,
            reserved: 0,
        })
    }

    /// The ledger file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// What earlier runs spent.
    pub fn before(&self) -> Accountant {
        self.before
    }

    /// The guarantee once this run released `rounds` noised updates.
    pub fn spent(&self, rounds: u64) -> PrivacySpent {
        self.before
            .with(self.config.noise_multiplier, rounds)
            .spent(self.config.delta)
    }

    /// Makes the file cover at least `rounds` releases of this run (writing ahead by
    /// [`RESERVE_ROUNDS`] when it does not yet). Call before each release.
    pub fn reserve(&mut self, rounds: u64) -> Result<()> {
        if rounds <= self.reserved {
            return Ok(());
        }
        let reserved = rounds + RESERVE_ROUNDS - 1;
        self.write(reserved, false)?;
        self.reserved = reserved;
        Ok(())
    }

    /// Records exactly `rounds` releases of this run (a clean stop).
    pub fn settle(&mut self, rounds: u64) -> Result<()> {
        self.write(rounds, true)?;
        self.reserved = rounds;
        Ok(())
    }

    fn write(&self, rounds: u64, exact: bool) -> Result<()> {
        let file = LedgerFile {
            format: LEDGER_FORMAT,
            spent: self.before.with(self.config.noise_multiplier, rounds),
            exact,
        };
        let text = serde_json::to_string_pretty(&file).expect("the ledger serializes");
        crate::checkpoint::write_atomic(&self.path, text.as_bytes())
            .with_context(|| format!("cannot write the privacy ledger {}", self.path.display()))
    }
}

/// Reads a ledger file (None when there is none); a damaged one stops the node, since
/// starting over at zero would under-report what the data already spent.
fn read(path: &Path) -> Result<Option<LedgerFile>> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let file: LedgerFile = serde_json::from_str(&text).with_context(|| {
        format!(
            "the privacy ledger {} is damaged: restore it from a backup (starting at zero \
             would under-report what this data already spent), or remove it only if this \
             data directory's shard is new data",
            path.display()
        )
    })?;
    if file.format != LEDGER_FORMAT {
        bail!(
            "the privacy ledger {} has format {} (this murmur reads {LEDGER_FORMAT})",
            path.display(),
            file.format
        );
    }
    if !(file.spent.rho.is_finite() && file.spent.rho >= 0.0) {
        bail!(
            "the privacy ledger {} holds rho = {}: restore it from a backup",
            path.display(),
            file.spent.rho
        );
    }
    Ok(Some(file))
}

/// With privacy off: warns when this data directory's data was released under privacy before
/// (training on without noise publishes unnoised updates of the same data).
pub fn warn_if_spent(data_dir: &Path) {
    let path = data_dir.join(LEDGER_FILE);
    if let Ok(Some(file)) = read(&path)
        && file.spent.rounds > 0
    {
        tracing::warn!(
            rounds = file.spent.rounds,
            path = %path.display(),
            "privacy is off, but this data directory's data was released under privacy before: \
             the updates of this run are not noised"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use murmur_gossip::privacy::epsilon;

    const CONFIG: PrivacyConfig = PrivacyConfig {
        clip: 1.0,
        noise_multiplier: 4.0,
        delta: 1e-5,
    };

    fn dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("murmur-ledger-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn runs_add_up_a_crash_over_counts_by_the_reservation_and_damage_stops() {
        let d = dir("add");
        let mut first = Ledger::open(&d, CONFIG).unwrap();
        assert_eq!(first.spent(0).epsilon, 0.0);
        for r in 1..=30 {
            first.reserve(r).unwrap();
        }
        first.settle(30).unwrap();
        // A second run starts from the first's 30 rounds.
        let mut second = Ledger::open(&d, CONFIG).unwrap();
        assert_eq!(second.before().rounds, 30);
        assert_eq!(second.spent(20), epsilon(4.0, 50, 1e-5));
        // It crashes after 5 releases: the file says 30 + the reservation.
        for r in 1..=5 {
            second.reserve(r).unwrap();
        }
        drop(second);
        let third = Ledger::open(&d, CONFIG).unwrap();
        assert_eq!(third.before().rounds, 30 + RESERVE_ROUNDS);
        // A louder third run composes its own σ onto the total.
        let louder = PrivacyConfig {
            noise_multiplier: 8.0,
            ..CONFIG
        };
        let third = Ledger::open(&d, louder).unwrap();
        let expected = Accountant::new()
            .with(4.0, 30 + RESERVE_ROUNDS)
            .with(8.0, 10)
            .spent(1e-5);
        assert_eq!(third.spent(10), expected);

        std::fs::write(d.join(LEDGER_FILE), "{ not json").unwrap();
        let err = Ledger::open(&d, CONFIG).unwrap_err();
        assert!(format!("{err:#}").contains("is damaged"), "{err:#}");
        let _ = std::fs::remove_dir_all(&d);
    }
}
