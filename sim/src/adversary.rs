//! Hostile peers in a scenario: which peers attack and with which settings. The attack itself
//! is the core's frame rewriter, [`murmur_gossip::adversary::Adversary`] (the daemon's
//! `--adversary` uses the same one): a peer that runs the protocol, so its neighbours accept
//! it, and whose outgoing frames are rewritten into `huge`, `non-finite`, `wrong-dim`,
//! `replay` or `flood` frames (the table of kinds is in that module).
//!
//! Adversaries are excluded from the accuracy and consensus metrics (they report what the
//! honest peers reach).

pub use murmur_gossip::adversary::{Adversary, AttackKind};
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

/// Which peers attack and how.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdversaryConfig {
    /// The attack.
    pub kind: AttackKind,
    /// How many peers attack (chosen by the seed) when `peers` is empty.
    #[serde(default = "one")]
    pub count: usize,
    /// Explicit attacker ids.
    #[serde(default)]
    pub peers: Vec<u32>,
    /// `huge`: magnitude of the forged values.
    #[serde(default = "default_scale")]
    pub scale: f32,
    /// `flood`: copies of each frame (and garbage frames) per real frame; `replay`: how many
    /// earlier updates are re-sent after each new one.
    #[serde(default = "default_copies")]
    pub copies: usize,
}

fn one() -> usize {
    1
}
fn default_scale() -> f32 {
    1e4
}
fn default_copies() -> usize {
    8
}

impl AdversaryConfig {
    /// The attacking peer ids among `peers` (never all of them).
    pub fn choose(&self, peers: usize, rng: &mut ChaCha8Rng) -> Vec<u32> {
        let mut ids = if self.peers.is_empty() {
            let mut all: Vec<u32> = (0..peers as u32).collect();
            all.shuffle(rng);
            all.truncate(self.count.min(peers.saturating_sub(1)));
            all
        } else {
            self.peers.clone()
        };
        ids.sort_unstable();
        ids
    }

    /// The rewriter for one attacking peer on a model of dimension `dim`.
    pub fn attacker(&self, dim: usize) -> Adversary {
        Adversary::new(self.kind, self.scale, self.copies, dim)
    }
}
