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
//! - **Compressed push-sum** (after Taheri et al., ICML 2020): push-sum whose numerator
//!   z_i = ω_i x_i travels as CHOCO's model does, q_i = Q(z_i − ẑ_i) to every neighbour each
//!   round with the sender's weight and the receiver's share; the push schedule picks only who
//!   gets a share. A receiver folds q_i into its copy ẑ_i and adds γ·a·(ẑ_i, ω_i); the sender
//!   gives away γ(1 − a_ii)·(ẑ_i, ω_i). Columns sum to one, so mass and weight are conserved
//!   exactly and the de-biased models z/ω average; dense with γ = 1 it is push-sum.
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
//!
//! # Privacy
//! With [`PeerConfig::privacy`] set, the round's local update Δ = x_after − x_before is
//! clipped to L2 norm C and Gaussian noise N(0, (σC)²) per coordinate is added, inside the
//! call that ran the local steps, before anything is sent or can be read: the model a driver
//! ever sees, every update, share and snapshot, and every checkpoint's model are then
//! post-processing of noised updates. With `overlap_compute` the next round's steps run while
//! this round mixes, and they are noised the moment they finish, so a snapshot answered or a
//! model published in between sees the noised model too. [`Peer::privacy_spent`] gives the
//! (ε, δ) of the updates released so far, peer-level (the unit is the peer's whole local
//! dataset). What this protects, what it does not (the local steps' intermediate states,
//! the optimizer state in checkpoints, timing) and why is in [`crate::privacy`].
//!
//! # Layout
//! The peer is one state machine split by the sub-state each file owns, with dispatch here
//! ([`Peer::handle`] and the message dispatch):
//! - `io`: the driver-facing types ([`Input`], [`Output`], [`RejectReason`], [`PeerPhase`],
//!   [`NeighbourInfo`]);
//! - `neighbours`: the neighbour table (per-neighbour state, out-of-order buffer, snapshot
//!   quota), edges up and down, and the misbehaviour policy;
//! - `copies`: keeping the neighbour copies exact (updates, gaps, snapshots);
//! - `aggregate`: the aggregate sum s = Σ_j w_ij x̂_j of [`CopyStorage::Aggregate`];
//! - `round`: the round cycle (compute, send, wait, mix, complete);
//! - `push_sum`: push-sum weight, targets, shares and markers;
//! - `lifecycle`: start, the hello handshake, adopting a model when joining, shutdown;
//! - `timers`: the timer tokens and what each pending one is for;
//! - `checkpoint`, `config`, `stats`: what a peer saves, is configured with, and counts.

mod aggregate;
mod checkpoint;
mod config;
mod copies;
mod io;
mod lifecycle;
mod neighbours;
mod outer;
mod push_sum;
mod round;
mod stats;
#[cfg(feature = "testing")]
pub mod testing;
mod timers;
mod transfer;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Debug;
use std::hash::Hash;

use murmur_compress as compress;

use compress::Compressor;
pub use compress::{CodecSpec, DecodeError};
use ndarray::Array1;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

pub use crate::privacy::{PrivacyConfig, PrivacySpent};
pub use checkpoint::{CHECKPOINT_FORMAT, CheckpointError, PeerCheckpoint, RngState};
pub use config::{
    AUTO_AGGREGATE_PARAMS, Algorithm, AlgorithmError, ConfigError, CopyStorage, JoinModel,
    MAX_CHUNK_VALUES, Micros, Mode, PeerConfig, PushSchedule, removed_key,
};
pub use io::{Input, NeighbourInfo, Output, PeerPhase, RejectReason};
pub use outer::{OuterConfig, OuterError, outer_step};
pub use stats::{LinkStats, PeerStats, RejectCounts, UpdateFigures};
pub use timers::TimerToken;

use aggregate::Aggregate;
use neighbours::Neighbour;
use push_sum::PushSum;
use timers::Timers;

use crate::learner::{Evaluation, LocalLearner};
use crate::message::{AlgorithmKind, Message, Update};
use crate::seed;

/// Largest degree a neighbour may report (a sanity bound on an untrusted field).
pub const MAX_DEGREE: u32 = 1 << 16;

