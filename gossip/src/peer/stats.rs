//! Counters a peer keeps about its traffic, its rounds and everything it rejected: for the
//! whole peer ([`PeerStats`]), per edge ([`LinkStats`]), and the figures of the last update it
//! sent ([`UpdateFigures`]).

use serde::{Deserialize, Serialize};

use super::RejectReason;
use crate::message::MessageError;

/// Traffic and protocol counters. Byte counts are frame lengths as handed to / received from
/// the driver (transport framing excluded), so `dense_update_bytes / update_bytes_sent` is the
/// saving against sending the same updates as dense f32 vectors.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerStats {
    /// Rounds completed.
    pub rounds: u64,
    /// Local optimisation steps taken.
    pub local_steps: u64,
    /// Frames handed to the driver to send.
    pub messages_sent: u64,
    /// Bytes of those frames.
    pub bytes_sent: u64,
    /// Frames received from the driver.
    pub messages_received: u64,
    /// Bytes of those frames.
    pub bytes_received: u64,
    /// Update frames sent (one per neighbour per round; push-sum: one per share).
    pub updates_sent: u64,
    /// Bytes of update frames sent.
    pub update_bytes_sent: u64,
    /// Bytes the same updates would have taken as dense f32 frames.
    pub dense_update_bytes: u64,
    /// Entries carried by the updates sent (`Compressed::nnz`, summed over frames sent).
    pub update_entries_sent: u64,
    /// Hello frames sent.
    pub hellos_sent: u64,
    /// Snapshot requests sent (retries included).
    pub snapshot_requests_sent: u64,
    /// Snapshot requests resent after `snapshot_timeout`.
    pub snapshot_retries: u64,
    /// Snapshots sent.
    pub snapshots_sent: u64,
    /// Bytes of snapshots sent.
    pub snapshot_bytes_sent: u64,
    /// Snapshots installed as a neighbour's copy.
    pub snapshots_installed: u64,
    /// Chunks of chunked snapshots sent (their bytes are in `snapshot_bytes_sent`).
    pub snapshot_chunks_sent: u64,
    /// Chunks of chunked snapshots received and verified.
    pub snapshot_chunks_received: u64,
    /// Push-sum shares sent.
    pub push_shares_sent: u64,
    /// Updates applied to neighbour copies.
    pub updates_applied: u64,
    /// Gaps in a neighbour's sequence numbers (update ahead of the next expected).
    pub gaps_detected: u64,
    /// Updates (or push shares) received twice, or replayed: dropped without a resync (their
    /// bits are already in the copy).
    pub duplicates_dropped: u64,
    /// Updates already folded into an installed snapshot.
    pub superseded_dropped: u64,
    /// Out-of-order updates evicted because the per-neighbour buffer was full.
    pub buffer_evictions: u64,
    /// Rounds that ended by timeout with at least one neighbour missing.
    pub round_timeouts: u64,
    /// Sum over rounds of the neighbours missing when the round timed out.
    pub late_neighbours: u64,
    /// Contributions left out of an asynchronous mix for being too stale.
    pub stale_dropped: u64,
    /// Contributions damped for staleness.
    pub damped_contributions: u64,
    /// Contributions shortened by clipping.
    pub clipped_contributions: u64,
    /// Rounds whose local steps produced non-finite parameters (the steps were undone).
    pub diverged_rounds: u64,
    /// Privacy on: local updates clipped and noised (each one a release the accountant
    /// counts), over this peer object's life.
    pub private_rounds: u64,
    /// Of those, the updates longer than the clip (a share near 1 says the clip is small
    /// against the updates, near 0 that it could shrink and so need less noise).
    pub privacy_clipped: u64,
    /// DiLoCo outer steps taken (`PeerConfig::outer`; one per round with local steps).
    pub outer_steps: u64,
    /// Models adopted from a neighbour when joining.
    pub models_adopted: u64,
    /// Rebuilds of the aggregate sum (aggregate copy storage only).
    pub aggregate_rebuilds: u64,
    /// Neighbours that came up again while already known.
    pub reconnects: u64,
    /// Goodbyes received.
    pub goodbyes_received: u64,
    /// Neighbours excluded by the misbehaviour policy.
    pub misbehaving_excluded: u64,
    /// `NeighbourUp` refused for a neighbour excluded earlier.
    pub excluded_reconnects: u64,
    /// Rejected messages, by reason.
    pub rejected: RejectCounts,
}

