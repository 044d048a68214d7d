//! A peer's life outside its rounds: starting (waiting for every neighbour's hello, or for the
//! model a joiner adopts, bounded by the startup deadline), the hello handshake that
//! establishes a neighbour, adopting a neighbour's model when joining, and shutting down.
//! This owns the `Idle` → `Starting` → first round and `Stopped` transitions of [`Phase`] and
//! the adoption state (`adopting`, `adoption_waits`, and which neighbours may serve it).
//!
//! # What a joiner starts from
//! With [`JoinModel::Average`] (the default) a CHOCO joiner starts from the Metropolis-weighted
//! mean of its neighbours' public copies x̂_j, over the neighbours whose hello reported a
//! round ahead of its own and whose copy is not zero. It downloads those copies anyway (they
//! must be exact for CHOCO), from every neighbour in parallel and in chunks for a large model,
//! so the model costs no byte beyond them and no single donor is trusted or waited on. The
//! start waits until every neighbour's copy is in, bounded by the startup deadline, which is
//! re-armed for as long as chunks keep arriving, and otherwise up to [`MAX_ADOPTION_WAITS`]
//! times (four times that while a chunked download is under way) while a candidate's copy is
//! missing. The joiner continues from the newest round among the copies
//! averaged. Other algorithms keep no exact copies of models, so they (and
//! [`JoinModel::Donor`]) download one donor's model x, as follows.
//!
//! # Choosing the donor
//! A joiner downloads its model (a snapshot request with `want_model`) from a neighbour whose
//! hello reported a round ahead of its own. A neighbour the driver marked as reached only
//! through a relay ([`Input::LinkClass`](super::Input::LinkClass)) is never asked: a relay
//! carries small updates, not the largest transfer there is. Among direct candidates the one
//! furthest ahead is asked (lowest id on a tie), and a request outstanding to a direct donor is
//! kept rather than restarted elsewhere. With only relayed candidates the joiner waits, as for
//! an adoption under way (the startup deadline is re-armed at most [`MAX_ADOPTION_WAITS`]
//! times), and asks as soon as a direct candidate comes up or a relayed one becomes direct.
//! The donor going down, becoming relayed or declining (it does not serve models) sends the
//! joiner to the next candidate.

use std::fmt::Debug;
use std::hash::Hash;

use murmur_compress as compress;
use ndarray::Array1;

use super::timers::TimerPurpose;
use super::{CodecSpec, JoinModel, Micros, Output, Peer, Phase, RejectReason, metropolis_weight};
use crate::message::{AlgorithmKind, Hello, Message};