/// Metropolis–Hastings weight 1 / (1 + max(d_i, d_j)) (same formula as
/// `murmur_topology::metropolis_weight`).
pub fn metropolis_weight(deg_i: usize, deg_j: usize) -> f64 {
    1.0 / (1.0 + deg_i.max(deg_j) as f64)
}

/// Where a peer is in its life and in its round.
#[derive(Debug)]
enum Phase<I> {
    /// Created, not started.
    Idle,
    /// Started, waiting for every neighbour's hello (and, joining, the model it adopts).
    Starting,
    /// Waiting for [`Input::ComputeGranted`] to run this round's local steps.
    WantsCompute,
    /// This round's update is sent; waiting for the neighbours' updates of `round`.
    Mixing {
        /// The round being mixed.
        round: u64,
        /// Neighbours whose update (or share, or marker) of the round is still missing.
        waiting: BTreeSet<I>,
        /// How many of them may still be missing when the round mixes: 0 round-tagged, half
        /// the neighbours waited for asynchronous (see [`Mode::Async`]).
        may_lag: usize,
    },
    /// Shut down: inputs are ignored.
    Stopped,
}

/// One murmur peer. See the [module docs](self) for the algorithm.
///
/// # Driving contract
/// 1. Create with [`Peer::new`]; optionally [`Peer::restore`] a checkpoint (before anything
///    else).
/// 2. Report edges with [`Input::NeighbourUp`] / [`Input::NeighbourDown`] whenever they change
///    (before or after `Start`). A peer that restarts must appear to its neighbours as down then
///    up again (a new connection does this naturally). A driver with relayed connections also
///    reports, with [`Input::LinkClass`], which peers are reached only through a relay, when
///    that is known and whenever it changes.
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
/// `testing::LockStep` (feature `testing`) is a complete lock-step driver of this kind.
#[derive(Debug)]
pub struct Peer<I> {
    /// This peer's id (an edge to itself is ignored).
    id: I,
    /// The validated configuration.
    config: PeerConfig,
    /// `config.algorithm.kind()`, the algorithm named in hellos (peers must agree on it).
    kind: AlgorithmKind,
    /// Runs the local steps on the model and evaluates it.
    learner: Box<dyn LocalLearner>,
    /// Parameter count; every vector and frame received is checked against it.
    dim: usize,
    /// Frames larger than this are rejected unread (configured, or 8 × dim + 4096).
    max_message_bytes: usize,
    /// Length of a dense update frame, what the compression counters compare against.
    dense_update_len: usize,
    /// The model x_i (push-sum: the de-biased model).
    model: Array1<f32>,
    /// The public copy x̂_i, bit for bit what every neighbour holds of this peer (D-PSGD: the
    /// last model sent; push-sum: unused zeros).
    x_hat: Vec<f32>,
    /// Aggregate storage only: s = Σ_j w_ij x̂_j, held instead of per-neighbour copies.
    aggregate: Option<Aggregate>,
    /// Push-sum weight and the driver's explicit push targets.
    push: PushSum<I>,
    /// Compresses each update; seeded from the config seed and, after a restore, the round.
    compressor: Box<dyn Compressor>,
    /// Generator of the privacy noise added to updates (its position is checkpointed; seeded
    /// from the config seed, or from the driver's secret [`Peer::set_noise_key`]).
    rng: ChaCha8Rng,
    /// Next round to run (rounds completed, or the round adopted by a joiner).
    round: u64,
    /// Sequence number of the last update sent; 0 while x̂_i is still zero.
    seq: u64,
    /// Round tag of the last update (or push share) sent, which snapshots report.
    last_update_round: u64,
    /// Figures of the last update sent (None before the first).
    last_update: Option<UpdateFigures>,
    /// Local steps taken over the peer's life (a peer that stepped no longer adopts).
    steps_taken: u64,
    /// Mean local loss of the round under way, reported when it completes.
    round_loss: f32,
    /// An [`Output::WantCompute`] is outstanding (at most one is).
    compute_requested: bool,
    /// With overlap: the loss of the next round's local steps, already run while this round
    /// mixes; its update goes out when this round completes.
    banked_loss: Option<f32>,
    /// Restored from a checkpoint, so it resumes its own model and never adopts one.
    restored: bool,
    /// The neighbour whose model this joining peer is waiting for.
    adopting: Option<I>,
    /// How often the startup deadline was re-armed for that adoption (bounded by
    /// `lifecycle::MAX_ADOPTION_WAITS`).
    adoption_waits: u32,
    /// Peers the driver said are reached only through a relay ([`Input::LinkClass`]): never
    /// asked for a model download. Kept by id, edges or not, until the driver says otherwise.
    relayed: BTreeSet<I>,
    /// Where the peer is in its life and its round.
    phase: Phase<I>,
    /// What the peer knows of each current neighbour, in id order (the fixed order of every
    /// mix, so results do not depend on arrival order).
    neighbours: BTreeMap<I, Neighbour>,
    /// Neighbours excluded by the misbehaviour policy: refused when they come up again.
    excluded: BTreeSet<I>,
    /// Pending timers and what each is for.
    timers: Timers<I>,
    /// Nonce of the next snapshot request (from 1), matched against the answer.
    next_nonce: u64,
    /// x̂ as last frozen for a chunked snapshot, shared by the transfers at its sequence
    /// number (see `transfer`).
    frozen: Option<transfer::FrozenCopy>,
    /// [`PeerStats::snapshot_chunks_received`] when the startup deadline last fired: a join
    /// whose downloads still progress is waited for.
    startup_progress: u64,
    /// Model-sized buffers reused from round to round.
    scratch: Scratch,
    /// Velocity of the DiLoCo outer step (`PeerConfig::outer`; empty while off).
    outer_velocity: Vec<f32>,
    /// Counters.
    stats: PeerStats,
    /// Outputs of the input being handled, returned by [`Peer::handle`].
    out: Vec<Output<I>>,
}

