//! FOR ROBUSTNESS TESTS AND DEMOS ONLY: a node that lies. With `[testing] adversary = ...`
//! (or `--adversary`) the training thread rewrites this node's outgoing gossip frames just
//! before they go to the swarm; the sans-IO peer itself stays honest, so the node keeps its
//! edges and its neighbours keep accepting it as a neighbour.
//!
//! | kind | what the neighbours receive | expected defence |
//! |---|---|---|
//! | `huge` | well-formed updates and snapshots whose values are ±`scale` | clipping (`gossip.clip_radius`) bounds the damage |
//! | `nan` | updates and snapshots carrying NaN and ±∞ | rejected (`non-finite`) |
//! | `wrong-dim` | updates and snapshots of another dimension | rejected (`wrong-dimension`) |
//! | `replay` | every update followed by re-sends of its earlier updates | replays dropped |
//! | `flood` | every frame `copies` times plus mangled copies | duplicates dropped, garbage rejected |
//!
//! The forged frames are built with the real message and codec encoders (the same idea as the
//! simulator's `sim::adversary`, which the daemon does not depend on), so they pass the
//! decoders and reach the peer's value checks.

use murmur_compress::{self as compress, CodecSpec};
use murmur_gossip::message::{Message, PushShare, Snapshot, Update};
use serde::{Deserialize, Serialize};

/// The attack.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AdversaryKind {
    /// Finite but huge values.
    Huge,
    /// NaN and infinities.
    Nan,
    /// Vectors of the wrong length.
    WrongDim,
    /// Old updates sent again.
    Replay,
    /// Many copies of each frame and mangled frames.
    Flood,
}

impl std::str::FromStr for AdversaryKind {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> anyhow::Result<Self> {
        Ok(match s {
            "huge" => AdversaryKind::Huge,
            "nan" => AdversaryKind::Nan,
            "wrong-dim" => AdversaryKind::WrongDim,
            "replay" => AdversaryKind::Replay,
            "flood" => AdversaryKind::Flood,
            other => {
                anyhow::bail!("adversary {other:?}: expected huge, nan, wrong-dim, replay or flood")
            }
        })
    }
}

/// The attacker's state: its settings and the updates it sent so far (for replays).
#[derive(Debug)]
pub struct Adversary {
    kind: AdversaryKind,
    scale: f32,
    copies: usize,
    dim: usize,
    frames: u64,
    sent_updates: Vec<Vec<u8>>,
}

/// Replays keep at most this many earlier updates.
const REPLAY_MEMORY: usize = 64;

impl Adversary {
    /// An attacker on a model of dimension `dim`: `scale` is the magnitude of `huge` values,
    /// `copies` the extra frames per real frame of `flood` and `replay`.
    pub fn new(kind: AdversaryKind, scale: f32, copies: usize, dim: usize) -> Self {
        Adversary {
            kind,
            scale,
            copies,
            dim,
            frames: 0,
            sent_updates: Vec::new(),
        }
    }

