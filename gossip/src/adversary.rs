//! FOR ROBUSTNESS TESTS, EXPERIMENTS AND DEMOS ONLY (feature `testing`): a peer that lies.
//! An honest [`crate::peer::Peer`] runs the protocol, so its neighbours accept it as a
//! neighbour, and its driver passes every outgoing frame through [`Adversary::rewrite`] just
//! before it leaves. The simulator and the daemon use this one rewriter, so a robustness
//! figure from the simulator predicts the daemon.
//!
//! | kind | what the neighbours receive | expected defence |
//! |---|---|---|
//! | `huge` | well-formed updates, push shares and snapshots whose values are ±`scale` | clipping (`clip_radius`) bounds the damage |
//! | `non-finite` (or `nan`) | the same carrying NaN and ±∞ | rejected (`non-finite`) |
//! | `wrong-dim` | the same of another dimension | rejected (`wrong-dimension`) |
//! | `replay` | every update followed by re-sends of its earlier updates | replays dropped |
//! | `flood` | every frame `copies` times plus mangled (truncated, bit-flipped) copies | duplicates dropped, garbage rejected |
//!
//! Forged frames are built with the real message and codec encoders, so they pass the decoders
//! and reach the peer's value checks. The rewriter is deterministic (no generator): the same
//! frames in give the same frames out, which keeps a simulation reproducible bit for bit.

use murmur_compress::{self as compress, CodecSpec};
use serde::{Deserialize, Serialize};

use crate::message::{Message, PushShare, PushUpdate, Snapshot, Update};

/// The attack.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AttackKind {
    /// Finite but huge values.
    Huge,
    /// NaN and infinities.
    #[serde(alias = "nan")]
    NonFinite,
    /// Vectors of the wrong length.
    WrongDim,
    /// Old updates sent again.
    Replay,
    /// Many copies of each frame and mangled frames.
    Flood,
}

/// An attack name that is none of [`AttackKind`]'s.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[error("adversary {0:?}: expected huge, non-finite (or nan), wrong-dim, replay or flood")]
pub struct UnknownAttack(pub String);

impl std::str::FromStr for AttackKind {
    type Err = UnknownAttack;

    fn from_str(s: &str) -> Result<Self, UnknownAttack> {
        Ok(match s {
            "huge" => AttackKind::Huge,
            "non-finite" | "nan" => AttackKind::NonFinite,
            "wrong-dim" => AttackKind::WrongDim,
            "replay" => AttackKind::Replay,
            "flood" => AttackKind::Flood,
            other => return Err(UnknownAttack(other.to_string())),
        })
    }
}

/// Replays keep at most this many earlier updates.
const REPLAY_MEMORY: usize = 64;

/// Extra entries a `wrong-dim` vector has.
const WRONG_DIM_EXTRA: usize = 7;

/// One attacker: its settings and the updates it sent so far (for replays).
#[derive(Debug)]
pub struct Adversary {
    /// The attack.
    kind: AttackKind,
    /// Magnitude of `huge` values.
    scale: f32,
    /// `flood`: extra copies (and as many mangled frames) per real frame; `replay`: earlier
    /// updates re-sent after each new one.
    copies: usize,
    /// The honest model's dimension.
    dim: usize,
    /// Frames rewritten so far (varies the forged signs from frame to frame).
    frames: u64,
    /// The latest updates sent, oldest first, at most [`REPLAY_MEMORY`].
    sent_updates: Vec<Vec<u8>>,
}

impl Adversary {
    /// An attacker on a model of dimension `dim`: `scale` is the magnitude of `huge` values,
    /// `copies` the extra frames per real frame of `flood` and `replay`.
    pub fn new(kind: AttackKind, scale: f32, copies: usize, dim: usize) -> Self {
        Adversary {
            kind,
            scale,
            copies,
            dim,
            frames: 0,
            sent_updates: Vec::new(),
        }
    }

    /// The attack.
    pub fn kind(&self) -> AttackKind {
        self.kind
    }

