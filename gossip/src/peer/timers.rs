//! Timers: the tokens handed to the driver in [`Output::ScheduleTimer`] and what each pending
//! one is for. A timer about one neighbour carries that neighbour in its purpose, so a due
//! token alone says what to do. The driver never cancels a timer: a stale one finds the state
//! it was armed for gone and does nothing.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::hash::Hash;

use super::{Micros, Output, Peer, Phase};

/// Opaque timer id: returned to the peer as [`Input::Timer`](super::Input::Timer) when the
/// timer is due.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
pub struct TimerToken(pub u64);

/// What a pending timer is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum TimerPurpose<I> {
    /// The startup deadline: begin without the neighbours still missing (a joiner waiting for
    /// the model it adopts re-arms it a few times first).
    Startup,
    /// The wait bound of round `.0` (round-tagged mode).
    RoundDeadline(u64),
    /// Resend the snapshot request `nonce` to `neighbour` if it is still unanswered.
    SnapshotRetry {
        /// The neighbour asked.
        neighbour: I,
        /// The request's nonce.
        nonce: u64,
    },
    /// Request a snapshot from this neighbour if the gap in its sequence numbers is still open.
    GapCheck(I),
}

/// The pending timers of one peer.
#[derive(Debug)]
pub(super) struct Timers<I> {
    /// Timers scheduled and not yet due, by token.
    pending: BTreeMap<u64, TimerPurpose<I>>,
    /// The next token to hand out (tokens are never reused).
    next: u64,
}

impl<I> Timers<I> {
    pub(super) fn new() -> Self {
        Timers {
            pending: BTreeMap::new(),
            next: 0,
        }
    }

    /// Records a timer for `purpose` and returns its token.
    fn arm(&mut self, purpose: TimerPurpose<I>) -> TimerToken {
        let token = self.next;
        self.next += 1;
        self.pending.insert(token, purpose);
        TimerToken(token)
    }

    /// The purpose of a due timer, once (a token seen again is ignored).
    fn take(&mut self, token: TimerToken) -> Option<TimerPurpose<I>> {
        self.pending.remove(&token.0)
    }
}

impl<I: Clone + Ord + Debug + Hash> Peer<I> {
    /// Asks the driver to call back at `at` for `purpose`.
    pub(super) fn schedule(&mut self, at: Micros, purpose: TimerPurpose<I>) {
        let token = self.timers.arm(purpose);
        self.out.push(Output::ScheduleTimer { at, token });
    }

    pub(super) fn on_timer(&mut self, now: Micros, token: TimerToken) {
        let Some(purpose) = self.timers.take(token) else {
            return;
        };
        match purpose {
            TimerPurpose::Startup => {
                if !matches!(self.phase, Phase::Starting) {
                    return;
                }
                if self.keep_waiting_for_adoption() {
                    self.schedule(now + self.config.startup_timeout, TimerPurpose::Startup);
                } else {
                    self.try_begin(true);
                }
            }
            TimerPurpose::RoundDeadline(round) => {
                if let Phase::Mixing {
                    round: r, waiting, ..
                } = &self.phase
                    && *r == round
                {
                    self.stats.round_timeouts += 1;
                    self.stats.late_neighbours += waiting.len() as u64;
                    self.finish_mixing(now);
                }
            }
            TimerPurpose::GapCheck(j) => {
                let Some(nb) = self.neighbours.get_mut(&j) else {
                    return;
                };
                nb.gap_check_pending = false;
                if nb.gap_open() {
                    self.resync(now, &j);
                }
            }
            TimerPurpose::SnapshotRetry {
                neighbour: j,
                nonce,
            } => {
                let Some(nb) = self.neighbours.get_mut(&j) else {
                    return;
                };
                if nb.pending_snapshot != Some(nonce) {
                    return;
                }
                if nb.incoming.is_some() && !self.retry_chunks(now, &j, nonce) {
                    // A chunked answer is on its way (or its lost chunks were asked again).
                    return;
                }
                let Some(nb) = self.neighbours.get_mut(&j) else {
                    return;
                };
                // The model only while this neighbour is still the donor (a joiner that moved
                // on, or began, needs just the copy).
                let want_model = nb.pending_wants_model && self.adopting.as_ref() == Some(&j);
                nb.pending_snapshot = None;
                self.stats.snapshot_retries += 1;
                self.request_snapshot(now, &j, want_model);
            }
        }
    }
}