/// What a peer counted on the edge to one current neighbour since the edge came up (a
/// neighbour that goes down and comes back starts again from zero, which a Prometheus counter
/// reads as a reset). Same byte convention as [`PeerStats`].
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LinkStats {
    /// Frames sent to it.
    pub messages_sent: u64,
    /// Bytes of those frames.
    pub bytes_sent: u64,
    /// Frames received from it.
    pub messages_received: u64,
    /// Bytes of those frames.
    pub bytes_received: u64,
    /// Update frames sent to it.
    pub updates_sent: u64,
    /// Bytes of those update frames.
    pub update_bytes_sent: u64,
    /// Entries those updates carried.
    pub update_entries_sent: u64,
    /// Bits the entropy bound H_b(p)/p + 1 allows for those entries
    /// ([`murmur_compress::entropy_bound_bits_per_entry`] of each update, times its entries).
    pub update_entropy_bits: f64,
    /// Its updates folded into its copy (or into the aggregate).
    pub updates_applied: u64,
    /// How many rounds its newest contribution lagged the round that mixed it, at the last
    /// mix that used it (0 in lock-step; async mode lets it grow to `max_staleness`).
    pub last_staleness: Option<u64>,
    /// Its contributions left out of an asynchronous mix for being too stale.
    pub stale_dropped: u64,
    /// Its contributions damped for staleness.
    pub damped_contributions: u64,
    /// Its contributions shortened by clipping.
    pub clipped_contributions: u64,
    /// Its frames rejected, by reason.
    pub rejected: RejectCounts,
}

impl LinkStats {
    /// Bits per entry of the updates sent on this edge (their whole frames over their
    /// entries); `None` before the first entry.
    pub fn bits_per_entry(&self) -> Option<f64> {
        (self.update_entries_sent > 0)
            .then(|| self.update_bytes_sent as f64 * 8.0 / self.update_entries_sent as f64)
    }

    /// The entropy bound per entry of the same updates; `None` before the first entry.
    pub fn entropy_bound_bits_per_entry(&self) -> Option<f64> {
        (self.update_entries_sent > 0)
            .then(|| self.update_entropy_bits / self.update_entries_sent as f64)
    }
}

/// The last update a peer sent, as the codec saw it: how much of x − x̂ it sent and how much
/// it left behind for later rounds (the residual error feedback keeps).
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct UpdateFigures {
    /// The round it was sent in.
    pub round: u64,
    /// Entries it carried.
    pub nnz: usize,
    /// The model's parameter count.
    pub dim: usize,
    /// ‖v‖ of the vector compressed (CHOCO: x − x̂ before the update; D-PSGD: x).
    pub input_norm: f64,
    /// ‖v − q‖: what was not sent. CHOCO: ‖x − x̂‖ after x̂ += q, the unsent residual.
    pub residual_norm: f64,
}

impl UpdateFigures {
    /// Measures q = Q(v) without densifying q: ‖v − q‖² = ‖v‖² − Σ_{i ∈ q} (2 v_i q_i − q_i²).
    pub fn measure(round: u64, v: &[f32], q: &murmur_compress::Compressed) -> UpdateFigures {
        let input_sq: f64 = v.iter().map(|x| f64::from(*x) * f64::from(*x)).sum();
        let mut removed = 0.0f64;
        q.for_each_entry(|i, qi| {
            let (vi, qi) = (f64::from(v[i]), f64::from(qi));
            removed += 2.0 * vi * qi - qi * qi;
        });
        UpdateFigures {
            round,
            nnz: q.nnz(),
            dim: v.len(),
            input_norm: input_sq.sqrt(),
            residual_norm: (input_sq - removed).max(0.0).sqrt(),
        }
    }

    /// nnz / dim: for the threshold codec, the share of entries above τ.
    pub fn density(&self) -> f64 {
        if self.dim == 0 {
            0.0
        } else {
            self.nnz as f64 / self.dim as f64
        }
    }
}

