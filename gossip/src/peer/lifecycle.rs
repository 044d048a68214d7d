//! A peer's life outside its rounds: starting (waiting for every neighbour's hello, or for the
//! model a joiner adopts, bounded by the startup deadline), the hello handshake that
//! establishes a neighbour, adopting a neighbour's model when joining, and shutting down.
//! This owns the `Idle` → `Starting` → first round and `Stopped` transitions of [`Phase`] and
//! the adoption state (`adopting`, `adoption_waits`).

use std::fmt::Debug;
use std::hash::Hash;

use murmur_compress as compress;
use ndarray::Array1;

use super::timers::TimerPurpose;
use super::{CodecSpec, Micros, Output, Peer, Phase, RejectReason};
use crate::message::{AlgorithmKind, Hello, Message};

/// How often a joiner re-arms its startup deadline while the model it adopts is on its way.
pub(super) const MAX_ADOPTION_WAITS: u32 = 5;

impl<I: Clone + Ord + Debug + Hash> Peer<I> {
    /// [`Input::Start`](super::Input::Start): arm the startup deadline and begin as soon as
    /// every neighbour is established.
    pub(super) fn on_start(&mut self, now: Micros) {
        if !matches!(self.phase, Phase::Idle) {
            return;
        }
        self.phase = Phase::Starting;
        self.schedule(now + self.config.startup_timeout, TimerPurpose::Startup);
        self.try_begin(false);
    }

    /// Leaves `Starting` once every neighbour is established and no adoption is pending (or
    /// unconditionally when the startup deadline passed, `force`).
    pub(super) fn try_begin(&mut self, force: bool) {
        if !matches!(self.phase, Phase::Starting) {
            return;
        }
        if self.adopting.is_some() && !force {
            return;
        }
        let ready = !self.neighbours.is_empty()
            && self.neighbours.values().all(|nb| nb.established(self.kind));
        if ready || force {
            self.adopting = None;
            self.phase = Phase::WantsCompute;
            self.request_compute();
        }
    }

    /// A goodbye to every neighbour; the peer stops.
    pub(super) fn on_shutdown(&mut self) {
        let bytes = Message::Goodbye.encode();
        let ids: Vec<I> = self.neighbours.keys().cloned().collect();
        for j in ids {
            self.send(j, bytes.clone());
        }
        self.phase = Phase::Stopped;
    }

    /// This peer's hello frame (its dimension, model, algorithm, degree and progress).
    fn hello(&self, reply_wanted: bool) -> Vec<u8> {
        Message::Hello(Hello {
            dim: self.dim as u32,
            fingerprint: self.config.fingerprint,
            algorithm: self.kind,
            degree: self.neighbours.len() as u32,
            round: self.round,
            seq: self.seq,
            reply_wanted,
        })
        .encode()
    }

    pub(super) fn send_hello(&mut self, to: I, reply_wanted: bool) {
        let bytes = self.hello(reply_wanted);
        self.stats.hellos_sent += 1;
        self.send(to, bytes);
    }

    /// Whether this peer may still adopt a neighbour's model: it has not started a round,
    /// sent an update, stepped or been restored, and `adopt_on_join` is set.
    fn may_adopt(&self) -> bool {
        matches!(self.phase, Phase::Idle | Phase::Starting)
            && self.round == 0
            && self.seq == 0
            && self.steps_taken == 0
            && !self.restored
            && self.config.adopt_on_join
    }

    /// A neighbour's hello: checks compatibility, records its degree, establishes its copy (a
    /// zero copy, or a snapshot when its public copy is not zero), resyncs a neighbour that
    /// rewound, and starts an adoption when a peer that may still adopt meets a neighbour
    /// ahead of it.
    pub(super) fn on_hello(&mut self, now: Micros, from: &I, h: Hello) -> Result<(), RejectReason> {
        if h.dim as usize != self.dim {
            return Err(RejectReason::WrongDimension {
                expected: self.dim,
                got: h.dim as usize,
            });
        }
        if h.fingerprint != self.config.fingerprint {
            return Err(RejectReason::FingerprintMismatch {
                expected: self.config.fingerprint,
                got: h.fingerprint,
            });
        }
        if h.algorithm != self.kind {
            return Err(RejectReason::AlgorithmMismatch {
                expected: self.kind,
                got: h.algorithm,
            });
        }
        let degree = Self::check_degree(h.degree)?;
        let may_adopt = self.may_adopt();
        let kind = self.kind;
        let nb = self.neighbours.get_mut(from).expect("checked by caller");
        let first = !nb.hello_seen;
        nb.hello_seen = true;
        nb.degree = degree;
        let mut want_snapshot = false;
        let mut rewound = false;
        if kind.tracks_copies() {
            if first && nb.copy.is_none() && nb.pending_snapshot.is_none() {
                if h.seq == 0 {
                    // Its public copy is zero: nothing to fetch (and nothing to add to a sum).
                    nb.copy = Some(if self.aggregate.is_some() {
                        Vec::new()
                    } else {
                        vec![0.0; self.dim]
                    });
                    nb.applied_seq = 0;
                    nb.snapshot_floor = 0;
                } else {
                    want_snapshot = true;
                }
            } else if nb.copy.is_some() && h.seq < nb.applied_seq {
                // The sender is behind the copy we hold: it restarted without a reconnect.
                rewound = true;
            }
        }
        if rewound {
            self.resync(now, from);
        }
        let adopt = may_adopt && self.adopting.is_none() && h.round > self.round;
        if adopt {
            self.adopting = Some(from.clone());
        }
        if want_snapshot || adopt {
            self.request_snapshot(now, from, adopt);
        }
        if h.reply_wanted {
            self.send_hello(from.clone(), false);
        }
        self.settle(now, from)
    }

    /// A joining peer continues from a neighbour's model. Its public copy jumps from zero to the
    /// adopted model through one dense update (seq 1), so every neighbour's copy stays exact
    /// by the ordinary update path.
    pub(super) fn adopt(&mut self, from: I, model: Vec<f32>, round: u64) {
        self.model = Array1::from(model);
        self.round = round;
        self.stats.models_adopted += 1;
        if self.kind.tracks_copies() {
            // Compressed push-sum publishes its numerator ω x, and gives no share with it.
            let scale = if self.kind == AlgorithmKind::CompressedPushSum {
                self.push.weight
            } else {
                1.0
            };
            let diff: Vec<f32> = self
                .model
                .iter()
                .zip(&self.x_hat)
                .map(|(x, h)| (f64::from(*x) * scale) as f32 - h)
                .collect();
            let q = compress::build(&CodecSpec::DenseF32, 0).compress(&diff);
            q.add_to(&mut self.x_hat, 1.0);
            self.seq += 1;
            self.last_update_round = round;
            self.broadcast_update(q.encode(), q.nnz(), &[], 0.0);
        }
        self.out.push(Output::ModelAdopted { from, round });
    }
}