    /// The values a forged vector carries: ±scale (the sign a hash of index and frame, so the
    /// forgery does not average out over rounds), NaN/±∞, or harmless 0.5 of the wrong length.
    fn forged(&self) -> Vec<f32> {
        match self.kind {
            AttackKind::NonFinite => (0..self.dim)
                .map(|i| match i % 3 {
                    0 => f32::NAN,
                    1 => f32::INFINITY,
                    _ => f32::NEG_INFINITY,
                })
                .collect(),
            AttackKind::WrongDim => vec![0.5; self.dim + WRONG_DIM_EXTRA],
            _ => (0..self.dim)
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

    /// A codec frame carrying the forged values densely.
    fn forged_frame(&self) -> Vec<u8> {
        compress::build(&CodecSpec::DenseF32, 0)
            .compress(&self.forged())
            .encode()
    }

    /// Rewrites one outgoing frame into the frames actually sent (possibly several).
    pub fn rewrite(&mut self, bytes: Vec<u8>) -> Vec<Vec<u8>> {
        self.frames += 1;
        let Ok(message) = Message::decode(&bytes, usize::MAX) else {
            return vec![bytes];
        };
        let forges = matches!(
            self.kind,
            AttackKind::Huge | AttackKind::NonFinite | AttackKind::WrongDim
        );
        match message {
            Message::Update(u) if forges => {
                let frame = self.forged_frame();
                vec![Message::Update(Update { frame, ..u }).encode()]
            }
            Message::PushUpdate(p) if forges => {
                let frame = self.forged_frame();
                let update = Update { frame, ..p.update };
                vec![Message::PushUpdate(PushUpdate { update, ..p }).encode()]
            }
            Message::Snapshot(s) if forges => {
                let x_hat = self.forged();
                let model = s.model.as_ref().map(|_| x_hat.clone());
                vec![Message::Snapshot(Snapshot { x_hat, model, ..s }).encode()]
            }
            Message::PushShare(p) if forges => {
                let values = self.forged();
                vec![Message::PushShare(PushShare { values, ..p }).encode()]
            }
            Message::Update(_) | Message::PushUpdate(_) if self.kind == AttackKind::Replay => {
                let mut out = vec![bytes.clone()];
                // Earlier updates again: old sequence numbers.
                out.extend(self.sent_updates.iter().rev().take(self.copies).cloned());
                self.sent_updates.push(bytes);
                if self.sent_updates.len() > REPLAY_MEMORY {
                    self.sent_updates.remove(0);
                }
                out
            }
            _ if self.kind == AttackKind::Flood => {
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use murmur_compress::{Compressed, DecodeError, DecodeLimits};

    fn dense(values: &[f32]) -> Vec<u8> {
        compress::build(&CodecSpec::DenseF32, 0)
            .compress(values)
            .encode()
    }

    fn update(dim: usize) -> Update {
        Update {
            seq: 3,
            round: 2,
            degree: 2,
            frame: dense(&vec![0.25; dim]),
        }
    }

    fn frame_of(bytes: &[u8]) -> Vec<u8> {
        match Message::decode(bytes, usize::MAX).unwrap() {
            Message::Update(u) => u.frame,
            Message::PushUpdate(p) => p.update.frame,
            other => panic!("not an update: {other:?}"),
        }
    }

    fn values_of(bytes: &[u8], dim: usize) -> Vec<f32> {
        Compressed::decode(&frame_of(bytes), &DecodeLimits::for_dim(dim))
            .unwrap()
            .to_dense()
    }

    #[test]
    fn forged_updates_and_push_updates_decode_and_carry_the_attack() {
        let dim = 10;
        let plain = Message::Update(update(dim)).encode();
        let push = Message::PushUpdate(PushUpdate {
            update: update(dim),
            weight: 0.5,
            share: 0.5,
        })
        .encode();
        for bytes in [plain, push] {
            let mut huge = Adversary::new(AttackKind::Huge, 1e4, 4, dim);
            let out = huge.rewrite(bytes.clone());
            assert_eq!(out.len(), 1);
            let v = values_of(&out[0], dim);
            assert_eq!(v.len(), dim);
            assert!(v.iter().all(|x| x.abs() == 1e4));
            assert!(v.contains(&1e4) && v.contains(&-1e4));
            // A well-formed message whose frame the codec's own check refuses.
            let mut nan = Adversary::new(AttackKind::NonFinite, 1e4, 4, dim);
            let forged = nan.rewrite(bytes.clone());
            let err =
                Compressed::decode(&frame_of(&forged[0]), &DecodeLimits::for_dim(dim)).unwrap_err();
            assert!(matches!(err, DecodeError::NonFiniteValue(_)), "{err:?}");
            let mut wrong = Adversary::new(AttackKind::WrongDim, 1e4, 4, dim);
            let out = wrong.rewrite(bytes);
            assert_eq!(values_of(&out[0], dim + WRONG_DIM_EXTRA).len(), dim + 7);
        }
    }

    #[test]
    fn forged_snapshots_and_shares_carry_the_attack() {
        let dim = 6;
        let snapshot = Message::Snapshot(Snapshot {
            nonce: 1,
            seq: 2,
            round: 3,
            degree: 2,
            x_hat: vec![0.0; dim],
            model: Some(vec![0.0; dim]),
        })
        .encode();
        let mut wrong = Adversary::new(AttackKind::WrongDim, 1e4, 4, dim);
        match Message::decode(&wrong.rewrite(snapshot)[0], usize::MAX).unwrap() {
            Message::Snapshot(s) => {
                assert_eq!(s.x_hat.len(), dim + WRONG_DIM_EXTRA);
                assert_eq!(s.model.unwrap().len(), dim + WRONG_DIM_EXTRA);
            }
            other => panic!("{other:?}"),
        }
        let share = Message::PushShare(PushShare {
            round: 1,
            weight: 0.5,
            values: vec![0.0; dim],
        })
        .encode();
        let mut nan = Adversary::new(AttackKind::NonFinite, 1e4, 4, dim);
        match Message::decode(&nan.rewrite(share)[0], usize::MAX).unwrap() {
            Message::PushShare(p) => assert!(p.values.iter().all(|v| !v.is_finite())),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn replay_resends_earlier_updates_and_flood_multiplies_frames() {
        let dim = 4;
        let mut replay = Adversary::new(AttackKind::Replay, 1e4, 2, dim);
        let first = Message::Update(update(dim)).encode();
        assert_eq!(replay.rewrite(first.clone()), vec![first.clone()]);
        let second = replay.rewrite(Message::Update(update(dim + 1)).encode());
        assert_eq!(second.len(), 2);
        assert_eq!(second[1], first);
        let mut flood = Adversary::new(AttackKind::Flood, 1e4, 3, dim);
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
    fn the_same_frames_give_the_same_forgeries() {
        let dim = 8;
        let frames: Vec<Vec<u8>> = (0..5)
            .map(|_| Message::Update(update(dim)).encode())
            .collect();
        let run = || {
            let mut a = Adversary::new(AttackKind::Huge, 3.0, 2, dim);
            frames
                .iter()
                .flat_map(|f| a.rewrite(f.clone()))
                .collect::<Vec<_>>()
        };
        assert_eq!(run(), run());
    }

    #[test]
    fn attack_names_parse_and_an_unknown_one_is_a_named_error() {
        assert_eq!("nan".parse::<AttackKind>(), Ok(AttackKind::NonFinite));
        assert_eq!(
            "non-finite".parse::<AttackKind>(),
            Ok(AttackKind::NonFinite)
        );
        assert_eq!("wrong-dim".parse::<AttackKind>(), Ok(AttackKind::WrongDim));
        let err = "evil".parse::<AttackKind>().unwrap_err();
        assert!(err.to_string().contains("evil"), "{err}");
    }
}
