//! The neighbour table: what a peer keeps about each neighbour ([`Neighbour`]: handshake,
//! degree, the copy of its public vector and the sequence numbers folded into it, updates
//! buffered while a gap is repaired, the outstanding snapshot request, the quota of snapshots
//! served to it, the push-sum rounds heard from it, its misbehaviour record), edges coming up
//! and going down, and the misbehaviour policy that excludes a neighbour for good.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt::Debug;
use std::hash::Hash;

use compress::Compressed;
use murmur_compress as compress;

use super::aggregate::Aggregate;
use super::transfer::{Incoming, Outgoing};
use super::{
    LinkStats, Micros, Output, Peer, PeerStats, Phase, RejectCounts, RejectReason, all_finite,
    metropolis_weight,
};
use crate::message::{AlgorithmKind, Message};

/// Push-share rounds remembered per neighbour to drop duplicate shares.
const PUSH_ROUNDS_KEPT: usize = 64;

/// A decoded CHOCO update waiting for the updates before it (a gap is being repaired).
#[derive(Debug)]
pub(super) struct Buffered {
    /// Its round tag.
    pub(super) round: u64,
    /// The degree its sender reported with it.
    pub(super) degree: u32,
    /// The compressed difference q_j.
    pub(super) frame: Compressed,
    /// Compressed push-sum: the weight and share that came with it.
    pub(super) share: Option<PushShareOf>,
}

/// What a compressed push-sum update carries besides q: the sender's weight ω_j and this
/// peer's share a_ij of it (0 when it was not a target), applied on arrival.
#[derive(Clone, Copy, Debug)]
pub(super) struct PushShareOf {
    /// ω_j when it sent.
    pub(super) weight: f64,
    /// a_ij in [0, 1].
    pub(super) share: f64,
}

/// How many snapshot requests of one neighbour were served in one round (the rate limit of
/// `PeerConfig::max_snapshots_per_round`).
#[derive(Debug, Default)]
pub(super) struct SnapshotQuota {
    /// The round (of this peer) the count is for.
    round: u64,
    /// Snapshots served to the neighbour in that round.
    served: u32,
}

impl SnapshotQuota {
    /// Counts one more snapshot served in `round`; false, counting nothing, when `limit` were
    /// already served in it.
    pub(super) fn take(&mut self, round: u64, limit: u32) -> bool {
        if self.round == round {
            if self.served >= limit {
                return false;
            }
            self.served += 1;
        } else {
            *self = SnapshotQuota { round, served: 1 };
        }
        true
    }
}

/// Everything a peer knows of one current neighbour j.
#[derive(Debug, Default)]
pub(super) struct Neighbour {
    /// Its hello arrived: its degree is known and it runs a compatible model and algorithm.
    pub(super) hello_seen: bool,
    /// The degree it last reported (hello, update or snapshot), for w_ij.
    pub(super) degree: usize,
    /// The copy of its public vector (x̂_j for CHOCO, x_j for D-PSGD), once established. With
    /// aggregate storage an empty vector: x̂_j lives inside the sum.
    pub(super) copy: Option<Vec<f32>>,
    /// Sequence number of the last update folded into the copy.
    pub(super) applied_seq: u64,
    /// Sequence number of the last snapshot installed: older updates were superseded by it.
    pub(super) snapshot_floor: u64,
    /// Newest round tag heard from it (update, push share or marker): what a round waits for.
    pub(super) heard_round: Option<u64>,
    /// Updates past a gap, by sequence number, replayed once the gap closes.
    pub(super) buffer: BTreeMap<u64, Buffered>,
    /// Nonce of the outstanding snapshot request to it.
    pub(super) pending_snapshot: Option<u64>,
    /// Whether that request asked for its model too (a joiner adopting it).
    pub(super) pending_wants_model: bool,
    /// The round its last hello reported: a joiner downloads its model from a neighbour
    /// ahead of it.
    pub(super) hello_round: Option<u64>,
    /// It answered a request for its model without one (it does not serve models), so a
    /// joiner does not ask it again.
    pub(super) declined_model: bool,
    /// Snapshots served to it this round.
    pub(super) served: SnapshotQuota,
    /// The round in which a hello was last asked of it (an update came before its hello), so
    /// that is asked once per round.
    pub(super) hello_requested_round: Option<u64>,
    /// A gap check timer is armed for it.
    pub(super) gap_check_pending: bool,
    /// Aggregate storage: the weight its x̂_j entered the sum with.
    pub(super) weight_in_sum: Option<f64>,
    /// Push-sum: the latest rounds whose share arrived from it (duplicates are dropped).
    pub(super) push_rounds: BTreeSet<u64>,
    /// Rounds (of this peer) in which frames from it were rejected, oldest first, within the
    /// misbehaviour window.
    pub(super) rejections: VecDeque<u64>,
    /// What was counted on this edge since it came up.
    pub(super) link: LinkStats,
    /// The highest sequence number its hellos reported: an update it sent that has not
    /// arrived (a joiner announces its adopted public copy this way instead of in a frame
    /// larger than a chunk).
    pub(super) announced_seq: u64,
    /// The chunked snapshot being downloaded from it (answering `pending_snapshot`).
    pub(super) incoming: Option<Incoming>,
    /// The version frozen for its chunked snapshot download from this peer.
    pub(super) outgoing: Option<Outgoing>,
}