impl std::ops::AddAssign<&PeerStats> for PeerStats {
    /// Adds every counter (the exhaustive destructuring makes a new field a compile error
    /// here until it is summed too).
    fn add_assign(&mut self, other: &PeerStats) {
        let PeerStats {
            rounds,
            local_steps,
            messages_sent,
            bytes_sent,
            messages_received,
            bytes_received,
            updates_sent,
            update_bytes_sent,
            dense_update_bytes,
            update_entries_sent,
            hellos_sent,
            snapshot_requests_sent,
            snapshot_retries,
            snapshots_sent,
            snapshot_bytes_sent,
            snapshots_installed,
            snapshot_chunks_sent,
            snapshot_chunks_received,
            push_shares_sent,
            updates_applied,
            gaps_detected,
            duplicates_dropped,
            superseded_dropped,
            buffer_evictions,
            round_timeouts,
            late_neighbours,
            stale_dropped,
            damped_contributions,
            clipped_contributions,
            diverged_rounds,
            private_rounds,
            privacy_clipped,
            outer_steps,
            models_adopted,
            aggregate_rebuilds,
            reconnects,
            goodbyes_received,
            misbehaving_excluded,
            excluded_reconnects,
            rejected,
        } = other.clone();
        self.rounds += rounds;
        self.local_steps += local_steps;
        self.messages_sent += messages_sent;
        self.bytes_sent += bytes_sent;
        self.messages_received += messages_received;
        self.bytes_received += bytes_received;
        self.updates_sent += updates_sent;
        self.update_bytes_sent += update_bytes_sent;
        self.dense_update_bytes += dense_update_bytes;
        self.update_entries_sent += update_entries_sent;
        self.hellos_sent += hellos_sent;
        self.snapshot_requests_sent += snapshot_requests_sent;
        self.snapshot_retries += snapshot_retries;
        self.snapshots_sent += snapshots_sent;
        self.snapshot_bytes_sent += snapshot_bytes_sent;
        self.snapshots_installed += snapshots_installed;
        self.snapshot_chunks_sent += snapshot_chunks_sent;
        self.snapshot_chunks_received += snapshot_chunks_received;
        self.push_shares_sent += push_shares_sent;
        self.updates_applied += updates_applied;
        self.gaps_detected += gaps_detected;
        self.duplicates_dropped += duplicates_dropped;
        self.superseded_dropped += superseded_dropped;
        self.buffer_evictions += buffer_evictions;
        self.round_timeouts += round_timeouts;
        self.late_neighbours += late_neighbours;
        self.stale_dropped += stale_dropped;
        self.damped_contributions += damped_contributions;
        self.clipped_contributions += clipped_contributions;
        self.diverged_rounds += diverged_rounds;
        self.private_rounds += private_rounds;
        self.privacy_clipped += privacy_clipped;
        self.outer_steps += outer_steps;
        self.models_adopted += models_adopted;
        self.aggregate_rebuilds += aggregate_rebuilds;
        self.reconnects += reconnects;
        self.goodbyes_received += goodbyes_received;
        self.misbehaving_excluded += misbehaving_excluded;
        self.excluded_reconnects += excluded_reconnects;
        self.rejected += &rejected;
    }
}

impl std::ops::AddAssign<&RejectCounts> for RejectCounts {
    /// Adds every counter (the exhaustive destructuring makes a new field a compile error
    /// here until it is summed too).
    fn add_assign(&mut self, other: &RejectCounts) {
        let RejectCounts {
            too_large,
            empty,
            unsupported_version,
            malformed,
            trailing_bytes,
            wrong_dimension,
            non_finite,
            fingerprint_mismatch,
            algorithm_mismatch,
            codec,
            not_a_neighbour,
            unexpected_message,
            unsolicited_snapshot,
            invalid_field,
            rate_limited,
            bad_chunk,
        } = other.clone();
        self.too_large += too_large;
        self.empty += empty;
        self.unsupported_version += unsupported_version;
        self.malformed += malformed;
        self.trailing_bytes += trailing_bytes;
        self.wrong_dimension += wrong_dimension;
        self.non_finite += non_finite;
        self.fingerprint_mismatch += fingerprint_mismatch;
        self.algorithm_mismatch += algorithm_mismatch;
        self.codec += codec;
        self.not_a_neighbour += not_a_neighbour;
        self.unexpected_message += unexpected_message;
        self.unsolicited_snapshot += unsolicited_snapshot;
        self.invalid_field += invalid_field;
        self.rate_limited += rate_limited;
        self.bad_chunk += bad_chunk;
    }
}

/// One counter per [`RejectReason`] kind.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RejectCounts {
    /// Frame over the size cap.
    pub too_large: u64,
    /// Empty frame.
    pub empty: u64,
    /// Wrong protocol version.
    pub unsupported_version: u64,
    /// postcard could not parse the frame.
    pub malformed: u64,
    /// Bytes after a complete message.
    pub trailing_bytes: u64,
    /// Vector or frame of the wrong dimension.
    pub wrong_dimension: u64,
    /// NaN or infinite values (in the message, or in a copy after applying it).
    pub non_finite: u64,
    /// Model fingerprint differs.
    pub fingerprint_mismatch: u64,
    /// The sender runs another algorithm.
    pub algorithm_mismatch: u64,
    /// The compressed frame failed `murmur-compress` decoding (other than dimension and
    /// finiteness, counted above).
    pub codec: u64,
    /// The sender is not a current neighbour.
    pub not_a_neighbour: u64,
    /// A message kind this algorithm does not use.
    pub unexpected_message: u64,
    /// A snapshot nobody asked for (or answering an old request).
    pub unsolicited_snapshot: u64,
    /// A field out of range (degree, push weight).
    pub invalid_field: u64,
    /// Too many snapshot requests from one neighbour in one round (or requests of one chunk).
    pub rate_limited: u64,
    /// Snapshot chunks that did not match their announced hash.
    pub bad_chunk: u64,
}

