//! What crosses the boundary between a peer and its driver: the [`Input`]s it is fed, the
//! [`Output`]s it returns, why a frame is rejected ([`RejectReason`]), and the read-only views
//! of its state ([`PeerPhase`], [`NeighbourInfo`]). These types own no state of the peer.

use super::{DecodeError, Micros, TimerToken};
use crate::message::{AlgorithmKind, MessageError};

/// What the driver tells the peer.
#[derive(Clone, Debug, PartialEq)]
pub enum Input<I> {
    /// Begin: the peer waits for its neighbours' hellos (and, if joining, the model it adopts),
    /// then asks for compute.
    Start,
    /// A compute slot is available: the peer runs its round's local steps now and sends its
    /// update. Only meaningful after [`Output::WantCompute`]; ignored otherwise. Pass as `now`
    /// the time at which the compute finished.
    ComputeGranted,
    /// A frame arrived from `from`.
    Message {
        /// Sender.
        from: I,
        /// The frame, exactly as sent.
        bytes: Vec<u8>,
    },
    /// An edge to this peer is usable (both ends agreed on it). Also on reconnect.
    NeighbourUp(I),
    /// The edge is gone (disconnect, crash, topology change).
    NeighbourDown(I),
    /// A timer from [`Output::ScheduleTimer`] is due.
    Timer(TimerToken),
    /// Push-sum only: the out-neighbours to push to from the next round on (directed or
    /// time-varying graphs). Targets that are not current neighbours are skipped.
    PushTargets(Vec<I>),
    /// Leave cleanly: a goodbye goes to every neighbour and the peer stops.
    Shutdown,
    /// How `peer` is reached: `relayed` when every connection to it goes through a relay
    /// (which carries small updates for free, not a model download), `false` once a direct
    /// one exists (a hole punch). Only a joiner's choice of the neighbour it downloads its
    /// model from depends on it: a relayed neighbour is never asked for its model, a direct
    /// one that reported a newer round is preferred, and with only relayed ones the joiner
    /// waits (within its startup deadline) for a direct neighbour or for the path to become
    /// direct. Everything else, snapshots that resynchronise a copy included, goes to relayed
    /// neighbours as to direct ones.
    ///
    /// Every peer counts as direct until told otherwise, so a driver without relays never
    /// sends this. The class is a property of the connection, not of the edge: it may be sent
    /// before [`Input::NeighbourUp`], holds across [`Input::NeighbourDown`] and reconnects,
    /// and is kept until the driver changes it (send `relayed: false` when the relayed
    /// connections are gone, so the peer forgets the id).
    LinkClass {
        /// The peer whose path is known or changed.
        peer: I,
        /// Reached only through a relay.
        relayed: bool,
    },
}

/// What the peer asks of the driver.
#[derive(Clone, Debug, PartialEq)]
pub enum Output<I> {
    /// Send `bytes` to `to` (best effort; losses are repaired by the protocol).
    Send {
        /// Receiver.
        to: I,
        /// A [`Message`](crate::message::Message) frame.
        bytes: Vec<u8>,
    },
    /// Call `handle(at, Input::Timer(token))` at time `at` (later is fine, never earlier).
    ScheduleTimer {
        /// Due time.
        at: Micros,
        /// Token to return.
        token: TimerToken,
    },
    /// The peer wants to run its local steps: call `handle(.., ComputeGranted)` when a compute
    /// slot is free. At most one is outstanding.
    WantCompute,
    /// Round `round` finished (its gossip mixed in); `loss` is the mean minibatch loss of its
    /// local steps (NaN when H = 0).
    RoundCompleted {
        /// The round that finished.
        round: u64,
        /// Mean local loss.
        loss: f32,
    },
    /// Time to save [`Peer::checkpoint`](super::Peer::checkpoint); `round` is the next round
    /// to run.
    CheckpointDue {
        /// Rounds completed.
        round: u64,
    },
    /// A joining peer took its neighbours' model before its first step.
    ModelAdopted {
        /// The neighbour it came from ([`JoinModel::Average`](super::JoinModel::Average): the
        /// one furthest ahead among those averaged).
        from: I,
        /// How many neighbours' vectors it is made of (1 with a donor).
        donors: u32,
        /// The round the peer continues from.
        round: u64,
    },
    /// A frame from `from` was rejected; the peer's state is unchanged apart from counters.
    Rejected {
        /// Sender.
        from: I,
        /// Why.
        reason: RejectReason,
    },
    /// `peer` sent too many rejected frames (see `PeerConfig::misbehaviour_threshold`): it was
    /// dropped from the neighbours, as on [`Input::NeighbourDown`], and will be refused if it
    /// comes up again. Emitted once per peer; the driver should disconnect (or ban) it.
    Misbehaving {
        /// The excluded neighbour.
        peer: I,
        /// Rejected frames counted in the policy's window.
        rejected: u64,
    },
}

