//! Keeping what a peer holds of its neighbours' public vectors exact: validating and decoding
//! updates, applying them in sequence order (buffering those past a gap, replaying them once
//! it closes), gap checks after `gap_grace`, and the snapshot exchange that resynchronises a
//! copy (requests with their nonces and retries, serving them within the per-round quota,
//! installing the answer). The copies themselves live in the neighbour table, or in the
//! aggregate sum with aggregate storage.

use std::fmt::Debug;
use std::hash::Hash;

use compress::{Compressed, DecodeLimits};
use murmur_compress as compress;

use super::neighbours::{Buffered, PushShareOf};
use super::push_sum::mix_push_share;
use super::timers::TimerPurpose;
use super::{DecodeError, MAX_DEGREE, Micros, Peer, RejectReason, all_finite, metropolis_weight};
use crate::message::{AlgorithmKind, Message, PushUpdate, Snapshot, SnapshotRequest, Update};

impl<I: Clone + Ord + Debug + Hash> Peer<I> {
    /// A degree a neighbour reports, bounded by [`MAX_DEGREE`].
    pub(super) fn check_degree(degree: u32) -> Result<usize, RejectReason> {
        if degree > MAX_DEGREE {
            return Err(RejectReason::InvalidField { what: "degree" });
        }
        Ok(degree as usize)
    }

    /// A dense vector a neighbour sent: this peer's dimension, finite.
    pub(super) fn check_vector(&self, v: &[f32], what: &'static str) -> Result<(), RejectReason> {
        if v.len() != self.dim {
            return Err(RejectReason::WrongDimension {
                expected: self.dim,
                got: v.len(),
            });
        }
        if !all_finite(v) {
            return Err(RejectReason::NonFinite { what });
        }
        Ok(())
    }

    fn decode_frame(&self, frame: &[u8]) -> Result<Compressed, RejectReason> {
        let limits = DecodeLimits {
            expected_dim: self.dim,
            max_bytes: self.max_message_bytes,
        };
        // `decode` checks the dimension and finiteness itself; those two failures keep the
        // peer's own names (and counters) so a wrong-dimension or NaN update is counted the
        // same whether it arrives in a hello, a snapshot or a compressed frame. Every other
        // decode failure is a malformed codec payload.
        let c = Compressed::decode(frame, &limits).map_err(|e| match e {
            DecodeError::DimensionMismatch { expected, got } => RejectReason::WrongDimension {
                expected,
                got: usize::try_from(got).unwrap_or(usize::MAX),
            },
            DecodeError::NonFiniteScale(_) | DecodeError::NonFiniteValue(_) => {
                RejectReason::NonFinite { what: "update" }
            }
            other => RejectReason::Codec(other),
        })?;
        debug_assert!(c.dim() == self.dim && c.is_finite());
        Ok(c)
    }

    /// A neighbour's update (CHOCO, D-PSGD).
    pub(super) fn on_update(
        &mut self,
        now: Micros,
        from: &I,
        u: Update,
    ) -> Result<(), RejectReason> {
        if self.kind.pushes() {
            return Err(RejectReason::UnexpectedMessage { what: "update" });
        }
        self.receive_update(now, from, u, None)
    }

    /// A compressed push-sum update: its weight and share are checked, then it takes the
    /// update path and its share is mixed in when it is applied.
    pub(super) fn on_push_update(
        &mut self,
        now: Micros,
        from: &I,
        p: PushUpdate,
    ) -> Result<(), RejectReason> {
        if self.kind != AlgorithmKind::CompressedPushSum {
            return Err(RejectReason::UnexpectedMessage {
                what: "push-update",
            });
        }
        if !(p.weight.is_finite() && p.weight > 0.0 && p.weight < 1e12) {
            return Err(RejectReason::InvalidField {
                what: "push weight",
            });
        }
        if !(0.0..=1.0).contains(&p.share) {
            return Err(RejectReason::InvalidField { what: "push share" });
        }
        let share = PushShareOf {
            weight: p.weight,
            share: p.share,
        };
        self.receive_update(now, from, p.update, Some(share))
    }