/// Model-sized work buffers a round needs and keeps for the next (allocated on first use).
#[derive(Debug, Default)]
struct Scratch {
    /// x before the round's local steps (the divergence guard restores it; privacy noises
    /// the difference).
    before_steps: Vec<f32>,
    /// What the round's update compresses: x − x̂ (CHOCO) or x.
    update_input: Vec<f32>,
}

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
        let rng = ChaCha8Rng::seed_from_u64(seed::derive(config.seed, seed::stream::NOISE));
        Ok(Peer {
            id,
            kind,
            learner,
            dim,
            max_message_bytes,
            dense_update_len,
            model: init,
            x_hat: vec![0.0; dim],
            aggregate: (CopyStorage::resolve(&config, dim) == CopyStorage::Aggregate)
                .then(|| Aggregate::new(dim)),
            push: PushSum::new(),
            compressor,
            rng,
            round: 0,
            seq: 0,
            last_update_round: 0,
            last_update: None,
            steps_taken: 0,
            round_loss: f32::NAN,
            compute_requested: false,
            banked_loss: None,
            restored: false,
            adopting: None,
            adoption_waits: 0,
            relayed: BTreeSet::new(),
            phase: Phase::Idle,
            neighbours: BTreeMap::new(),
            excluded: BTreeSet::new(),
            timers: Timers::new(),
            next_nonce: 1,
            frozen: None,
            startup_progress: 0,
            scratch: Scratch::default(),
            outer_velocity: Vec::new(),
            stats: PeerStats::default(),
            out: Vec::new(),
            config,
        })
    }

    fn build_compressor(config: &PeerConfig, round: u64) -> Box<dyn Compressor> {
        let spec = match &config.algorithm {
            Algorithm::Choco { codec, .. } | Algorithm::CompressedPushSum { codec, .. } => {
                codec.clone()
            }
            Algorithm::Dpsgd | Algorithm::PushSum => CodecSpec::DenseF32,
        };
        compress::build(
            &spec,
            seed::derive(config.seed ^ round, seed::stream::CODEC),
        )
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
            relayed: self.relayed.contains(id),
        })
    }
    /// What was counted on the edge to neighbour `id` since it came up.
    pub fn link_stats(&self, id: &I) -> Option<&LinkStats> {
        self.neighbours.get(id).map(|nb| &nb.link)
    }
    /// The last update this peer sent: its entries, and the residual it left unsent.
    pub fn last_update(&self) -> Option<UpdateFigures> {
        self.last_update
    }
    /// Push-sum weight (1 for the other algorithms).
    pub fn push_weight(&self) -> f64 {
        self.push.weight
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
    /// With privacy on, the (ε, δ) guarantee of the noised updates this peer object released
    /// ([`PeerStats::private_rounds`]; a restored checkpoint does not carry the releases of
    /// earlier processes, which a resuming driver adds itself, see [`crate::privacy`]).
    pub fn privacy_spent(&self) -> Option<PrivacySpent> {
        self.config
            .privacy
            .map(|p| p.spent(self.stats.private_rounds))
    }

    // ------------------------------------------------------------------ mutators

    /// Replaces the key of the privacy-noise generator (position 0 of a fresh ChaCha8 stream)
    /// with a secret one. Noise an observer can regenerate protects nothing, and the default
    /// key derives from [`PeerConfig::seed`]; a driver that protects real data calls this
    /// before [`Input::Start`] (after [`Peer::restore`], whose generator position would
    /// otherwise replay noise already spent on the updates sent after that checkpoint) with
    /// 32 bytes from the operating system, at every start. Refused once started.
    pub fn set_noise_key(&mut self, key: [u8; 32]) -> Result<(), ConfigError> {
        if !matches!(self.phase, Phase::Idle) {
            return Err(ConfigError::Started("set_noise_key"));
        }
        self.rng = ChaCha8Rng::from_seed(key);
        Ok(())
    }

    // ------------------------------------------------------------------ dispatch

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
            Input::PushTargets(targets) => self.push.targets = Some(targets),
            Input::Shutdown => self.on_shutdown(),
            Input::LinkClass { peer, relayed } => self.on_link_class(now, peer, relayed),
        }
        std::mem::take(&mut self.out)
    }

    /// Hands a frame to the driver (every frame goes out through here, for the counters).
    fn send(&mut self, to: I, bytes: Vec<u8>) {
        self.stats.messages_sent += 1;
        self.stats.bytes_sent += bytes.len() as u64;
        if let Some(nb) = self.neighbours.get_mut(&to) {
            nb.link.messages_sent += 1;
            nb.link.bytes_sent += bytes.len() as u64;
        }
        self.out.push(Output::Send { to, bytes });
    }

    /// Validates a frame's sender and envelope, then dispatches it by kind.
    fn on_message(&mut self, now: Micros, from: I, bytes: &[u8]) {
        self.stats.messages_received += 1;
        self.stats.bytes_received += bytes.len() as u64;
        let Some(nb) = self.neighbours.get_mut(&from) else {
            self.reject(now, from, RejectReason::NotANeighbour);
            return;
        };
        nb.link.messages_received += 1;
        nb.link.bytes_received += bytes.len() as u64;
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
            Message::PushUpdate(p) => self.on_push_update(now, &from, p),
            Message::SnapshotManifest(m) => self.on_manifest(now, &from, m),
            Message::ChunkRequest(r) => self.on_chunk_request(&from, r),
            Message::SnapshotChunk(c) => self.on_chunk(now, &from, c),
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
                timeout: 250_000,
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
    fn auto_storage_keeps_the_sum_for_large_models_the_settings_allow() {
        let auto = PeerConfig {
            copies: CopyStorage::Auto,
            ..PeerConfig::default()
        };
        let big = AUTO_AGGREGATE_PARAMS;
        assert_eq!(
            CopyStorage::resolve(&auto, big - 1),
            CopyStorage::PerNeighbour
        );
        assert_eq!(CopyStorage::resolve(&auto, big), CopyStorage::Aggregate);
        let clipped = PeerConfig {
            clip_radius: Some(1.0),
            ..auto.clone()
        };
        assert_eq!(
            CopyStorage::resolve(&clipped, big),
            CopyStorage::PerNeighbour
        );
        let dpsgd = PeerConfig {
            algorithm: Algorithm::Dpsgd,
            ..auto.clone()
        };
        assert_eq!(CopyStorage::resolve(&dpsgd, big), CopyStorage::PerNeighbour);
        assert_eq!(auto.validate(), Ok(()), "auto never refuses a combination");
        // An explicit choice is kept whatever the size.
        let explicit = PeerConfig::default();
        assert_eq!(
            CopyStorage::resolve(&explicit, big),
            CopyStorage::PerNeighbour
        );
    }

    #[test]
    fn metropolis_weights_match_the_formula() {
        assert_eq!(metropolis_weight(2, 2), 1.0 / 3.0);
        assert_eq!(metropolis_weight(1, 4), 0.2);
    }
}