    /// Forged values of length `len`: ±scale (the sign alternating with index and frame so
    /// the forged vector does not average out over rounds), or NaN/±∞.
    fn forged(&self, len: usize) -> Vec<f32> {
        match self.kind {
            AdversaryKind::Nan => (0..len)
                .map(|i| match i % 3 {
                    0 => f32::NAN,
                    1 => f32::INFINITY,
                    _ => f32::NEG_INFINITY,
                })
                .collect(),
            _ => (0..len)
                .map(|i| {
                    let bits = (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ self.frames;
                    if bits.count_ones().is_multiple_of(2) {
                        self.scale
                    } else {
                        -self.scale
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

    /// Rewrites one outgoing frame into the frames actually sent (possibly several).
    pub fn rewrite(&mut self, bytes: Vec<u8>) -> Vec<Vec<u8>> {
        self.frames += 1;
        let Ok(message) = Message::decode(&bytes, usize::MAX) else {
            return vec![bytes];
        };
        let len = match self.kind {
            AdversaryKind::WrongDim => self.dim + 7,
            _ => self.dim,
        };
        match (self.kind, message) {
            (
                AdversaryKind::Huge | AdversaryKind::Nan | AdversaryKind::WrongDim,
                Message::Update(u),
            ) => {
                let frame = Self::dense_frame(&self.forged_or_half(len));
                vec![Message::Update(Update { frame, ..u }).encode()]
            }
            (
                AdversaryKind::Huge | AdversaryKind::Nan | AdversaryKind::WrongDim,
                Message::Snapshot(s),
            ) => {
                let x_hat = self.forged_or_half(len);
                let model = s.model.as_ref().map(|_| x_hat.clone());
                vec![Message::Snapshot(Snapshot { x_hat, model, ..s }).encode()]
            }
            (
                AdversaryKind::Huge | AdversaryKind::Nan | AdversaryKind::WrongDim,
                Message::PushShare(p),
            ) => {
                let values = self.forged_or_half(len);
                vec![Message::PushShare(PushShare { values, ..p }).encode()]
            }
            (AdversaryKind::Replay, Message::Update(_)) => {
                let mut out = vec![bytes.clone()];
                // Earlier updates again: old sequence numbers.
                out.extend(self.sent_updates.iter().rev().take(self.copies).cloned());
                self.sent_updates.push(bytes);
                if self.sent_updates.len() > REPLAY_MEMORY {
                    self.sent_updates.remove(0);
                }
                out
            }
            (AdversaryKind::Flood, _) => {
                let mut out = vec![bytes.clone(); self.copies + 1];
                // Mangled copies: truncated, and with a flipped byte in the body.
                for k in 0..self.copies {
                    let mut junk = bytes[..bytes.len() * (k + 1) / (self.copies + 2)].to_vec();
                    if let Some(b) = junk.get_mut(k % bytes.len().max(1)) {
                        *b ^= 0xA5;
                    }
                    out.push(junk);
                }
                out
            }
            _ => vec![bytes],
        }
    }

    /// `wrong-dim` sends harmless values (the length is the attack); the others forge them.
    fn forged_or_half(&self, len: usize) -> Vec<f32> {
        match self.kind {
            AdversaryKind::WrongDim => vec![0.5; len],
            _ => self.forged(len),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use murmur_compress::{Compressed, DecodeError, DecodeLimits};

    fn update(dim: usize) -> Vec<u8> {
        Message::Update(Update {
            seq: 3,
            round: 2,
            degree: 2,
            frame: Adversary::dense_frame(&vec![0.25; dim]),
        })
        .encode()
    }

    fn values_of(bytes: &[u8], dim: usize) -> Vec<f32> {
        match Message::decode(bytes, usize::MAX).unwrap() {
            Message::Update(u) => Compressed::decode(&u.frame, &DecodeLimits::for_dim(dim))
                .unwrap()
                .to_dense(),
            other => panic!("not an update: {other:?}"),
        }
    }

    #[test]
    fn forged_updates_decode_and_carry_the_attack() {
        let dim = 10;
        let mut huge = Adversary::new(AdversaryKind::Huge, 1e4, 4, dim);
        let out = huge.rewrite(update(dim));
        assert_eq!(out.len(), 1);
        let v = values_of(&out[0], dim);
        assert_eq!(v.len(), dim);
        assert!(v.iter().all(|x| x.abs() == 1e4));
        let mut nan = Adversary::new(AdversaryKind::Nan, 1e4, 4, dim);
        // A well-formed message whose frame the codec's own check refuses.
        let forged = nan.rewrite(update(dim));
        let Message::Update(u) = Message::decode(&forged[0], usize::MAX).unwrap() else {
            panic!("not an update")
        };
        let err = Compressed::decode(&u.frame, &DecodeLimits::for_dim(dim)).unwrap_err();
        assert!(matches!(err, DecodeError::NonFiniteValue(_)), "{err:?}");
        let mut wrong = Adversary::new(AdversaryKind::WrongDim, 1e4, 4, dim);
        assert_eq!(
            values_of(&wrong.rewrite(update(dim))[0], dim + 7).len(),
            dim + 7
        );
    }

    #[test]
    fn replay_resends_earlier_updates_and_flood_multiplies_frames() {
        let dim = 4;
        let mut replay = Adversary::new(AdversaryKind::Replay, 1e4, 2, dim);
        let first = update(dim);
        assert_eq!(replay.rewrite(first.clone()), vec![first.clone()]);
        let second = replay.rewrite(update(dim + 1));
        assert_eq!(second.len(), 2);
        assert_eq!(second[1], first);
        let mut flood = Adversary::new(AdversaryKind::Flood, 1e4, 3, dim);
        let out = flood.rewrite(first.clone());
        assert_eq!(out.len(), 7);
        assert_eq!(out.iter().filter(|f| **f == first).count(), 4);
        assert!(
            out[4..]
                .iter()
                .all(|f| Message::decode(f, usize::MAX).is_err())
        );
    }

    #[test]
    fn unknown_kind_is_a_named_error() {
        assert!("wrong-dim".parse::<AdversaryKind>().is_ok());
        let err = "evil".parse::<AdversaryKind>().unwrap_err();
        assert!(err.to_string().contains("evil"), "{err}");
    }
}