    /// A neighbour's update. D-PSGD: the newest replaces the copy. CHOCO and compressed
    /// push-sum: applied in sequence order (the push share mixed in as it is); one past a gap
    /// is buffered and the gap checked, a duplicate is dropped.
    fn receive_update(
        &mut self,
        now: Micros,
        from: &I,
        u: Update,
        share: Option<PushShareOf>,
    ) -> Result<(), RejectReason> {
        if u.seq == 0 {
            return Err(RejectReason::InvalidField {
                what: "sequence number",
            });
        }
        let degree = Self::check_degree(u.degree)?;
        let frame = self.decode_frame(&u.frame)?;
        let round = self.round;
        let gamma = self.push_gamma();
        let my_degree = self.neighbours.len();
        let nb = self.neighbours.get_mut(from).expect("checked by caller");
        let ask_hello = !nb.hello_seen && nb.hello_requested_round != Some(round);
        if ask_hello {
            nb.hello_requested_round = Some(round);
        }
        if self.kind == AlgorithmKind::Dpsgd {
            // Each update replaces the copy; only the newest matters, gaps are harmless.
            if u.seq <= nb.applied_seq {
                self.stats.duplicates_dropped += 1;
            } else {
                let dense = frame.to_dense();
                if !all_finite(&dense) {
                    return Err(RejectReason::NonFinite { what: "update" });
                }
                if u.seq > nb.applied_seq + 1 && nb.applied_seq > 0 {
                    self.stats.gaps_detected += 1;
                }
                nb.copy = Some(dense);
                nb.applied_seq = u.seq;
                nb.degree = degree;
                nb.heard(u.round);
                self.stats.updates_applied += 1;
                nb.link.updates_applied += 1;
            }
        } else {
            let buffered = Buffered {
                round: u.round,
                degree: u.degree,
                frame,
                share,
            };
            let max_buffered = self.config.max_buffered_updates;
            if nb.copy.is_none() {
                nb.buffer(u.seq, buffered, max_buffered, &mut self.stats);
            } else if u.seq <= nb.applied_seq {
                // Already folded into the copy (a duplicate or a replay): drop it. No resync: a
                // sender that really rewound shows it by reconnecting or in its hello.
                if u.seq <= nb.snapshot_floor {
                    self.stats.superseded_dropped += 1;
                } else {
                    self.stats.duplicates_dropped += 1;
                }
            } else if u.seq == nb.applied_seq + 1 {
                nb.apply_update(u.seq, &buffered, self.aggregate.as_mut(), my_degree)?;
                self.stats.updates_applied += 1;
                nb.link.updates_applied += 1;
                if let (Some(share), Some(copy)) = (buffered.share, &nb.copy) {
                    mix_push_share(&mut self.model, &mut self.push.weight, copy, share, gamma);
                }
                self.drain(now, from)?;
            } else {
                self.stats.gaps_detected += 1;
                nb.buffer(u.seq, buffered, max_buffered, &mut self.stats);
                self.gap_check(now, from);
            }
        }
        if ask_hello {
            self.send_hello(from.clone(), true);
        }
        self.check_aggregate_weights(now);
        self.check_ready(now);
        Ok(())
    }

    /// A gap in `from`'s sequence numbers: the missing update may only be late (reordering),
    /// so the snapshot is requested only if the gap is still open after `gap_grace`.
    pub(super) fn gap_check(&mut self, now: Micros, from: &I) {
        if self.config.gap_grace == 0 {
            self.resync(now, from);
            return;
        }
        let Some(nb) = self.neighbours.get_mut(from) else {
            return;
        };
        if nb.gap_check_pending || nb.pending_snapshot.is_some() {
            return;
        }
        nb.gap_check_pending = true;
        self.schedule(
            now + self.config.gap_grace,
            TimerPurpose::GapCheck(from.clone()),
        );
    }

