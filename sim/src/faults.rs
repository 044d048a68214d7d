//! Scheduled faults: churn (leave, crash, restart, join) and partitions.
//!
//! Times are simulated seconds since the start. A crash is silent: in-flight frames to the
//! peer are lost and its neighbours notice after `network.detect_ms`. A leave is clean: the
//! peer says goodbye. A restart brings a crashed peer back from its last checkpoint (or fresh,
//! if it never wrote one), and a join starts a peer that was held back at the start.

use crate::error::InvalidSetting;
use serde::{Deserialize, Serialize};

/// What happens to the chosen peers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ChurnKind {
    /// Clean departure (goodbye to every neighbour); the peer does not come back.
    Leave,
    /// Silent failure; neighbours notice after the detection delay.
    Crash,
    /// A crashed peer restarts from its last checkpoint.
    Restart,
    /// A held-back peer starts and adopts a neighbour's model.
    Join,
}

/// One churn event.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChurnEvent {
    /// When, in simulated seconds.
    pub at_s: f64,
    /// What.
    pub kind: ChurnKind,
    /// Which peers (ids). Empty with `fraction` set: that fraction of the peers, chosen by
    /// the seed.
    #[serde(default)]
    pub peers: Vec<u32>,
    /// Fraction of the peers to pick when `peers` is empty.
    #[serde(default)]
    pub fraction: Option<f64>,
    /// Crash only: restart the same peers this many seconds later.
    #[serde(default)]
    pub restart_after_s: Option<f64>,
}

/// A network partition: links between the two sides are cut from `at_s` to `heal_s`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Partition {
    /// Start, simulated seconds.
    pub at_s: f64,
    /// End, simulated seconds.
    pub heal_s: f64,
    /// Peers `0..split` on one side, the rest on the other; default: half.
    #[serde(default)]
    pub split: Option<u32>,
}

/// Peers held back at the start and started later (they adopt a neighbour's model).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FaultsConfig {
    /// Scheduled churn.
    pub churn: Vec<ChurnEvent>,
    /// Scheduled partitions.
    pub partitions: Vec<Partition>,
}

impl FaultsConfig {
    /// Checks times and fractions.
    pub fn validate(&self, peers: usize) -> Result<(), InvalidSetting> {
        for c in &self.churn {
            if !(c.at_s.is_finite() && c.at_s >= 0.0) {
                return Err(InvalidSetting::new(
                    "faults.churn.at_s",
                    format!("= {} must be >= 0", c.at_s),
                ));
            }
            if let Some(f) = c.fraction
                && !(0.0..=1.0).contains(&f)
            {
                return Err(InvalidSetting::new(
                    "faults.churn.fraction",
                    format!("= {f} must be in [0, 1]"),
                ));
            }
            if let Some(&p) = c.peers.iter().find(|p| **p as usize >= peers) {
                return Err(InvalidSetting::new(
                    "faults.churn.peers",
                    format!("names peer {p}, but there are {peers} peers"),
                ));
            }
            if c.restart_after_s.is_some() && c.kind != ChurnKind::Crash {
                return Err(InvalidSetting::new(
                    "faults.churn.restart_after_s",
                    "only applies to crashes",
                ));
            }
        }
        for p in &self.partitions {
            if !(p.at_s >= 0.0 && p.heal_s > p.at_s) {
                return Err(InvalidSetting::new(
                    "faults.partitions",
                    format!("needs 0 <= at_s < heal_s, got {p:?}"),
                ));
            }
            if let Some(s) = p.split
                && (s == 0 || s as usize >= peers)
            {
                return Err(InvalidSetting::new(
                    "faults.partitions.split",
                    format!("= {s} leaves one side empty"),
                ));
            }
        }
        Ok(())
    }

    /// Peers that join later: every peer named by a `join` event is absent at the start.
    pub fn late_joiners(&self) -> Vec<u32> {
        let mut v: Vec<u32> = self
            .churn
            .iter()
            .filter(|c| c.kind == ChurnKind::Join)
            .flat_map(|c| c.peers.iter().copied())
            .collect();
        v.sort_unstable();
        v.dedup();
        v
    }
}
