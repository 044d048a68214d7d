//! The sans-IO gossip peer: local SGD plus compressed gossip averaging (CHOCO-SGD family).
//!
//! [`Peer`] is a state machine with one entry point, [`Peer::handle`]`(now, input)`, that
//! returns what the driver must do. It owns no socket, thread or clock; every random choice
//! comes from [`PeerConfig::seed`]. The simulator (virtual clock, `I = u32`) and the daemon
//! (tokio + libp2p, `I = PeerId`) drive the very same code.
//!
//! # Algorithms
//! - **CHOCO-SGD** (Koloskova, Stich, Jaggi, ICML 2019). Peer i keeps its model x_i, its public
//!   copy x̂_i and, for every neighbour j, an exact copy of x̂_j. One round: H local steps on
//!   x_i; q_i = Q(x_i − x̂_i) with any `murmur-compress` codec; x̂_i += q_i; q_i goes to every
//!   neighbour (sequence number + round tag), who adds it to its copy of x̂_i; then
//!   x_i += γ Σ_j w_ij (x̂_j − x̂_i). The residual x_i − x̂_i is exactly what has not been sent
//!   yet, so nothing is lost to compression, only delayed.
//! - **Exact D-PSGD** (Lian et al. 2017): the dense model is sent and x_i ← Σ_j w_ij x_j.
//! - **Push-sum / SGP** (Kempe et al. 2003; Assran et al. 2019): weight shares pushed with the
//!   de-biased model to out-neighbours ([`Input::PushTargets`], default: every neighbour); the
//!   model is the de-biased ratio, and shares are mixed in on arrival (in f64). Mass is
//!   conserved exactly, so late shares count once, later. Round-tagged push-sum paces rounds
//!   like CHOCO: every neighbour pushed nothing gets a [`crate::message::PushMark`], and a
//!   round ends when a share or a marker of it came from every neighbour (or at the round
//!   timeout), so a fast peer cannot give its weight away faster than it gets weight back
//!   (SGP's synchronous variant; the unpaced form is not offered: see
//!   [`ConfigError::PushSumAsync`]).
//!
//! Weights are Metropolis–Hastings, w_ij = 1 / (1 + max(d_i, d_j)), from the degree each
//! neighbour reports in its hello and in every update, recomputed whenever a degree changes.
//!
//! # Memory
//! Two storages for what a peer knows of its neighbours ([`CopyStorage`]):
//! - `PerNeighbour` (default): x, x̂ and one exact copy of x̂_j per neighbour, so
//!   (2 + degree) model-sized f32 vectors, plus scratch during a mix and at most
//!   `max_buffered_updates` compressed updates per neighbour while a gap is repaired. A
//!   neighbour leaving or changing degree is handled locally (drop or re-weight its copy), and
//!   clipping and staleness damping act per neighbour. With the small degrees of gossip graphs
//!   (≤ 2 log2 n) this is cheap.
//! - `Aggregate`: the memory-efficient form of the paper, x, x̂ and s = Σ_j w_ij x̂_j (kept in
//!   f64 so the running sum does not drift), three vectors whatever the degree. A contribution
//!   inside s cannot be removed or re-weighted exactly, so a neighbour leaving, a degree
//!   change or a resync rebuilds s from fresh snapshots of every neighbour (the round waits
//!   for them, bounded by its timeout). Round-tagged CHOCO without clipping only.
//!
//! # Exactness
//! Every copy of x̂_j is built from the same bits by the same deterministic `add_to`, in
//! sequence order. A gap in sequence numbers (still open after `gap_grace`, since a reordered
//! update closes it by itself), a reconnect, a hello whose sequence number is behind the copy
//! (a restart) or a new neighbour whose public copy is not zero triggers a
//! [`crate::message::SnapshotRequest`]; the dense snapshot replaces the copy, and buffered
//! updates past it are replayed. A duplicate or replayed update (sequence number already
//! applied) is dropped and counted, never resynchronised: its bits are already in the copy, and
//! resyncing on replays would let a hostile neighbour multiply everyone's traffic.
//!
//! # Hostile neighbours
//! Every frame is validated before it touches state ([`RejectReason`]). A neighbour whose frames
//! keep being rejected (`PeerConfig::misbehaviour_threshold` within `misbehaviour_window`
//! rounds) is excluded as if its edge went down, so rounds stop waiting for it, and reported
//! with [`Output::Misbehaving`]. Snapshot requests are served at most
//! `max_snapshots_per_round` times per neighbour per round. Removing a neighbour drops its
//! copy and so exactly its contribution; a peer's own unsent residual stays in x_i − x̂_i.

mod checkpoint;
mod config;
mod stats;
pub mod testing;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt::Debug;
use std::hash::Hash;

use murmur_compress as compress;

pub use compress::{CodecSpec, DecodeError};
use compress::{Compressed, Compressor, DecodeLimits};
use ndarray::Array1;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;

pub use checkpoint::{CHECKPOINT_FORMAT, CheckpointError, PeerCheckpoint, RngState};
pub use config::{Algorithm, ConfigError, CopyStorage, Micros, Mode, PeerConfig, PushSchedule};
pub use stats::{PeerStats, RejectCounts};

use crate::learner::{Evaluation, LocalLearner};
use crate::message::{
    AlgorithmKind, Hello, Message, MessageError, PushMark, PushShare, Snapshot, SnapshotRequest,
    Update,
};

/// Domain separation of the push-sum target draws from the peer's other random streams.
const PUSH_DRAW_SALT: u64 = 0x7075_7368_7261_6e64; // "pushrand"

/// Largest degree a neighbour may report (a sanity bound on an untrusted field).
pub const MAX_DEGREE: u32 = 1 << 16;

/// Opaque timer id: returned to the peer as [`Input::Timer`] when the timer is due.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
pub struct TimerToken(pub u64);

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
}