    /// Replays buffered updates that follow the copy; checks the gap if one remains.
    pub(super) fn drain(&mut self, now: Micros, from: &I) -> Result<(), RejectReason> {
        let my_degree = self.neighbours.len();
        let gamma = self.push_gamma();
        let nb = self.neighbours.get_mut(from).expect("checked by caller");
        if nb.copy.is_none() {
            return Ok(());
        }
        let mut result = Ok(());
        while let Some(entry) = nb.buffer.first_entry() {
            let seq = *entry.key();
            if seq <= nb.applied_seq {
                entry.remove();
                self.stats.superseded_dropped += 1;
            } else if seq == nb.applied_seq + 1 {
                let b = entry.remove();
                match nb.apply_update(seq, &b, self.aggregate.as_mut(), my_degree) {
                    Ok(()) => {
                        self.stats.updates_applied += 1;
                        nb.link.updates_applied += 1;
                        if let (Some(share), Some(copy)) = (b.share, &nb.copy) {
                            mix_push_share(
                                &mut self.model,
                                &mut self.push.weight,
                                copy,
                                share,
                                gamma,
                            );
                        }
                    }
                    Err(e) => {
                        result = Err(e);
                        break;
                    }
                }
            } else {
                break;
            }
        }
        if !nb.buffer.is_empty() {
            self.gap_check(now, from);
        }
        result
    }

    /// Resynchronises what this peer holds of `j`: a snapshot for a per-neighbour copy, a
    /// rebuild when j's contribution is inside the aggregate sum.
    pub(super) fn resync(&mut self, now: Micros, j: &I) {
        let in_sum = self
            .neighbours
            .get(j)
            .is_some_and(|nb| nb.weight_in_sum.is_some());
        if self.aggregate.is_some() && in_sum {
            self.rebuild_aggregate(now);
        } else {
            self.request_snapshot(now, j, false);
        }
    }

    /// Asks `j` for a snapshot (and its model, for an adoption), unless a request that covers
    /// it is outstanding; retried after `snapshot_timeout`. A neighbour reached only through a
    /// relay is never asked for its model (see `lifecycle`).
    pub(super) fn request_snapshot(&mut self, now: Micros, j: &I, want_model: bool) {
        // The donor choice never asks a relayed neighbour; this keeps every other path honest.
        let want_model = want_model && !self.relayed.contains(j);
        let Some(nb) = self.neighbours.get_mut(j) else {
            return;
        };
        if nb.pending_snapshot.is_some() && (nb.pending_wants_model || !want_model) {
            return;
        }
        let nonce = self.next_nonce;
        self.next_nonce += 1;
        nb.pending_snapshot = Some(nonce);
        nb.pending_wants_model = want_model;
        nb.incoming = None;
        self.stats.snapshot_requests_sent += 1;
        let bytes = Message::SnapshotRequest(SnapshotRequest { nonce, want_model }).encode();
        self.send(j.clone(), bytes);
        self.schedule(
            now + self.config.snapshot_timeout,
            TimerPurpose::SnapshotRetry {
                neighbour: j.clone(),
                nonce,
            },
        );
    }

