//! Hostile peers: a peer that runs the protocol (so its neighbours accept it as a neighbour)
//! but whose outgoing frames the simulator rewrites into an attack.
//!
//! | kind | what its neighbours receive | expected defence |
//! |---|---|---|
//! | `huge` | well-formed updates and snapshots whose values are ±`scale` | clipping (`clip_radius`) bounds the damage |
//! | `non-finite` | updates carrying NaN and ∞ | rejected (`NonFinite`) |
//! | `wrong-dim` | updates of another dimension | rejected (`WrongDimension`) |
//! | `replay` | every update followed by re-sends of its earlier updates | duplicates dropped |
//! | `flood` | every frame `copies` times plus random garbage frames | duplicates dropped, garbage rejected |
//!
//! Adversaries are excluded from the accuracy and consensus metrics (they report what the
//! honest peers reach).

use murmur_compress::{self as compress, CodecSpec};
use murmur_gossip::message::{Message, Snapshot, Update};
use rand::seq::SliceRandom;
use rand::{Rng, RngCore};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

/// The attack.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AttackKind {
    /// Finite but huge values.
    Huge,
    /// NaN and infinities.
    NonFinite,
    /// Vectors of the wrong length.
    WrongDim,
    /// Old updates sent again.
    Replay,
    /// Many copies and random bytes.
    Flood,
}

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
}

/// The state of one attacker: the updates it sent so far (for replays) and its generator.
#[derive(Debug)]
pub struct Attacker {
    config: AdversaryConfig,
    dim: usize,
    sent_updates: Vec<Vec<u8>>,
    rng: ChaCha8Rng,
}

impl Attacker {
    /// An attacker on a model of dimension `dim`.
    pub fn new(config: AdversaryConfig, dim: usize, rng: ChaCha8Rng) -> Self {
        Attacker {
            config,
            dim,
            sent_updates: Vec::new(),
            rng,
        }
    }

    fn forged_values(&mut self, len: usize) -> Vec<f32> {
        let scale = self.config.scale;
        match self.config.kind {
            AttackKind::NonFinite => (0..len)
                .map(|i| match i % 3 {
                    0 => f32::NAN,
                    1 => f32::INFINITY,
                    _ => f32::NEG_INFINITY,
                })
                .collect(),
            _ => (0..len)
                .map(|_| {
                    if self.rng.random::<bool>() {
                        scale
                    } else {
                        -scale
                    }
                })
                .collect(),
        }
    }

    fn dense_frame(values: &[f32]) -> Vec<u8> {
        compress::build(&CodecSpec::DenseF32, 0)
            .compress(values)
            .encode()
    }

    /// Rewrites one outgoing frame into the frames actually sent.
    pub fn rewrite(&mut self, bytes: Vec<u8>) -> Vec<Vec<u8>> {
        let Ok(message) = Message::decode(&bytes, usize::MAX) else {
            return vec![bytes];
        };
        match (self.config.kind, message) {
            (AttackKind::Huge | AttackKind::NonFinite, Message::Update(u)) => {
                let values = self.forged_values(self.dim);
                vec![
                    Message::Update(Update {
                        frame: Self::dense_frame(&values),
                        ..u
                    })
                    .encode(),
                ]
            }
            (AttackKind::Huge | AttackKind::NonFinite, Message::Snapshot(s)) => {
                let x_hat = self.forged_values(self.dim);
                let model = s.model.as_ref().map(|_| x_hat.clone());
                vec![Message::Snapshot(Snapshot { x_hat, model, ..s }).encode()]
            }
            (AttackKind::WrongDim, Message::Update(u)) => {
                let values = vec![0.5f32; self.dim + 7];
                vec![
                    Message::Update(Update {
                        frame: Self::dense_frame(&values),
                        ..u
                    })
                    .encode(),
                ]
            }
            (AttackKind::WrongDim, Message::Snapshot(s)) => {
                let x_hat = vec![0.5f32; self.dim + 7];
                vec![Message::Snapshot(Snapshot { x_hat, ..s }).encode()]
            }
            (AttackKind::Replay, Message::Update(_)) => {
                let mut out = vec![bytes.clone()];
                // Re-send up to `copies` earlier updates (old sequence numbers).
                let earlier = self.sent_updates.iter().rev().take(self.config.copies);
                out.extend(earlier.cloned());
                self.sent_updates.push(bytes);
                if self.sent_updates.len() > 64 {
                    self.sent_updates.remove(0);
                }
                out
            }
            (AttackKind::Flood, _) => {
                let mut out = Vec::with_capacity(2 * self.config.copies + 1);
                for _ in 0..=self.config.copies {
                    out.push(bytes.clone());
                }
                for _ in 0..self.config.copies {
                    let len = self.rng.random_range(1..256);
                    let mut junk = vec![0u8; len];
                    self.rng.fill_bytes(&mut junk);
                    out.push(junk);
                }
                out
            }
            _ => vec![bytes],
        }
    }
}