impl RejectCounts {
    /// Each counter under its [`RejectReason::label`], in [`RejectReason::LABELS`] order.
    pub fn by_label(&self) -> [(&'static str, u64); 16] {
        let counts = [
            self.too_large,
            self.empty,
            self.unsupported_version,
            self.malformed,
            self.trailing_bytes,
            self.wrong_dimension,
            self.non_finite,
            self.fingerprint_mismatch,
            self.algorithm_mismatch,
            self.codec,
            self.not_a_neighbour,
            self.unexpected_message,
            self.unsolicited_snapshot,
            self.invalid_field,
            self.rate_limited,
            self.bad_chunk,
        ];
        std::array::from_fn(|i| (RejectReason::LABELS[i], counts[i]))
    }

    /// Total rejections.
    pub fn total(&self) -> u64 {
        self.by_label().iter().map(|(_, n)| n).sum()
    }

    /// Whether a rejection counts towards the misbehaviour policy: only frames an honest,
    /// compatible peer never sends. Stale or unsolicited snapshots, rate-limited requests and
    /// frames from non-neighbours can follow from losses and races, so they do not.
    pub fn counts_as_misbehaviour(reason: &RejectReason) -> bool {
        !matches!(
            reason,
            RejectReason::NotANeighbour
                | RejectReason::UnsolicitedSnapshot
                | RejectReason::RateLimited
        )
    }

    pub(super) fn count(&mut self, reason: &RejectReason) {
        let counter = match reason {
            RejectReason::Message(e) => match e {
                MessageError::TooLarge { .. } => &mut self.too_large,
                MessageError::Empty => &mut self.empty,
                MessageError::UnsupportedVersion { .. } => &mut self.unsupported_version,
                MessageError::Malformed(_) => &mut self.malformed,
                MessageError::TrailingBytes { .. } => &mut self.trailing_bytes,
            },
            RejectReason::WrongDimension { .. } => &mut self.wrong_dimension,
            RejectReason::NonFinite { .. } => &mut self.non_finite,
            RejectReason::FingerprintMismatch { .. } => &mut self.fingerprint_mismatch,
            RejectReason::AlgorithmMismatch { .. } => &mut self.algorithm_mismatch,
            RejectReason::Codec(_) => &mut self.codec,
            RejectReason::NotANeighbour => &mut self.not_a_neighbour,
            RejectReason::UnexpectedMessage { .. } => &mut self.unexpected_message,
            RejectReason::UnsolicitedSnapshot => &mut self.unsolicited_snapshot,
            RejectReason::InvalidField { .. } => &mut self.invalid_field,
            RejectReason::RateLimited => &mut self.rate_limited,
            RejectReason::BadChunk { .. } => &mut self.bad_chunk,
        };
        *counter += 1;
    }
}

#[cfg(test)]
mod add_tests {
    use super::*;

    /// Every numeric leaf of the JSON form set to a distinct value.
    fn filled() -> PeerStats {
        let mut doc = serde_json::to_value(PeerStats::default()).unwrap();
        let mut next = 1u64;
        fn fill(v: &mut serde_json::Value, next: &mut u64) {
            match v {
                serde_json::Value::Number(_) => {
                    *v = (*next).into();
                    *next += 1;
                }
                serde_json::Value::Object(m) => m.values_mut().for_each(|x| fill(x, next)),
                _ => {}
            }
        }
        fill(&mut doc, &mut next);
        assert!(next > 40, "PeerStats has its counters");
        serde_json::from_value(doc).unwrap()
    }

    #[test]
    fn adding_stats_sums_every_counter() {
        let a = filled();
        let mut sum = a.clone();
        sum += &a;
        let (a, sum) = (
            serde_json::to_value(a).unwrap(),
            serde_json::to_value(sum).unwrap(),
        );
        fn check(a: &serde_json::Value, s: &serde_json::Value, path: &str) {
            match (a, s) {
                (serde_json::Value::Object(m), serde_json::Value::Object(n)) => {
                    for (k, v) in m {
                        check(v, &n[k], &format!("{path}.{k}"));
                    }
                }
                _ => assert_eq!(
                    s.as_u64(),
                    a.as_u64().map(|x| 2 * x),
                    "{path} is not summed"
                ),
            }
        }
        check(&a, &sum, "stats");
        assert_eq!(
            serde_json::from_value::<PeerStats>(sum)
                .unwrap()
                .rejected
                .total(),
            2 * serde_json::from_value::<PeerStats>(a)
                .unwrap()
                .rejected
                .total()
        );
    }
}