/// Why a frame was rejected (each kind has a counter in [`RejectCounts`](super::RejectCounts)).
#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum RejectReason {
    /// The frame did not decode.
    #[error(transparent)]
    Message(#[from] MessageError),
    /// A vector or frame has another dimension than this peer's model (in a hello, a
    /// snapshot, or a codec frame's header: `DecodeError::DimensionMismatch` lands here).
    #[error("dimension mismatch: expected {expected}, got {got}")]
    WrongDimension {
        /// This peer's dimension.
        expected: usize,
        /// The message's.
        got: usize,
    },
    /// NaN or infinite values (a codec frame's `NonFiniteScale` / `NonFiniteValue` land here,
    /// as do copies that would overflow when an update is applied).
    #[error("non-finite values in {what}")]
    NonFinite {
        /// Where.
        what: &'static str,
    },
    /// The sender trains another model family.
    #[error("model fingerprint {got:#x} differs from ours ({expected:#x})")]
    FingerprintMismatch {
        /// Ours.
        expected: u64,
        /// Theirs.
        got: u64,
    },
    /// The sender runs another algorithm.
    #[error("sender runs {got:?}, this peer runs {expected:?}")]
    AlgorithmMismatch {
        /// Ours.
        expected: AlgorithmKind,
        /// Theirs.
        got: AlgorithmKind,
    },
    /// The compressed frame is malformed (any `murmur_compress` decode failure other than
    /// dimension and finiteness, which have their own reasons above).
    #[error("compressed frame: {0}")]
    Codec(#[from] DecodeError),
    /// The sender is not a current neighbour.
    #[error("sender is not a neighbour")]
    NotANeighbour,
    /// A message this algorithm does not use.
    #[error("unexpected {what} message for this algorithm")]
    UnexpectedMessage {
        /// Message kind.
        what: &'static str,
    },
    /// A snapshot that answers no outstanding request.
    #[error("snapshot answers no outstanding request")]
    UnsolicitedSnapshot,
    /// A field out of range.
    #[error("invalid {what}")]
    InvalidField {
        /// Which field.
        what: &'static str,
    },
    /// Too many snapshot requests from this neighbour this round (or requests of one chunk).
    #[error("too many snapshot requests this round")]
    RateLimited,
    /// A snapshot chunk whose values do not match the hash its manifest announced.
    #[error("snapshot chunk {index} does not match its announced hash")]
    BadChunk {
        /// The chunk's index.
        index: u32,
    },
}

impl RejectReason {
    /// Every label [`RejectReason::label`] gives, decode errors included.
    pub const LABELS: [&'static str; 16] = [
        "message-too-large",
        "message-empty",
        "message-unsupported-version",
        "message-malformed",
        "message-trailing-bytes",
        "wrong-dimension",
        "non-finite",
        "fingerprint-mismatch",
        "algorithm-mismatch",
        "codec",
        "not-neighbour",
        "unexpected-message",
        "unsolicited-snapshot",
        "invalid-field",
        "snapshot-rate-limit",
        "snapshot-bad-chunk",
    ];

    /// A stable metric label (kebab case). A decode failure carries its kind
    /// ([`MessageError::label`]); a sender outside the neighbour set is `not-neighbour`, the
    /// label the daemon's swarm loop uses for the same thing one layer down; too many
    /// snapshot requests is `snapshot-rate-limit`, distinct from the swarm's per-connection
    /// `rate-limit`.
    pub fn label(&self) -> &'static str {
        match self {
            RejectReason::Message(e) => e.label(),
            RejectReason::WrongDimension { .. } => "wrong-dimension",
            RejectReason::NonFinite { .. } => "non-finite",
            RejectReason::FingerprintMismatch { .. } => "fingerprint-mismatch",
            RejectReason::AlgorithmMismatch { .. } => "algorithm-mismatch",
            RejectReason::Codec(_) => "codec",
            RejectReason::NotANeighbour => "not-neighbour",
            RejectReason::UnexpectedMessage { .. } => "unexpected-message",
            RejectReason::UnsolicitedSnapshot => "unsolicited-snapshot",
            RejectReason::InvalidField { .. } => "invalid-field",
            RejectReason::RateLimited => "snapshot-rate-limit",
            RejectReason::BadChunk { .. } => "snapshot-bad-chunk",
        }
    }
}