/// What the peer asks of the driver.
#[derive(Clone, Debug, PartialEq)]
pub enum Output<I> {
    /// Send `bytes` to `to` (best effort; losses are repaired by the protocol).
    Send {
        /// Receiver.
        to: I,
        /// A [`Message`] frame.
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
    /// Time to save [`Peer::checkpoint`]; `round` is the next round to run.
    CheckpointDue {
        /// Rounds completed.
        round: u64,
    },
    /// A joining peer took a neighbour's model before its first step.
    ModelAdopted {
        /// The neighbour it came from.
        from: I,
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

/// Why a frame was rejected (each kind has a counter in [`RejectCounts`]).
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
    /// Too many snapshot requests from this neighbour this round.
    #[error("too many snapshot requests this round")]
    RateLimited,
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
}

/// Metropolis–Hastings weight 1 / (1 + max(d_i, d_j)) (same formula as
/// `murmur_topology::metropolis_weight`).
pub fn metropolis_weight(deg_i: usize, deg_j: usize) -> f64 {
    1.0 / (1.0 + deg_i.max(deg_j) as f64)
}

#[derive(Debug)]
struct Buffered {
    round: u64,
    degree: u32,
    frame: Compressed,
}

#[derive(Debug, Default)]
struct Neighbour {
    hello_seen: bool,
    degree: usize,
    copy: Option<Vec<f32>>,
    applied_seq: u64,
    snapshot_floor: u64,
    heard_round: Option<u64>,
    buffer: BTreeMap<u64, Buffered>,
    pending_snapshot: Option<u64>,
    pending_wants_model: bool,
    served: (u64, u32),
    hello_requested_round: Option<u64>,
    gap_check_pending: bool,
    /// Aggregate storage: the weight this neighbour's x̂_j entered the sum with.
    weight_in_sum: Option<f64>,
    push_rounds: BTreeSet<u64>,
    /// Rounds (of this peer) in which frames from it were rejected, oldest first, within the
    /// misbehaviour window.
    rejections: VecDeque<u64>,
}

impl Neighbour {
    fn established(&self, kind: AlgorithmKind) -> bool {
        match kind {
            AlgorithmKind::Choco => self.copy.is_some(),
            AlgorithmKind::Dpsgd | AlgorithmKind::PushSum => self.hello_seen,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TimerPurpose {
    Startup,
    RoundDeadline(u64),
    SnapshotRetry(u64),
    GapCheck,
}

#[derive(Debug)]
enum Phase<I> {
    Idle,
    Starting,
    WantsCompute,
    Mixing { round: u64, waiting: BTreeSet<I> },
    Stopped,
}

/// How often a joiner re-arms its startup deadline while the model it adopts is on its way.
const MAX_ADOPTION_WAITS: u32 = 5;

/// One murmur peer. See the [module docs](self) for the algorithm.
///
/// # Driving contract
/// 1. Create with [`Peer::new`]; optionally [`Peer::restore`] a checkpoint (before anything
///    else).
/// 2. Report edges with [`Input::NeighbourUp`] / [`Input::NeighbourDown`] whenever they change
///    (before or after `Start`). A peer that restarts must appear to its neighbours as down then
///    up again (a new connection does this naturally).
/// 3. Send [`Input::Start`] once.
/// 4. Deliver every frame with [`Input::Message`], in any order; losses, duplicates and
///    reordering are tolerated and repaired.
/// 5. Act on every output, in order:
///    - [`Output::Send`]: send the bytes to that peer (best effort);
///    - [`Output::ScheduleTimer`]: call back with [`Input::Timer`] at or after `at`; stale
///      timers are ignored, so the driver never needs to cancel one;
///    - [`Output::WantCompute`]: when a compute slot is free, call [`Input::ComputeGranted`]
///      (this runs the H local steps inside `handle`, so the simulator charges compute time and
///      the daemon calls it on a compute thread);
///    - [`Output::RoundCompleted`] / [`Output::ModelAdopted`] / [`Output::Rejected`]: metrics
///      and logs only;
///    - [`Output::CheckpointDue`]: save [`Peer::checkpoint`].
/// 6. [`Input::Shutdown`] to leave cleanly.
///
/// `now` must never decrease. Getters ([`Peer::model`], [`Peer::stats`], …) may be called
/// at any time.
///
/// # Example: two peers averaging, driven by hand
/// ```
/// use murmur_gossip::learner::{Evaluation, LocalLearner};
/// use murmur_gossip::peer::{Algorithm, CodecSpec, Input, Output, Peer, PeerConfig};
/// use ndarray::Array1;
///
/// #[derive(Debug)]
/// struct Still; // a learner that never moves the model: pure averaging
/// impl LocalLearner for Still {
///     fn dim(&self) -> usize { 3 }
///     fn step(&mut self, _: &mut [f32]) -> f32 { 0.0 }
///     fn evaluate(&self, _: &[f32]) -> Evaluation { Evaluation::default() }
///     fn save_state(&self) -> Vec<u8> { Vec::new() }
///     fn load_state(&mut self, _: &[u8]) -> Result<(), String> { Ok(()) }
/// }
///
/// let config = PeerConfig {
///     algorithm: Algorithm::Choco { codec: CodecSpec::DenseF32, gamma: 1.0 },
///     ..PeerConfig::default()
/// };
/// let mut peers = [
///     Peer::new(0u32, config.clone(), Box::new(Still), Array1::from(vec![0.0, 0.0, 0.0])).unwrap(),
///     Peer::new(1u32, config, Box::new(Still), Array1::from(vec![2.0, 4.0, 6.0])).unwrap(),
/// ];
/// // Outputs to act on, first in first out: (peer index, output).
/// let mut todo = std::collections::VecDeque::new();
/// for (i, j) in [(0, 1), (1, 0)] {
///     todo.extend(peers[i].handle(0, Input::NeighbourUp(j as u32)).into_iter().map(|o| (i, o)));
///     todo.extend(peers[i].handle(0, Input::Start).into_iter().map(|o| (i, o)));
/// }
/// while let Some((i, output)) = todo.pop_front() {
///     let (k, next) = match output {
///         Output::Send { to, bytes } => {
///             let from = i as u32;
///             (to as usize, peers[to as usize].handle(0, Input::Message { from, bytes }))
///         }
///         // One round only; a real driver keeps granting compute.
///         Output::WantCompute if peers[i].round() == 0 => (i, peers[i].handle(0, Input::ComputeGranted)),
///         _ => continue, // timers, metrics
///     };
///     todo.extend(next.into_iter().map(|o| (k, o)));
/// }
/// // One round of exact gossip with weight 1/2: both peers hold the average.
/// assert_eq!(peers[0].model().to_vec(), vec![1.0, 2.0, 3.0]);
/// assert_eq!(peers[1].model().to_vec(), vec![1.0, 2.0, 3.0]);
/// ```
/// [`testing::LockStep`] is a complete lock-step driver of this kind.
#[derive(Debug)]
pub struct Peer<I> {
    id: I,
    config: PeerConfig,
    kind: AlgorithmKind,
    learner: Box<dyn LocalLearner>,
    dim: usize,
    max_message_bytes: usize,
    dense_update_len: usize,
    model: Array1<f32>,
    x_hat: Vec<f32>,
    aggregate: Option<Vec<f64>>,
    aggregate_weight: f64,
    push_weight: f64,
    push_targets: Option<Vec<I>>,
    compressor: Box<dyn Compressor>,
    rng: ChaCha8Rng,
    round: u64,
    seq: u64,
    last_update_round: u64,
    steps_taken: u64,
    round_loss: f32,
    compute_requested: bool,
    banked_loss: Option<f32>,
    restored: bool,
    adopting: Option<I>,
    adoption_waits: u32,
    phase: Phase<I>,
    neighbours: BTreeMap<I, Neighbour>,
    excluded: BTreeSet<I>,
    timers: BTreeMap<u64, TimerPurpose>,
    neighbour_timers: BTreeMap<u64, I>,
    next_timer: u64,
    next_nonce: u64,
    stats: PeerStats,
    out: Vec<Output<I>>,
}

fn derive_seed(seed: u64, label: u64) -> u64 {
    // splitmix64 of seed ^ label: independent streams for independent purposes.
    let mut z = seed ^ label.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

const CODEC_STREAM: u64 = 1;
const NOISE_STREAM: u64 = 2;

fn all_finite(v: &[f32]) -> bool {
    v.iter().all(|x| x.is_finite())
}

impl<I: Clone + Ord + Debug + Hash> Peer<I> {
    /// Creates a peer with model `init` (every peer of a run should start from the same init;
    /// a joiner adopts its neighbours' model anyway).
    pub fn new(
        id: I,
        config: PeerConfig,
        learner: Box<dyn LocalLearner>,
        init: Array1<f32>,
    ) -> Result<Self, ConfigError> {
        config.validate()?;
        let dim = learner.dim();
        if dim == 0 {
            return Err(ConfigError::Zero("model dimension"));
        }
        if init.len() != dim {
            return Err(ConfigError::InitDimension {
                expected: dim,
                got: init.len(),
            });
        }
        if !init.iter().all(|x| x.is_finite()) {
            return Err(ConfigError::InitNonFinite);
        }
        let kind = config.algorithm.kind();
        let compressor = Self::build_compressor(&config, 0);
        let max_message_bytes = config.max_message_bytes.unwrap_or(8 * dim + 4096);
        let dense_update_len = Message::Update(Update {
            seq: 1,
            round: 0,
            degree: 1,
            frame: compress::build(&CodecSpec::DenseF32, 0)
                .compress(&vec![0.0; dim])
                .encode(),
        })
        .encode()
        .len();
        let rng = ChaCha8Rng::seed_from_u64(derive_seed(config.seed, NOISE_STREAM));
        Ok(Peer {
            id,
            kind,
            learner,
            dim,
            max_message_bytes,
            dense_update_len,
            model: init,
            x_hat: vec![0.0; dim],
            aggregate: (config.copies == CopyStorage::Aggregate).then(|| vec![0.0f64; dim]),
            aggregate_weight: 0.0,
            push_weight: 1.0,
            push_targets: None,
            compressor,
            rng,
            round: 0,
            seq: 0,
            last_update_round: 0,
            steps_taken: 0,
            round_loss: f32::NAN,
            compute_requested: false,
            banked_loss: None,
            restored: false,
            adopting: None,
            adoption_waits: 0,
            phase: Phase::Idle,
            neighbours: BTreeMap::new(),
            excluded: BTreeSet::new(),
            timers: BTreeMap::new(),
            neighbour_timers: BTreeMap::new(),
            next_timer: 0,
            next_nonce: 1,
            stats: PeerStats::default(),
            out: Vec::new(),
            config,
        })
    }

    fn build_compressor(config: &PeerConfig, round: u64) -> Box<dyn Compressor> {
        let spec = match &config.algorithm {
            Algorithm::Choco { codec, .. } => codec.clone(),
            Algorithm::Dpsgd | Algorithm::PushSum => CodecSpec::DenseF32,
        };
        compress::build(&spec, derive_seed(config.seed ^ round, CODEC_STREAM))
    }

    // ------------------------------------------------------------------ getters

    /// This peer's id.
    pub fn id(&self) -> &I {
        &self.id
    }
    /// The configuration.
    pub fn config(&self) -> &PeerConfig {
        &self.config
    }
    /// The model x (push-sum: the de-biased model).
    pub fn model(&self) -> &Array1<f32> {
        &self.model
    }
    /// The public copy x̂ every neighbour holds of this peer.
    pub fn public_copy(&self) -> &[f32] {
        &self.x_hat
    }
    /// Next round to run (rounds completed, or the adopted round for a joiner).
    pub fn round(&self) -> u64 {
        self.round
    }
    /// Sequence number of the last update sent.
    pub fn seq(&self) -> u64 {
        self.seq
    }
    /// Parameter count.
    pub fn dim(&self) -> usize {
        self.dim
    }
    /// Counters.
    pub fn stats(&self) -> &PeerStats {
        &self.stats
    }
    /// Coarse state.
    pub fn phase(&self) -> PeerPhase {
        match self.phase {
            Phase::Idle => PeerPhase::Idle,
            Phase::Starting => PeerPhase::Starting,
            Phase::WantsCompute => PeerPhase::WantsCompute,
            Phase::Mixing { .. } => PeerPhase::Mixing,
            Phase::Stopped => PeerPhase::Stopped,
        }
    }
    /// Current neighbours, in id order.
    pub fn neighbours(&self) -> impl Iterator<Item = &I> {
        self.neighbours.keys()
    }
    /// Neighbours excluded by the misbehaviour policy, in id order.
    pub fn excluded(&self) -> impl Iterator<Item = &I> {
        self.excluded.iter()
    }
    /// Number of neighbours (the degree reported to them).
    pub fn degree(&self) -> usize {
        self.neighbours.len()
    }
    /// One neighbour's state.
    pub fn neighbour(&self, id: &I) -> Option<NeighbourInfo<'_>> {
        self.neighbours.get(id).map(|nb| NeighbourInfo {
            degree: nb.degree,
            weight: metropolis_weight(self.neighbours.len(), nb.degree),
            hello_seen: nb.hello_seen,
            awaiting_snapshot: nb.pending_snapshot.is_some(),
            applied_seq: nb.applied_seq,
            heard_round: nb.heard_round,
            copy: nb.copy.as_deref().filter(|c| !c.is_empty()),
            buffered: nb.buffer.len(),
        })
    }
    /// Push-sum weight (1 for the other algorithms).
    pub fn push_weight(&self) -> f64 {
        self.push_weight
    }
    /// The local learner.
    pub fn learner(&self) -> &dyn LocalLearner {
        self.learner.as_ref()
    }
    /// Evaluates the current model with the learner (held-out data if it has some).
    pub fn evaluate(&self) -> Evaluation {
        self.learner
            .evaluate(self.model.as_slice().expect("model is contiguous"))
    }
    /// Size of one update frame if it were a dense f32 vector (the D-PSGD message size).
    pub fn dense_update_bytes(&self) -> usize {
        self.dense_update_len
    }
    /// Model-sized f32 vectors this peer holds now (x, x̂, and the neighbour copies or the
    /// aggregate sum).
    pub fn vectors_held(&self) -> usize {
        if self.aggregate.is_some() {
            return 3;
        }
        2 + self
            .neighbours
            .values()
            .filter(|nb| nb.copy.is_some())
            .count()
            + usize::from(self.kind == AlgorithmKind::PushSum)
    }
    /// Frames larger than this are rejected unread.
    pub fn max_message_bytes(&self) -> usize {
        self.max_message_bytes
    }

    // ------------------------------------------------------------------ checkpoints

    /// The resumable state (see [`PeerCheckpoint`]).
    pub fn checkpoint(&self) -> PeerCheckpoint {
        PeerCheckpoint {
            format: CHECKPOINT_FORMAT,
            dim: self.dim as u64,
            fingerprint: self.config.fingerprint,
            algorithm: self.kind,
            round: self.round,
            seq: self.seq,
            last_update_round: self.last_update_round,
            local_steps: self.steps_taken,
            model: self.model.to_vec(),
            x_hat: self.x_hat.clone(),
            push_weight: self.push_weight,
            learner_state: self.learner.save_state(),
            rng: RngState::of(&self.rng),
        }
    }

    /// Resumes from a checkpoint. Must be called before [`Input::Start`] and before any
    /// [`Input::NeighbourUp`]; on error nothing changed.
    pub fn restore(&mut self, cp: PeerCheckpoint) -> Result<(), CheckpointError> {
        if !matches!(self.phase, Phase::Idle) || !self.neighbours.is_empty() {
            return Err(CheckpointError::NotFresh);
        }
        if cp.format != CHECKPOINT_FORMAT {
            return Err(CheckpointError::Format {
                got: cp.format,
                expected: CHECKPOINT_FORMAT,
            });
        }
        if cp.dim != self.dim as u64 {
            return Err(CheckpointError::Mismatch(format!(
                "dimension {} (peer: {})",
                cp.dim, self.dim
            )));
        }
        if cp.fingerprint != self.config.fingerprint {
            return Err(CheckpointError::Mismatch(format!(
                "fingerprint {:#x} (peer: {:#x})",
                cp.fingerprint, self.config.fingerprint
            )));
        }
        if cp.algorithm != self.kind {
            return Err(CheckpointError::Mismatch(format!(
                "algorithm {:?} (peer: {:?})",
                cp.algorithm, self.kind
            )));
        }
        for (what, v, expected) in [
            ("model", &cp.model, self.dim),
            ("x_hat", &cp.x_hat, self.dim),
        ] {
            if v.len() != expected {
                return Err(CheckpointError::WrongLength {
                    what,
                    got: v.len(),
                    expected,
                });
            }
            if !all_finite(v) {
                return Err(CheckpointError::NonFinite(what));
            }
        }
        if !(cp.push_weight.is_finite() && cp.push_weight > 0.0) {
            return Err(CheckpointError::NonFinite("push_weight"));
        }
        self.learner
            .load_state(&cp.learner_state)
            .map_err(CheckpointError::Learner)?;
        self.model = Array1::from(cp.model);
        self.x_hat = cp.x_hat;
        self.push_weight = cp.push_weight;
        self.round = cp.round;
        self.seq = cp.seq;
        self.last_update_round = cp.last_update_round;
        self.steps_taken = cp.local_steps;
        self.rng = cp.rng.to_rng();
        self.compressor = Self::build_compressor(&self.config, cp.round);
        self.restored = true;
        Ok(())
    }

    // ------------------------------------------------------------------ the entry point

    /// Feeds one input and returns what the driver must do, in order. See the type's docs.
    pub fn handle(&mut self, now: Micros, input: Input<I>) -> Vec<Output<I>> {
        if matches!(self.phase, Phase::Stopped) {
            if let Input::Message { bytes, .. } = &input {
                self.stats.messages_received += 1;
                self.stats.bytes_received += bytes.len() as u64;
            }
            return Vec::new();
        }
        match input {
            Input::Start => self.on_start(now),
            Input::ComputeGranted => self.on_compute(now),
            Input::Message { from, bytes } => self.on_message(now, from, &bytes),
            Input::NeighbourUp(j) => self.on_up(now, j),
            Input::NeighbourDown(j) => self.on_down(now, j),
            Input::Timer(token) => self.on_timer(now, token),
            Input::PushTargets(targets) => self.push_targets = Some(targets),
            Input::Shutdown => self.on_shutdown(),
        }
        std::mem::take(&mut self.out)
    }

    // ------------------------------------------------------------------ plumbing

    fn send(&mut self, to: I, bytes: Vec<u8>) {
        self.stats.messages_sent += 1;
        self.stats.bytes_sent += bytes.len() as u64;
        self.out.push(Output::Send { to, bytes });
    }

    fn schedule(&mut self, at: Micros, purpose: TimerPurpose) -> u64 {
        let token = self.next_timer;
        self.next_timer += 1;
        self.timers.insert(token, purpose);
        self.out.push(Output::ScheduleTimer {
            at,
            token: TimerToken(token),
        });
        token
    }

    fn reject(&mut self, now: Micros, from: I, reason: RejectReason) {
        self.stats.rejected.count(&reason);
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
        nb.rejections.push_back(round);
        while nb
            .rejections
            .front()
            .is_some_and(|r| r.saturating_add(window) <= round)
        {
            nb.rejections.pop_front();
        }
        if nb.rejections.len() < threshold {
            return;
        }
        let rejected = nb.rejections.len() as u64;
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

    fn send_hello(&mut self, to: I, reply_wanted: bool) {
        let bytes = self.hello(reply_wanted);
        self.stats.hellos_sent += 1;
        self.send(to, bytes);
    }

    fn is_fresh(&self) -> bool {
        matches!(self.phase, Phase::Idle | Phase::Starting)
            && self.round == 0
            && self.seq == 0
            && self.steps_taken == 0
            && !self.restored
            && self.config.adopt_on_join
    }

    fn request_snapshot(&mut self, now: Micros, j: &I, want_model: bool) {
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
        self.stats.snapshot_requests_sent += 1;
        let bytes = Message::SnapshotRequest(SnapshotRequest { nonce, want_model }).encode();
        self.send(j.clone(), bytes);
        let token = self.schedule(
            now + self.config.snapshot_timeout,
            TimerPurpose::SnapshotRetry(nonce),
        );
        self.neighbour_timers.insert(token, j.clone());
    }

    // ------------------------------------------------------------------ lifecycle

    fn on_start(&mut self, now: Micros) {
        if !matches!(self.phase, Phase::Idle) {
            return;
        }
        self.phase = Phase::Starting;
        self.schedule(now + self.config.startup_timeout, TimerPurpose::Startup);
        self.try_begin(false);
    }

    /// Leaves `Starting` once every neighbour is established and no adoption is pending (or
    /// unconditionally when the startup deadline passed, `force`).
    fn try_begin(&mut self, force: bool) {
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

    fn on_shutdown(&mut self) {
        let bytes = Message::Goodbye.encode();
        let ids: Vec<I> = self.neighbours.keys().cloned().collect();
        for j in ids {
            self.send(j, bytes.clone());
        }
        self.phase = Phase::Stopped;
    }

    fn on_up(&mut self, now: Micros, j: I) {
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

    fn on_down(&mut self, now: Micros, j: I) {
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
            self.adopting = None;
        }
        self.try_begin(false);
        self.check_ready(now);
    }

    fn on_timer(&mut self, now: Micros, token: TimerToken) {
        let Some(purpose) = self.timers.remove(&token.0) else {
            return;
        };
        match purpose {
            TimerPurpose::Startup => {
                if !matches!(self.phase, Phase::Starting) {
                    return;
                }
                if self.adopting.is_some() && self.adoption_waits < MAX_ADOPTION_WAITS {
                    self.adoption_waits += 1;
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
            TimerPurpose::GapCheck => {
                let Some(j) = self.neighbour_timers.remove(&token.0) else {
                    return;
                };
                let Some(nb) = self.neighbours.get_mut(&j) else {
                    return;
                };
                nb.gap_check_pending = false;
                let gap_open = nb.copy.is_some()
                    && nb
                        .buffer
                        .first_key_value()
                        .is_some_and(|(seq, _)| *seq > nb.applied_seq + 1);
                if gap_open {
                    self.resync(now, &j);
                }
            }
            TimerPurpose::SnapshotRetry(nonce) => {
                let Some(j) = self.neighbour_timers.remove(&token.0) else {
                    return;
                };
                let Some(nb) = self.neighbours.get_mut(&j) else {
                    return;
                };
                if nb.pending_snapshot != Some(nonce) {
                    return;
                }
                let want_model = nb.pending_wants_model;
                nb.pending_snapshot = None;
                self.stats.snapshot_retries += 1;
                self.request_snapshot(now, &j, want_model);
            }
        }
    }

    // ------------------------------------------------------------------ a round

    fn request_compute(&mut self) {
        if !self.compute_requested {
            self.compute_requested = true;
            self.out.push(Output::WantCompute);
        }
    }

    /// Whether the next round's local steps may run while this round's gossip is in flight.
    fn overlaps(&self) -> bool {
        self.config.overlap_compute
            && matches!(self.config.mode, Mode::RoundTagged { .. })
            && self.kind != AlgorithmKind::PushSum
    }

    fn on_compute(&mut self, now: Micros) {
        let early = matches!(self.phase, Phase::Mixing { .. });
        let allowed = matches!(self.phase, Phase::WantsCompute)
            || (early && self.overlaps() && self.banked_loss.is_none());
        if !self.compute_requested || !allowed {
            return;
        }
        self.compute_requested = false;
        let loss = self.local_steps();
        if early {
            // Overlap: the next round's steps are done; its update goes out when this round's
            // mix is in.
            self.banked_loss = Some(loss);
            return;
        }
        self.round_loss = loss;
        self.send_and_wait(now);
    }

    /// Sends this round's update and waits for the neighbours' (round-tagged) or mixes at
    /// once (asynchronous CHOCO / D-PSGD).
    fn send_and_wait(&mut self, now: Micros) {
        match self.kind {
            AlgorithmKind::Choco | AlgorithmKind::Dpsgd => self.send_update(),
            AlgorithmKind::PushSum => self.push_send(),
        }
        match self.config.mode {
            Mode::RoundTagged { timeout } => self.wait_for_round(now, timeout),
            // Validated: push-sum is round-tagged only.
            Mode::Async { .. } => self.mix_and_complete(now),
        }
    }

    /// Round-tagged: waits for this round's update (push-sum: share or marker) from every
    /// neighbour whose hello arrived, bounded by `timeout`; with overlap, the next round's
    /// local steps run meanwhile.
    fn wait_for_round(&mut self, now: Micros, timeout: Micros) {
        let waiting: BTreeSet<I> = self
            .neighbours
            .iter()
            .filter(|(_, nb)| nb.hello_seen)
            .map(|(j, _)| j.clone())
            .collect();
        self.phase = Phase::Mixing {
            round: self.round,
            waiting,
        };
        self.schedule(now + timeout, TimerPurpose::RoundDeadline(self.round));
        if self.overlaps() {
            self.request_compute();
        }
        self.check_ready(now);
    }

    /// Runs the H local steps on x and returns their mean loss (NaN when H = 0 or when the
    /// steps diverged and were undone).
    fn local_steps(&mut self) -> f32 {
        let h = self.config.local_steps;
        if h == 0 {
            return f32::NAN;
        }
        let backup = self.model.clone();
        let params = self.model.as_slice_mut().expect("model is contiguous");
        let mut total = 0.0f64;
        for _ in 0..h {
            total += f64::from(self.learner.step(params));
        }
        self.steps_taken += u64::from(h);
        self.stats.local_steps += u64::from(h);
        if all_finite(params) {
            (total / f64::from(h)) as f32
        } else {
            // Divergence must not reach the neighbours: undo this round's steps.
            self.model = backup;
            self.stats.diverged_rounds += 1;
            f32::NAN
        }
    }

    fn add_noise(&mut self, v: &mut [f32]) {
        let std = self.config.noise_std;
        if std > 0.0 {
            for x in v.iter_mut() {
                let z: f32 = self.rng.sample(StandardNormal);
                *x += std * z;
            }
        }
    }

    fn send_update(&mut self) {
        let mut v: Vec<f32> = match self.kind {
            AlgorithmKind::Choco => self
                .model
                .iter()
                .zip(&self.x_hat)
                .map(|(x, h)| x - h)
                .collect(),
            _ => self.model.to_vec(),
        };
        self.add_noise(&mut v);
        let q = self.compressor.compress(&v);
        match self.kind {
            AlgorithmKind::Choco => q.add_to(&mut self.x_hat, 1.0),
            // D-PSGD: neighbours hold exactly what was sent.
            _ => self.x_hat = q.to_dense(),
        }
        self.seq += 1;
        self.last_update_round = self.round;
        self.broadcast_update(q.encode(), q.nnz());
    }

    fn broadcast_update(&mut self, frame: Vec<u8>, nnz: usize) {
        let bytes = Message::Update(Update {
            seq: self.seq,
            round: self.last_update_round,
            degree: self.neighbours.len() as u32,
            frame,
        })
        .encode();
        let ids: Vec<I> = self.neighbours.keys().cloned().collect();
        for j in ids {
            self.stats.updates_sent += 1;
            self.stats.update_bytes_sent += bytes.len() as u64;
            self.stats.dense_update_bytes += self.dense_update_len as u64;
            self.stats.update_entries_sent += nnz as u64;
            self.send(j, bytes.clone());
        }
    }

    fn check_ready(&mut self, now: Micros) {
        let Phase::Mixing { round, waiting } = &mut self.phase else {
            return;
        };
        let round = *round;
        let neighbours = &self.neighbours;
        // Push-sum holds no copies: only the round's share or marker is waited for.
        let copies = self.kind != AlgorithmKind::PushSum;
        // Wait for this round's update of every neighbour waited for, and for the snapshot of
        // any of them being resynchronised.
        waiting.retain(|j| {
            neighbours.get(j).is_some_and(|nb| {
                (copies && nb.copy.is_none()) || nb.heard_round.is_none_or(|r| r < round)
            })
        });
        if waiting.is_empty() {
            self.finish_mixing(now);
        }
    }

    /// The round's gossip is in (or its deadline passed): mix and complete. Push-sum mixed its
    /// shares on arrival, so it only completes.
    fn finish_mixing(&mut self, now: Micros) {
        if self.kind == AlgorithmKind::PushSum {
            self.complete_round(now);
        } else {
            self.mix_and_complete(now);
        }
    }

    /// x += γ Σ_j w_ij f_j clip(c_j − base), in neighbour-id order (fixed reduction order).
    fn mix_and_complete(&mut self, now: Micros) {
        if self.aggregate.is_some() {
            self.mix_aggregate(now);
            self.complete_round(now);
            return;
        }
        let (gamma, base): (f32, Vec<f32>) = match &self.config.algorithm {
            Algorithm::Choco { gamma, .. } => (*gamma, self.x_hat.clone()),
            _ => (1.0, self.model.to_vec()),
        };
        let my_degree = self.neighbours.len();
        let mut acc = vec![0.0f32; self.dim];
        let mut diff = vec![0.0f32; self.dim];
        let mut any = false;
        for nb in self.neighbours.values() {
            let (Some(copy), Some(heard)) = (&nb.copy, nb.heard_round) else {
                continue;
            };
            let staleness = self.round.saturating_sub(heard);
            let mut factor = 1.0f64;
            if let Mode::Async {
                max_staleness,
                damping,
            } = self.config.mode
            {
                if staleness > max_staleness {
                    self.stats.stale_dropped += 1;
                    continue;
                }
                if staleness > 0 && damping < 1.0 {
                    factor = f64::from(damping).powi(staleness.min(i32::MAX as u64) as i32);
                    self.stats.damped_contributions += 1;
                }
            }
            for ((d, c), b) in diff.iter_mut().zip(copy).zip(&base) {
                *d = c - b;
            }
            let mut scale = 1.0f64;
            if let Some(radius) = self.config.clip_radius {
                let norm = diff
                    .iter()
                    .map(|d| f64::from(*d) * f64::from(*d))
                    .sum::<f64>()
                    .sqrt();
                if norm > f64::from(radius) {
                    scale = f64::from(radius) / norm;
                    self.stats.clipped_contributions += 1;
                }
            }
            let w = (metropolis_weight(my_degree, nb.degree) * factor * scale) as f32;
            for (a, d) in acc.iter_mut().zip(&diff) {
                *a += w * d;
            }
            any = true;
        }
        if any {
            for (x, a) in self.model.iter_mut().zip(&acc) {
                *x += gamma * a;
            }
        }
        self.complete_round(now);
    }

    /// x += γ (s − (Σ_j w_ij) x̂_i); then, if any weight changed since its neighbour entered the
    /// sum, the sum is rebuilt from fresh snapshots.
    fn mix_aggregate(&mut self, now: Micros) {
        let Algorithm::Choco { gamma, .. } = self.config.algorithm else {
            unreachable!("validated: aggregate storage is CHOCO only")
        };
        let sum = self.aggregate.as_ref().expect("aggregate storage");
        let total = self.aggregate_weight;
        if total > 0.0 {
            for ((x, s), h) in self.model.iter_mut().zip(sum).zip(&self.x_hat) {
                *x += gamma * (s - total * f64::from(*h)) as f32;
            }
        }
        self.check_aggregate_weights(now);
    }

    /// Rebuilds the aggregate sum as soon as a weight inside it is no longer the current
    /// Metropolis–Hastings weight (a degree changed on either end).
    fn check_aggregate_weights(&mut self, now: Micros) {
        if self.aggregate.is_none() {
            return;
        }
        let my_degree = self.neighbours.len();
        let stale = self.neighbours.values().any(|nb| {
            nb.weight_in_sum
                .is_some_and(|w| w != metropolis_weight(my_degree, nb.degree))
        });
        if stale {
            self.rebuild_aggregate(now);
        }
    }

    /// Empties the aggregate sum and asks every neighbour for a snapshot to refill it.
    fn rebuild_aggregate(&mut self, now: Micros) {
        let Some(sum) = self.aggregate.as_mut() else {
            return;
        };
        sum.iter_mut().for_each(|s| *s = 0.0);
        self.aggregate_weight = 0.0;
        self.stats.aggregate_rebuilds += 1;
        let mut ask = Vec::new();
        for (j, nb) in self.neighbours.iter_mut() {
            nb.weight_in_sum = None;
            if nb.hello_seen {
                nb.copy = None;
                nb.pending_snapshot = None;
                ask.push(j.clone());
            }
        }
        for j in ask {
            self.request_snapshot(now, &j, false);
        }
    }

    /// Resynchronises what this peer holds of `j`: a snapshot for a per-neighbour copy, a
    /// rebuild when j's contribution is inside the aggregate sum.
    fn resync(&mut self, now: Micros, j: &I) {
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

    fn complete_round(&mut self, now: Micros) {
        let round = self.round;
        self.round += 1;
        self.stats.rounds += 1;
        self.out.push(Output::RoundCompleted {
            round,
            loss: self.round_loss,
        });
        if self.config.checkpoint_every > 0
            && self.round.is_multiple_of(self.config.checkpoint_every)
        {
            self.out.push(Output::CheckpointDue { round: self.round });
        }
        if let Some(loss) = self.banked_loss.take() {
            self.round_loss = loss;
            self.send_and_wait(now);
        } else {
            self.phase = Phase::WantsCompute;
            self.request_compute();
        }
    }

    // ------------------------------------------------------------------ push-sum

    /// This round's push targets: the driver's explicit ones (current neighbours only), or the
    /// configured [`PushSchedule`] over the neighbours.
    fn push_round_targets(&self) -> Vec<I> {
        if let Some(t) = &self.push_targets {
            return t
                .iter()
                .filter(|j| self.neighbours.contains_key(*j))
                .cloned()
                .collect();
        }
        let all: Vec<I> = self.neighbours.keys().cloned().collect();
        if all.is_empty() {
            return all;
        }
        match self.config.push {
            PushSchedule::All => all,
            PushSchedule::OnePeerExponential => {
                let me = murmur_topology::ring_position(&self.id);
                let mut ring: Vec<(u64, I)> = all
                    .into_iter()
                    .map(|j| (murmur_topology::ring_position(&j).wrapping_sub(me), j))
                    .collect();
                ring.sort();
                let at = (self.round % ring.len() as u64) as usize;
                vec![ring.swap_remove(at).1]
            }
            PushSchedule::Random { k } => {
                let mut rng = ChaCha8Rng::seed_from_u64(self.config.seed ^ PUSH_DRAW_SALT);
                rng.set_stream(self.round);
                rand::seq::index::sample(&mut rng, all.len(), k.min(all.len()))
                    .into_iter()
                    .map(|i| all[i].clone())
                    .collect()
            }
        }
    }

    fn push_send(&mut self) {
        let targets = self.push_round_targets();
        let share = 1.0 / (targets.len() as f64 + 1.0);
        let weight = self.push_weight * share;
        self.push_weight = weight;
        self.last_update_round = self.round;
        let bytes = Message::PushShare(PushShare {
            round: self.round,
            weight,
            values: self.model.to_vec(),
        })
        .encode();
        let others: Vec<I> = self
            .neighbours
            .iter()
            .filter(|(j, nb)| nb.hello_seen && !targets.contains(j))
            .map(|(j, _)| j.clone())
            .collect();
        for j in targets {
            self.stats.push_shares_sent += 1;
            // A share is a dense update: it counts as one, saving nothing over dense.
            self.stats.updates_sent += 1;
            self.stats.update_bytes_sent += bytes.len() as u64;
            self.stats.dense_update_bytes += bytes.len() as u64;
            self.send(j, bytes.clone());
        }
        if !others.is_empty() {
            let mark = Message::PushMark(PushMark { round: self.round }).encode();
            for j in others {
                self.send(j, mark.clone());
            }
        }
    }

    // ------------------------------------------------------------------ receiving

    fn on_message(&mut self, now: Micros, from: I, bytes: &[u8]) {
        self.stats.messages_received += 1;
        self.stats.bytes_received += bytes.len() as u64;
        if !self.neighbours.contains_key(&from) {
            self.reject(now, from, RejectReason::NotANeighbour);
            return;
        }
        let message = match Message::decode(bytes, self.max_message_bytes) {
            Ok(m) => m,
            Err(e) => {
                self.reject(now, from, e.into());
                return;
            }
        };
        let result = match message {
            Message::Hello(h) => self.on_hello(now, &from, h),
            Message::Update(u) => self.on_update(now, &from, u),
            Message::SnapshotRequest(r) => self.on_snapshot_request(&from, r),
            Message::Snapshot(s) => self.on_snapshot(now, &from, s),
            Message::PushShare(p) => self.on_push_share(now, &from, p),
            Message::PushMark(m) => self.on_push_mark(now, &from, m),
            Message::Goodbye => {
                self.stats.goodbyes_received += 1;
                self.on_down(now, from.clone());
                Ok(())
            }
        };
        if let Err(reason) = result {
            self.reject(now, from, reason);
        }
    }

    fn check_degree(degree: u32) -> Result<usize, RejectReason> {
        if degree > MAX_DEGREE {
            return Err(RejectReason::InvalidField { what: "degree" });
        }
        Ok(degree as usize)
    }

    fn check_vector(&self, v: &[f32], what: &'static str) -> Result<(), RejectReason> {
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

    fn on_hello(&mut self, now: Micros, from: &I, h: Hello) -> Result<(), RejectReason> {
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
        let fresh = self.is_fresh();
        let kind = self.kind;
        let nb = self.neighbours.get_mut(from).expect("checked by caller");
        let first = !nb.hello_seen;
        nb.hello_seen = true;
        nb.degree = degree;
        let mut want_snapshot = false;
        let mut rewound = false;
        if kind == AlgorithmKind::Choco {
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
        let adopt = fresh && self.adopting.is_none() && h.round > self.round;
        if adopt {
            self.adopting = Some(from.clone());
        }
        if want_snapshot || adopt {
            self.request_snapshot(now, from, adopt);
        }
        if h.reply_wanted {
            self.send_hello(from.clone(), false);
        }
        if kind == AlgorithmKind::Choco {
            self.drain(now, from)?;
        }
        self.check_aggregate_weights(now);
        self.try_begin(false);
        self.check_ready(now);
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

    fn on_update(&mut self, now: Micros, from: &I, u: Update) -> Result<(), RejectReason> {
        if self.kind == AlgorithmKind::PushSum {
            return Err(RejectReason::UnexpectedMessage { what: "update" });
        }
        if u.seq == 0 {
            return Err(RejectReason::InvalidField {
                what: "sequence number",
            });
        }
        let degree = Self::check_degree(u.degree)?;
        let frame = self.decode_frame(&u.frame)?;
        let round = self.round;
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
                nb.heard_round = Some(nb.heard_round.map_or(u.round, |r| r.max(u.round)));
                self.stats.updates_applied += 1;
            }
        } else {
            let buffered = Buffered {
                round: u.round,
                degree: u.degree,
                frame,
            };
            if nb.copy.is_none() {
                Self::buffer(
                    nb,
                    u.seq,
                    buffered,
                    self.config.max_buffered_updates,
                    &mut self.stats,
                );
            } else if u.seq <= nb.applied_seq {
                // Already folded into the copy (a duplicate or a replay): drop it. No resync: a
                // sender that really rewound shows it by reconnecting or in its hello.
                if u.seq <= nb.snapshot_floor {
                    self.stats.superseded_dropped += 1;
                } else {
                    self.stats.duplicates_dropped += 1;
                }
            } else if u.seq == nb.applied_seq + 1 {
                let my_degree = self.neighbours.len();
                let nb = self.neighbours.get_mut(from).expect("checked by caller");
                let aggregate = self
                    .aggregate
                    .as_mut()
                    .map(|s| (s, &mut self.aggregate_weight, my_degree));
                Self::apply_choco(nb, u.seq, &buffered, &mut self.stats, aggregate)?;
                self.drain(now, from)?;
            } else {
                self.stats.gaps_detected += 1;
                Self::buffer(
                    nb,
                    u.seq,
                    buffered,
                    self.config.max_buffered_updates,
                    &mut self.stats,
                );
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

    fn buffer(nb: &mut Neighbour, seq: u64, b: Buffered, max: usize, stats: &mut PeerStats) {
        nb.buffer.insert(seq, b);
        while nb.buffer.len() > max {
            nb.buffer.pop_first();
            stats.buffer_evictions += 1;
        }
    }

    /// Applies one in-order update to a neighbour's copy (or, with aggregate storage, adds
    /// w_ij q_j to the sum); a result that overflows to a non-finite value is refused and
    /// leaves the state untouched.
    fn apply_choco(
        nb: &mut Neighbour,
        seq: u64,
        b: &Buffered,
        stats: &mut PeerStats,
        aggregate: Option<(&mut Vec<f64>, &mut f64, usize)>,
    ) -> Result<(), RejectReason> {
        let copy = nb
            .copy
            .as_mut()
            .expect("applied only to established copies");
        match aggregate {
            None => {
                let mut next = copy.clone();
                b.frame.add_to(&mut next, 1.0);
                if !all_finite(&next) {
                    return Err(RejectReason::NonFinite {
                        what: "neighbour copy after update",
                    });
                }
                *copy = next;
            }
            Some((sum, total, my_degree)) => {
                let w = nb
                    .weight_in_sum
                    .unwrap_or_else(|| metropolis_weight(my_degree, b.degree as usize));
                let q = b.frame.to_dense();
                let next: Vec<f64> = sum
                    .iter()
                    .zip(&q)
                    .map(|(s, q)| s + w * f64::from(*q))
                    .collect();
                if !next.iter().all(|v| v.is_finite()) {
                    return Err(RejectReason::NonFinite {
                        what: "aggregate after update",
                    });
                }
                *sum = next;
                if nb.weight_in_sum.is_none() {
                    nb.weight_in_sum = Some(w);
                    *total += w;
                }
            }
        }
        nb.applied_seq = seq;
        nb.degree = b.degree as usize;
        nb.heard_round = Some(nb.heard_round.map_or(b.round, |r| r.max(b.round)));
        stats.updates_applied += 1;
        Ok(())
    }

    /// A gap in `from`'s sequence numbers: the missing update may only be late (reordering),
    /// so the snapshot is requested only if the gap is still open after `gap_grace`.
    fn gap_check(&mut self, now: Micros, from: &I) {
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
        let token = self.schedule(now + self.config.gap_grace, TimerPurpose::GapCheck);
        self.neighbour_timers.insert(token, from.clone());
    }

    /// Replays buffered updates that follow the copy; checks the gap if one remains.
    fn drain(&mut self, now: Micros, from: &I) -> Result<(), RejectReason> {
        let my_degree = self.neighbours.len();
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
                let aggregate = self
                    .aggregate
                    .as_mut()
                    .map(|s| (s, &mut self.aggregate_weight, my_degree));
                if let Err(e) = Self::apply_choco(nb, seq, &b, &mut self.stats, aggregate) {
                    result = Err(e);
                    break;
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

    fn on_snapshot_request(&mut self, from: &I, r: SnapshotRequest) -> Result<(), RejectReason> {
        let round = self.round;
        let limit = self.config.max_snapshots_per_round;
        let nb = self.neighbours.get_mut(from).expect("checked by caller");
        if nb.served.0 == round {
            if nb.served.1 >= limit {
                return Err(RejectReason::RateLimited);
            }
            nb.served.1 += 1;
        } else {
            nb.served = (round, 1);
        }
        let snapshot = Snapshot {
            nonce: r.nonce,
            seq: self.seq,
            round: if self.seq > 0 {
                self.last_update_round
            } else {
                self.round
            },
            degree: self.neighbours.len() as u32,
            x_hat: self.x_hat.clone(),
            model: (r.want_model && self.config.serve_model).then(|| self.model.to_vec()),
        };
        let bytes = Message::Snapshot(snapshot).encode();
        self.stats.snapshots_sent += 1;
        self.stats.snapshot_bytes_sent += bytes.len() as u64;
        self.send(from.clone(), bytes);
        Ok(())
    }

    fn on_snapshot(&mut self, now: Micros, from: &I, s: Snapshot) -> Result<(), RejectReason> {
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
        nb.pending_snapshot = None;
        nb.pending_wants_model = false;
        nb.degree = degree;
        let newer = nb.copy.is_none() || s.seq >= nb.applied_seq;
        let mut rebuild = false;
        if newer && kind != AlgorithmKind::PushSum && (kind == AlgorithmKind::Choco || s.seq > 0) {
            if let Some(sum) = self.aggregate.as_mut() {
                if nb.weight_in_sum.is_some() {
                    // Its old contribution cannot be taken out of the sum.
                    rebuild = true;
                } else if s.seq > 0 {
                    let w = metropolis_weight(my_degree, degree);
                    let next: Vec<f64> = sum
                        .iter()
                        .zip(&s.x_hat)
                        .map(|(a, x)| a + w * f64::from(*x))
                        .collect();
                    if !next.iter().all(|v| v.is_finite()) {
                        nb.pending_snapshot = Some(s.nonce);
                        return Err(RejectReason::NonFinite {
                            what: "aggregate after snapshot",
                        });
                    }
                    *sum = next;
                    nb.weight_in_sum = Some(w);
                    self.aggregate_weight += w;
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
            if let Some(model) = s.model {
                self.adopt(from.clone(), model, s.round);
            }
        }
        if kind == AlgorithmKind::Choco {
            self.drain(now, from)?;
        }
        self.check_aggregate_weights(now);
        self.try_begin(false);
        self.check_ready(now);
        Ok(())
    }

    /// A fresh peer continues from a neighbour's model. Its public copy jumps from zero to the
    /// adopted model through one dense update (seq 1), so every neighbour's copy stays exact
    /// by the ordinary update path.
    fn adopt(&mut self, from: I, model: Vec<f32>, round: u64) {
        self.model = Array1::from(model);
        self.round = round;
        self.stats.models_adopted += 1;
        if self.kind == AlgorithmKind::Choco {
            let diff: Vec<f32> = self
                .model
                .iter()
                .zip(&self.x_hat)
                .map(|(x, h)| x - h)
                .collect();
            let q = compress::build(&CodecSpec::DenseF32, 0).compress(&diff);
            q.add_to(&mut self.x_hat, 1.0);
            self.seq += 1;
            self.last_update_round = round;
            self.broadcast_update(q.encode(), q.nnz());
        }
        self.out.push(Output::ModelAdopted { from, round });
    }

    fn on_push_mark(&mut self, now: Micros, from: &I, m: PushMark) -> Result<(), RejectReason> {
        if self.kind != AlgorithmKind::PushSum {
            return Err(RejectReason::UnexpectedMessage { what: "push-mark" });
        }
        let nb = self.neighbours.get_mut(from).expect("checked by caller");
        nb.heard_round = Some(nb.heard_round.map_or(m.round, |r| r.max(m.round)));
        self.check_ready(now);
        Ok(())
    }

    fn on_push_share(&mut self, now: Micros, from: &I, p: PushShare) -> Result<(), RejectReason> {
        if self.kind != AlgorithmKind::PushSum {
            return Err(RejectReason::UnexpectedMessage { what: "push-share" });
        }
        self.check_vector(&p.values, "push share")?;
        if !(p.weight.is_finite() && p.weight > 0.0 && p.weight < 1e12) {
            return Err(RejectReason::InvalidField {
                what: "push weight",
            });
        }
        let nb = self.neighbours.get_mut(from).expect("checked by caller");
        if !nb.push_rounds.insert(p.round) {
            self.stats.duplicates_dropped += 1;
            return Ok(());
        }
        while nb.push_rounds.len() > 64 {
            nb.push_rounds.pop_first();
        }
        nb.heard_round = Some(nb.heard_round.map_or(p.round, |r| r.max(p.round)));
        // Mixed on arrival: (numerator, weight) += (ω·v, ω), model = numerator / weight. Every
        // share counts exactly once whenever it arrives, so mass is conserved.
        let w = self.push_weight;
        let new_w = w + p.weight;
        for (x, v) in self.model.iter_mut().zip(&p.values) {
            *x = ((f64::from(*x) * w + f64::from(*v) * p.weight) / new_w) as f32;
        }
        self.push_weight = new_w;
        self.check_ready(now);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send<T: Send>() {}

    #[test]
    fn peer_is_send_so_drivers_can_move_it_to_a_compute_thread() {
        assert_send::<Peer<u32>>();
        assert_send::<Peer<String>>();
    }

    #[test]
    fn config_round_trips_and_validates() {
        let config = PeerConfig {
            mode: Mode::Async {
                max_staleness: 4,
                damping: 0.8,
            },
            clip_radius: Some(1.5),
            ..PeerConfig::default()
        };
        let bytes = postcard::to_stdvec(&config).unwrap();
        assert_eq!(postcard::from_bytes::<PeerConfig>(&bytes).unwrap(), config);
        assert_eq!(config.validate(), Ok(()));
        let bad = PeerConfig {
            algorithm: Algorithm::Choco {
                codec: CodecSpec::DenseF32,
                gamma: 1.5,
            },
            ..PeerConfig::default()
        };
        assert_eq!(bad.validate(), Err(ConfigError::Gamma(1.5)));
        let aggregate_async = PeerConfig {
            copies: CopyStorage::Aggregate,
            ..config
        };
        assert!(matches!(
            aggregate_async.validate(),
            Err(ConfigError::Aggregate(_))
        ));
    }

    #[test]
    fn metropolis_weights_match_the_formula() {
        assert_eq!(metropolis_weight(2, 2), 1.0 / 3.0);
        assert_eq!(metropolis_weight(1, 4), 0.2);
    }
}