/// How often a joiner re-arms its startup deadline while the model it adopts is on its way
/// and no chunk arrived since the last time (four times as often while a chunked download is
/// under way).
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
        if self.adoption_pending() && !force {
            return;
        }
        let ready = !self.neighbours.is_empty()
            && self.neighbours.values().all(|nb| nb.established(self.kind));
        if ready || force {
            if self.averages_on_join() && self.may_adopt() {
                self.adopt_average();
            }
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
    pub(super) fn may_adopt(&self) -> bool {
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
        let kind = self.kind;
        let nb = self.neighbours.get_mut(from).expect("checked by caller");
        let first = !nb.hello_seen;
        nb.hello_seen = true;
        nb.degree = degree;
        nb.hello_round = Some(h.round);
        nb.announced_seq = nb.announced_seq.max(h.seq);
        let mut want_snapshot = false;
        let mut rewound = false;
        let mut ahead = false;
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
            } else if nb.copy.is_some() && h.seq > nb.applied_seq {
                // Updates we have not seen (a joiner announcing the public copy it adopted,
                // or a hello that overtook updates): a gap, given its grace to close.
                ahead = true;
            }
        }
        if rewound {
            self.resync(now, from);
        }
        if ahead {
            self.gap_check(now, from);
        }
        // The donor is asked first: if it is `from`, its request covers the copy too.
        self.choose_donor(now);
        if want_snapshot {
            self.request_snapshot(now, from, false);
        }
        if h.reply_wanted {
            self.send_hello(from.clone(), false);
        }
        self.settle(now, from)
    }

    /// Whether `j` could serve a joiner's model download if it were direct: its hello reported
    /// a round ahead of this peer's and it has not declined.
    fn donor_candidate(&self, j: &I) -> bool {
        self.neighbours
            .get(j)
            .is_some_and(|nb| nb.hello_round > Some(self.round) && !nb.declined_model)
    }

    /// Whether a joiner averages its neighbours' copies rather than asking a donor (see the
    /// module docs).
    pub(super) fn averages_on_join(&self) -> bool {
        self.config.join_model == JoinModel::Average && self.kind == AlgorithmKind::Choco
    }

    /// Whether the start waits for a model download: one is asked for, or the only
    /// neighbours that could serve it are relayed, or (averaging) a copy to average is still
    /// on its way (see the module docs).
    pub(super) fn adoption_pending(&self) -> bool {
        if self.averages_on_join() {
            return self.may_adopt()
                && self
                    .neighbours
                    .iter()
                    .any(|(j, nb)| nb.copy.is_none() && self.donor_candidate(j));
        }
        self.adopting.is_some()
            || (self.may_adopt() && self.relayed.iter().any(|j| self.donor_candidate(j)))
    }

    /// Whether the startup deadline should be re-armed for a pending adoption: a few times,
    /// and for as long as chunks of the downloads keep arriving.
    pub(super) fn keep_waiting_for_adoption(&mut self) -> bool {
        if !self.adoption_pending() {
            return false;
        }
        let progress = self.chunk_progress();
        let progressed = progress > self.startup_progress;
        self.startup_progress = progress;
        if progressed {
            return true;
        }
        // A download under way has its own stall detection (it restarts or its donor goes
        // down), so it is given longer than a donor that has not answered at all.
        let downloading = self.neighbours.values().any(|nb| nb.incoming.is_some());
        let limit = if downloading {
            4 * MAX_ADOPTION_WAITS
        } else {
            MAX_ADOPTION_WAITS
        };
        if self.adoption_waits < limit {
            self.adoption_waits += 1;
            return true;
        }
        false
    }

    /// [`JoinModel::Average`]: adopts the Metropolis-weighted mean of the copies of the
    /// neighbours ahead of this peer whose copy is not zero (with aggregate storage, the
    /// mean of the sum), from the newest round among them. Nothing when there is none.
    fn adopt_average(&mut self) {
        let my_degree = self.neighbours.len();
        let ahead: Vec<(&I, &super::neighbours::Neighbour)> = self
            .neighbours
            .iter()
            .filter(|(j, nb)| nb.copy.is_some() && nb.applied_seq > 0 && self.donor_candidate(j))
            .collect();
        let Some(from) = furthest_ahead(ahead.iter().copied()) else {
            return;
        };
        let round = ahead
            .iter()
            .filter_map(|(_, nb)| nb.heard_round.or(nb.hello_round))
            .max()
            .unwrap_or(self.round);
        let (model, donors) = match &self.aggregate {
            Some(sum) => {
                let donors = self
                    .neighbours
                    .values()
                    .filter(|nb| nb.weight_in_sum.is_some())
                    .count();
                match sum.mean() {
                    Some(mean) => (mean, donors),
                    None => return,
                }
            }
            None => {
                let mut acc = vec![0.0f64; self.dim];
                let mut total = 0.0f64;
                for (_, nb) in &ahead {
                    let w = metropolis_weight(my_degree, nb.degree);
                    total += w;
                    let copy = nb.copy.as_ref().expect("filtered");
                    for (a, c) in acc.iter_mut().zip(copy) {
                        *a += w * f64::from(*c);
                    }
                }
                let mean = acc.iter().map(|a| (a / total) as f32).collect();
                (mean, ahead.len())
            }
        };
        self.adopt(from, model, round, donors as u32);
    }

    /// A joiner that may still adopt asks the best direct candidate for its model, unless a
    /// request to a direct donor is outstanding (see the module docs). Without a direct
    /// candidate nothing is asked; [`Self::adoption_pending`] keeps the start waiting while a
    /// relayed one exists.
    pub(super) fn choose_donor(&mut self, now: Micros) {
        if !self.may_adopt() || self.averages_on_join() {
            return;
        }
        if let Some(j) = &self.adopting
            && !self.relayed.contains(j)
            && self
                .neighbours
                .get(j)
                .is_some_and(|nb| nb.pending_wants_model)
        {
            return;
        }
        self.adopting = None;
        let best = furthest_ahead(
            self.neighbours
                .iter()
                .filter(|(j, _)| !self.relayed.contains(j) && self.donor_candidate(j)),
        );
        if let Some(j) = best {
            self.adopting = Some(j.clone());
            self.request_snapshot(now, &j, true);
        }
    }

    /// [`Input::LinkClass`](super::Input::LinkClass): records whether `peer` is reached only
    /// through a relay and, for a joiner, moves its download off a donor that became relayed
    /// or onto a candidate that became direct.
    pub(super) fn on_link_class(&mut self, now: Micros, peer: I, relayed: bool) {
        let changed = if relayed {
            self.relayed.insert(peer.clone())
        } else {
            self.relayed.remove(&peer)
        };
        if !changed {
            return;
        }
        if relayed && self.adopting.as_ref() == Some(&peer) {
            // Its answer would cross the relay (the daemon refuses it): ask someone else. The
            // outstanding request is left to its retry, which no longer wants the model.
            self.adopting = None;
        }
        self.choose_donor(now);
        self.try_begin(false);
    }

    /// A joining peer continues from a neighbour's model. Its public copy jumps from zero to the
    /// adopted model through one dense update (seq 1), so every neighbour's copy stays exact
    /// by the ordinary update path.
    pub(super) fn adopt(&mut self, from: I, model: Vec<f32>, round: u64, donors: u32) {
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
            if self.chunked(self.dim) {
                // Too large for one frame: the hello announces the new sequence number and
                // each neighbour pulls the copy as a chunked snapshot (see `transfer`).
                let ids: Vec<I> = self.neighbours.keys().cloned().collect();
                for j in ids {
                    self.send_hello(j, false);
                }
            } else {
                self.broadcast_update(q.encode(), q.nnz(), &[], 0.0);
            }
        }
        self.out.push(Output::ModelAdopted {
            from,
            donors,
            round,
        });
    }
}

/// The neighbour whose hello reported the newest round, the lowest id on a tie (the donor, or
/// the neighbour an average is reported as coming from).
fn furthest_ahead<'a, I: Clone + Ord + 'a>(
    candidates: impl Iterator<Item = (&'a I, &'a super::neighbours::Neighbour)>,
) -> Option<I> {
    // `max_by_key` keeps the last maximum, so the id order is reversed to settle ties low.
    candidates
        .max_by_key(|(j, nb)| (nb.hello_round, std::cmp::Reverse(*j)))
        .map(|(j, _)| j.clone())
}