/// Coarse state of a peer, for status pages and tests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PeerPhase {
    /// Before [`Input::Start`].
    Idle,
    /// Waiting for hellos (or for the model to adopt) before the first round.
    Starting,
    /// [`Output::WantCompute`] emitted, waiting for [`Input::ComputeGranted`].
    WantsCompute,
    /// Update sent; waiting for neighbours' updates of this round (round-tagged mode).
    Mixing,
    /// After [`Input::Shutdown`].
    Stopped,
}

/// Read-only view of one neighbour's state.
#[derive(Clone, Debug, PartialEq)]
pub struct NeighbourInfo<'a> {
    /// Degree the neighbour last reported.
    pub degree: usize,
    /// Current Metropolis–Hastings weight w_ij.
    pub weight: f64,
    /// Whether its hello arrived.
    pub hello_seen: bool,
    /// Whether a snapshot request to it is outstanding.
    pub awaiting_snapshot: bool,
    /// Sequence number of the last update folded into the copy.
    pub applied_seq: u64,
    /// Round tag of the newest update applied.
    pub heard_round: Option<u64>,
    /// The copy of its public vector (x̂_j for CHOCO, x_j for D-PSGD), once known.
    pub copy: Option<&'a [f32]>,
    /// Updates buffered while a gap is repaired.
    pub buffered: usize,
    /// The driver said it is reached only through a relay ([`Input::LinkClass`]).
    pub relayed: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reject_label_is_listed_and_distinct() {
        let reasons = [
            RejectReason::Message(MessageError::TooLarge { len: 2, max: 1 }),
            RejectReason::Message(MessageError::Empty),
            RejectReason::Message(MessageError::UnsupportedVersion {
                got: 9,
                supported: 2,
            }),
            RejectReason::Message(MessageError::Malformed("x".into())),
            RejectReason::Message(MessageError::TrailingBytes { extra: 1 }),
            RejectReason::WrongDimension {
                expected: 1,
                got: 2,
            },
            RejectReason::NonFinite { what: "update" },
            RejectReason::FingerprintMismatch {
                expected: 1,
                got: 2,
            },
            RejectReason::AlgorithmMismatch {
                expected: AlgorithmKind::Choco,
                got: AlgorithmKind::Dpsgd,
            },
            RejectReason::Codec(DecodeError::Empty),
            RejectReason::NotANeighbour,
            RejectReason::UnexpectedMessage { what: "share" },
            RejectReason::UnsolicitedSnapshot,
            RejectReason::InvalidField { what: "degree" },
            RejectReason::RateLimited,
            RejectReason::BadChunk { index: 3 },
        ];
        let labels: Vec<&str> = reasons.iter().map(RejectReason::label).collect();
        assert_eq!(
            labels,
            RejectReason::LABELS,
            "one label per reason, in LABELS order"
        );
        // Each reason counted alone shows up under its own label and nowhere else.
        for r in &reasons {
            let mut counts = super::super::RejectCounts::default();
            counts.count(r);
            for (label, n) in counts.by_label() {
                assert_eq!(n, u64::from(label == r.label()), "{r:?} under {label}");
            }
        }
        let mut sorted = labels.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), labels.len(), "labels are distinct");
        for l in labels {
            assert!(
                l.chars().all(|c| c.is_ascii_lowercase() || c == '-'),
                "{l} is kebab case"
            );
        }
    }
}