    /// Serves a snapshot of x̂ (and x, if asked and allowed) within the per-round quota.
    pub(super) fn on_snapshot_request(
        &mut self,
        from: &I,
        r: SnapshotRequest,
    ) -> Result<(), RejectReason> {
        let round = self.round;
        let limit = self.config.max_snapshots_per_round;
        let nb = self.neighbours.get_mut(from).expect("checked by caller");
        if !nb.served.take(round, limit) {
            return Err(RejectReason::RateLimited);
        }
        let with_model = r.want_model && self.config.serve_model;
        let mut snapshot = Snapshot {
            nonce: r.nonce,
            seq: self.seq,
            round: if self.seq > 0 {
                self.last_update_round
            } else {
                self.round
            },
            degree: self.neighbours.len() as u32,
            x_hat: Vec::new(),
            model: None,
        };
        if self.chunked(self.dim) {
            self.serve_chunked(from, r.nonce, &snapshot, with_model);
            return Ok(());
        }
        snapshot.x_hat = self.x_hat.clone();
        snapshot.model = with_model.then(|| self.model.to_vec());
        let bytes = Message::Snapshot(snapshot).encode();
        self.stats.snapshots_sent += 1;
        self.stats.snapshot_bytes_sent += bytes.len() as u64;
        self.send(from.clone(), bytes);
        Ok(())
    }

    /// The answer to an outstanding request: installs it as the copy (or adds it to the
    /// aggregate sum, or rebuilds the sum if the old contribution is inside it), replays the
    /// buffer past it, and hands the model to an adoption waiting for it.
    pub(super) fn on_snapshot(
        &mut self,
        now: Micros,
        from: &I,
        s: Snapshot,
    ) -> Result<(), RejectReason> {
        self.check_vector(&s.x_hat, "snapshot")?;
        if let Some(m) = &s.model {
            self.check_vector(m, "snapshot model")?;
        }
        let degree = Self::check_degree(s.degree)?;
        let kind = self.kind;
        let my_degree = self.neighbours.len();
        let nb = self.neighbours.get_mut(from).expect("checked by caller");
        if nb.pending_snapshot != Some(s.nonce) {
            return Err(RejectReason::UnsolicitedSnapshot);
        }
        let asked_model = nb.pending_wants_model;
        nb.pending_snapshot = None;
        nb.pending_wants_model = false;
        nb.degree = degree;
        if asked_model && s.model.is_none() {
            nb.declined_model = true;
        }
        let newer = nb.copy.is_none() || s.seq >= nb.applied_seq;
        let mut rebuild = false;
        if newer && (kind.tracks_copies() || (kind == AlgorithmKind::Dpsgd && s.seq > 0)) {
            if let Some(aggregate) = self.aggregate.as_mut() {
                if nb.weight_in_sum.is_some() {
                    // Its old contribution cannot be taken out of the sum.
                    rebuild = true;
                } else if s.seq > 0 {
                    let w = metropolis_weight(my_degree, degree);
                    if let Err(e) = aggregate.add(w, &s.x_hat, "aggregate after snapshot") {
                        nb.pending_snapshot = Some(s.nonce);
                        return Err(e);
                    }
                    aggregate.count_in(&mut nb.weight_in_sum, w);
                }
                if !rebuild {
                    nb.copy = Some(Vec::new());
                }
            } else {
                nb.copy = Some(s.x_hat);
            }
            if !rebuild {
                nb.applied_seq = s.seq;
                nb.snapshot_floor = s.seq;
                nb.heard_round = (s.seq > 0).then_some(s.round);
                self.stats.snapshots_installed += 1;
            }
        }
        if rebuild {
            self.rebuild_aggregate(now);
        }
        if self.adopting.as_ref() == Some(from) {
            self.adopting = None;
            match s.model {
                Some(model) => self.adopt(from.clone(), model, s.round, 1),
                // It does not serve models: another candidate may.
                None => self.choose_donor(now),
            }
        }
        self.settle(now, from)
    }

    /// After a hello or a snapshot from `from` made its copy usable: replays its buffered
    /// updates (CHOCO), re-checks the aggregate's weights, and lets the start and the current
    /// round move on.
    pub(super) fn settle(&mut self, now: Micros, from: &I) -> Result<(), RejectReason> {
        if self.kind.tracks_copies() {
            self.drain(now, from)?;
        }
        self.check_aggregate_weights(now);
        self.try_begin(false);
        self.check_ready(now);
        Ok(())
    }
}