impl Neighbour {
    /// Whether this neighbour is ready for the first round: CHOCO and compressed push-sum need
    /// its copy, the others only its hello.
    pub(super) fn established(&self, kind: AlgorithmKind) -> bool {
        if kind.tracks_copies() {
            self.copy.is_some()
        } else {
            self.hello_seen
        }
    }

    /// Something tagged with `round` arrived from it.
    pub(super) fn heard(&mut self, round: u64) {
        self.heard_round = Some(self.heard_round.map_or(round, |r| r.max(round)));
    }

    /// Keeps an update that cannot be applied yet, evicting the oldest beyond `max`.
    pub(super) fn buffer(&mut self, seq: u64, b: Buffered, max: usize, stats: &mut PeerStats) {
        self.buffer.insert(seq, b);
        while self.buffer.len() > max {
            self.buffer.pop_first();
            stats.buffer_evictions += 1;
        }
    }

    /// Whether updates are buffered behind a missing one.
    pub(super) fn gap_open(&self) -> bool {
        let next = self.applied_seq + 1;
        self.copy.is_some()
            && match self.buffer.first_key_value() {
                Some((seq, _)) => *seq > next,
                None => self.announced_seq >= next,
            }
    }

    /// Applies one in-order CHOCO update to the copy or, with aggregate storage, adds w_ij q_j
    /// to the sum (`my_degree` gives w_ij the first time). A result that overflows to a
    /// non-finite value is refused and leaves the state untouched.
    pub(super) fn apply_update(
        &mut self,
        seq: u64,
        b: &Buffered,
        aggregate: Option<&mut Aggregate>,
        my_degree: usize,
    ) -> Result<(), RejectReason> {
        let copy = self
            .copy
            .as_mut()
            .expect("applied only to established copies");
        match aggregate {
            None if 4 * b.frame.nnz() >= copy.len() => {
                // Dense enough that an undo log would outweigh a copy of the vector.
                let mut next = copy.clone();
                b.frame.add_to(&mut next, 1.0);
                if !all_finite(&next) {
                    return Err(RejectReason::NonFinite {
                        what: "neighbour copy after update",
                    });
                }
                *copy = next;
            }
            None => {
                // In place, touching only the update's entries (a 1%-dense update costs 1% of
                // the copy), with an undo log so that an update that would overflow leaves
                // the copy exactly as it was.
                let mut undo: Vec<(usize, f32)> = Vec::with_capacity(b.frame.nnz());
                let mut overflow = false;
                b.frame.for_each_entry(|i, v| {
                    undo.push((i, copy[i]));
                    copy[i] += v;
                    overflow |= !copy[i].is_finite();
                });
                if overflow {
                    for (i, old) in undo.into_iter().rev() {
                        copy[i] = old;
                    }
                    return Err(RejectReason::NonFinite {
                        what: "neighbour copy after update",
                    });
                }
            }
            Some(sum) => {
                let w = self
                    .weight_in_sum
                    .unwrap_or_else(|| metropolis_weight(my_degree, b.degree as usize));
                sum.add_update(w, &b.frame, "aggregate after update")?;
                sum.count_in(&mut self.weight_in_sum, w);
            }
        }
        self.applied_seq = seq;
        self.degree = b.degree as usize;
        self.heard(b.round);
        Ok(())
    }

    /// Push-sum: whether a share of `round` is new from it (then it is remembered).
    pub(super) fn first_share_of(&mut self, round: u64) -> bool {
        if !self.push_rounds.insert(round) {
            return false;
        }
        while self.push_rounds.len() > PUSH_ROUNDS_KEPT {
            self.push_rounds.pop_first();
        }
        true
    }

    /// Records a rejected frame in `round` and forgets those older than `window` rounds;
    /// returns how many remain.
    fn note_rejection(&mut self, round: u64, window: u64) -> usize {
        self.rejections.push_back(round);
        while self
            .rejections
            .front()
            .is_some_and(|r| r.saturating_add(window) <= round)
        {
            self.rejections.pop_front();
        }
        self.rejections.len()
    }
}

impl<I: Clone + Ord + Debug + Hash> Peer<I> {
    pub(super) fn on_up(&mut self, now: Micros, j: I) {
        if j == self.id {
            return;
        }
        if self.excluded.contains(&j) {
            self.stats.excluded_reconnects += 1;
            return;
        }
        if self.neighbours.contains_key(&j) {
            self.stats.reconnects += 1;
        }
        let old = self.neighbours.insert(j.clone(), Neighbour::default());
        if let Phase::Mixing { waiting, .. } = &mut self.phase {
            // A new edge is not waited for in the round already under way.
            waiting.remove(&j);
        }
        self.send_hello(j, true);
        if old.is_some_and(|nb| nb.weight_in_sum.is_some()) {
            self.rebuild_aggregate(now);
        } else {
            self.check_aggregate_weights(now);
        }
    }

    pub(super) fn on_down(&mut self, now: Micros, j: I) {
        let Some(old) = self.neighbours.remove(&j) else {
            return;
        };
        if old.weight_in_sum.is_some() {
            // Its contribution cannot be subtracted exactly: rebuild from the others.
            self.rebuild_aggregate(now);
        } else {
            self.check_aggregate_weights(now);
        }
        if self.adopting.as_ref() == Some(&j) {
            // Another neighbour ahead of the joiner may serve the download instead.
            self.adopting = None;
            self.choose_donor(now);
        }
        self.try_begin(false);
        self.check_ready(now);
    }

    pub(super) fn reject(&mut self, now: Micros, from: I, reason: RejectReason) {
        self.stats.rejected.count(&reason);
        if let Some(nb) = self.neighbours.get_mut(&from) {
            nb.link.rejected.count(&reason);
        }
        let counts = RejectCounts::counts_as_misbehaviour(&reason);
        self.out.push(Output::Rejected {
            from: from.clone(),
            reason,
        });
        if counts {
            self.note_misbehaviour(now, from);
        }
    }

    /// Counts one rejected frame against `from` and excludes it once the policy's threshold is
    /// reached within the window.
    fn note_misbehaviour(&mut self, now: Micros, from: I) {
        let threshold = self.config.misbehaviour_threshold as usize;
        if threshold == 0 {
            return;
        }
        let window = self.config.misbehaviour_window;
        let round = self.round;
        let Some(nb) = self.neighbours.get_mut(&from) else {
            return;
        };
        let recent = nb.note_rejection(round, window);
        if recent < threshold {
            return;
        }
        let rejected = recent as u64;
        self.excluded.insert(from.clone());
        self.stats.misbehaving_excluded += 1;
        // A goodbye makes a merely broken (not hostile) sender stop waiting for us as well.
        self.send(from.clone(), Message::Goodbye.encode());
        self.on_down(now, from.clone());
        self.out.push(Output::Misbehaving {
            peer: from,
            rejected,
        });
    }
}
