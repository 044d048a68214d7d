//! Configuration of a [`super::Peer`]: the algorithm, its mode and its safety knobs.

use super::CodecSpec;
use super::outer::{OuterConfig, OuterError};
use serde::{Deserialize, Serialize};

use crate::message::AlgorithmKind;
use crate::privacy::{PrivacyConfig, PrivacyError};

/// Largest [`PeerConfig::snapshot_chunk_values`]: 4 Mi values, a 16 MiB chunk frame.
pub const MAX_CHUNK_VALUES: usize = 1 << 22;

/// The driver's clock: microseconds since the driver started (virtual in the simulator).
pub type Micros = u64;

/// The averaging algorithm a peer runs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Algorithm {
    /// CHOCO-SGD (Koloskova, Stich, Jaggi, ICML 2019): send q = Q(x − x̂) compressed by
    /// `codec`, then x ← x + γ Σ_j w_ij (x̂_j − x̂_i).
    Choco {
        /// Any `murmur-compress` codec.
        codec: CodecSpec,
        /// Consensus step size γ in (0, 1]; with a dense codec γ = 1 is exact gossip. With
        /// aggressive compression γ must shrink (the theory asks for γ = O(δ²ω); in practice
        /// 0.2–0.5 at 1% density, see the crate tests).
        gamma: f32,
    },
    /// Exact D-PSGD (Lian et al., NeurIPS 2017): the dense model goes to every neighbour each
    /// round and x ← Σ_j w_ij x_j. The uncompressed baseline.
    Dpsgd,
    /// Stochastic gradient push (Assran et al., ICML 2019): column-stochastic shares of
    /// (weight × model, weight) pushed to out-neighbours; works on directed and time-varying
    /// graphs (see [`PushSchedule`]). Dense; shares are mixed on arrival, and a round ends when
    /// every neighbour's share or marker of it arrived (or at the timeout). Round-tagged only.
    PushSum,
    /// Push-sum with compressed messages: each peer keeps a public copy ẑ of its numerator
    /// z = ω x that every neighbour tracks exactly through compressed differences
    /// q = Q(z − ẑ) sent to all neighbours each round (as CHOCO does with x̂), and the push
    /// schedule decides only the shares: a target gets share a = 1/(targets + 1) of
    /// γ·(ẑ, ω), the sender keeps a and gives away γ(1 − a) of its own. Mass and weight are
    /// conserved exactly (columns sum to one), so the de-biased models still average on
    /// directed and time-varying schedules; with a dense codec and γ = 1 it is exactly
    /// [`Algorithm::PushSum`]. After Taheri, Mokhtari, Hassani, Pedarsani, "Quantized
    /// decentralized stochastic learning over directed graphs" (ICML 2020); the arrival-time
    /// mixing is murmur's, as for push-sum. Round-tagged only.
    CompressedPushSum {
        /// Any `murmur-compress` codec.
        codec: CodecSpec,
        /// Consensus step size γ in (0, 1] (as CHOCO's).
        gamma: f32,
    },
}

impl Algorithm {
    /// The names [`Algorithm::from_name`] accepts, for help texts and errors.
    pub const NAMES: &'static str = "choco, dpsgd, push-sum, compressed-push-sum";

    /// The algorithm a configuration names: `choco`, `dpsgd`, `push-sum` or
    /// `compressed-push-sum`; the CHOCO family takes `codec` and `gamma`, the others ignore
    /// them. Both drivers read their settings through this.
    pub fn from_name(name: &str, codec: &str, gamma: f32) -> Result<Algorithm, AlgorithmError> {
        let codec = || {
            codec
                .parse::<CodecSpec>()
                .map_err(|e| AlgorithmError::Codec {
                    codec: codec.to_string(),
                    error: e.to_string(),
                })
        };
        Ok(match name {
            "choco" => Algorithm::Choco {
                codec: codec()?,
                gamma,
            },
            "dpsgd" | "d-psgd" => Algorithm::Dpsgd,
            "push-sum" | "sgp" => Algorithm::PushSum,
            "compressed-push-sum" => Algorithm::CompressedPushSum {
                codec: codec()?,
                gamma,
            },
            other => return Err(AlgorithmError::Unknown(other.to_string())),
        })
    }

    /// The wire-level kind (exchanged in hellos).
    pub fn kind(&self) -> AlgorithmKind {
        match self {
            Algorithm::Choco { .. } => AlgorithmKind::Choco,
            Algorithm::Dpsgd => AlgorithmKind::Dpsgd,
            Algorithm::PushSum => AlgorithmKind::PushSum,
            Algorithm::CompressedPushSum { .. } => AlgorithmKind::CompressedPushSum,
        }
    }
}

/// How a peer decides that a round's gossip is complete.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// After sending its round-r update the peer waits until every neighbour's round-r update
    /// has arrived, or `timeout` has passed since its own send: a slow neighbour delays no one
    /// by more than the timeout and there is no global barrier. Updates that arrive late are
    /// still applied (in sequence order) to that neighbour's copy, so copies stay exact.
    RoundTagged {
        /// Per-round wait bound, microseconds.
        timeout: Micros,
    },
    /// The peer mixes right after sending with whatever copies it holds, unless it has run
    /// too far ahead: before mixing round r it waits, up to `timeout`, until at least half of
    /// its neighbours have sent an update of round r − `max_staleness` or later. This bounds
    /// its lead over the neighbourhood the way stale synchronous parallel bounds a worker's
    /// (Ho et al., NeurIPS 2013), while, like backup workers (Chen et al., 2016), the slower
    /// half never sets the pace: a straggler is simply not waited for. A contribution more
    /// than `max_staleness` rounds old is left out of the mix (the copy stays exact and rejoins
    /// once it catches up); fresher late ones are damped by `damping^staleness` (1.0: no
    /// damping). Without the bound, a network slower than the compute leaves every copy
    /// dozens of rounds stale and the peers train alone.
    Async {
        /// Largest staleness (rounds) still mixed, and the lead over half the neighbours at
        /// which the peer waits.
        max_staleness: u64,
        /// Per-round damping factor in (0, 1].
        damping: f32,
        /// Longest wait for the neighbours to come within `max_staleness`, microseconds.
        #[serde(default = "default_async_timeout")]
        timeout: Micros,
    },
}

/// One second: the asynchronous mode's wait bound when a configuration names none (the
/// round-tagged default's).
fn default_async_timeout() -> Micros {
    1_000_000
}

/// Whom a push-sum peer pushes to each round when the driver gives no explicit targets
/// ([`super::Input::PushTargets`] overrides it).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PushSchedule {
    /// Every neighbour, every round (a static undirected graph).
    #[default]
    All,
    /// One neighbour per round, cycling through the neighbours in clockwise order on the hash
    /// ring (`murmur_topology::ring_position`) from this peer. Over the exponential neighbour
    /// rule's edges (successor, fingers at ring distances 2^(64−ℓ), predecessor) this is the
    /// one-peer exponential graph over the ring (Ying et al., NeurIPS 2021): one message per
    /// peer per round, and the union of a period is the whole neighbour graph.
    OnePeerExponential,
    /// `k` neighbours drawn afresh each round from the peer's seed and the round (Epidemic
    /// Learning, de Vos et al., NeurIPS 2023, over the neighbour set).
    Random {
        /// Targets per round (≥ 1).
        k: usize,
    },
}

/// Where a CHOCO peer keeps what it knows of its neighbours' public copies.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CopyStorage {
    /// One copy of x̂_j per neighbour: (2 + degree) model-sized vectors. Supports per-neighbour
    /// clipping, staleness damping, and re-weighting or removing one neighbour locally.
    #[default]
    PerNeighbour,
    /// The memory-efficient form: only s = Σ_j w_ij x̂_j (three model-sized vectors whatever
    /// the degree). A neighbour leaving, changing degree or needing a resync cannot be undone
    /// inside the sum, so the sum is rebuilt from fresh snapshots of every neighbour (degree
    /// dense snapshots per churn event). CHOCO, round-tagged, without clipping only.
    Aggregate,
    /// Chosen by the model's size: `Aggregate` from [`AUTO_AGGREGATE_PARAMS`] parameters up
    /// when the settings allow it (CHOCO, round-tagged, no clipping), `PerNeighbour`
    /// otherwise. Below that size the degree's copies are cheap and churn is handled locally;
    /// above it (2 + degree) copies are what bounds a peer's memory (at degree 8 and 10M
    /// parameters, 400 MB of copies against 120 MB for the sum), and a churn event's
    /// rebuild costs chunked snapshots that the copies would have saved.
    Auto,
}

/// From this many parameters [`CopyStorage::Auto`] keeps the aggregate sum.
pub const AUTO_AGGREGATE_PARAMS: usize = 1 << 20;

impl CopyStorage {
    /// The storage a peer of `dim` parameters with `config` uses (resolves `Auto`).
    pub fn resolve(config: &PeerConfig, dim: usize) -> CopyStorage {
        match config.copies {
            CopyStorage::Auto => {
                let allowed = matches!(config.algorithm, Algorithm::Choco { .. })
                    && config.clip_radius.is_none()
                    && matches!(config.mode, Mode::RoundTagged { .. });
                if allowed && dim >= AUTO_AGGREGATE_PARAMS {
                    CopyStorage::Aggregate
                } else {
                    CopyStorage::PerNeighbour
                }
            }
            other => other,
        }
    }
}

/// What a joining peer (fresh, past no round, `adopt_on_join`) starts from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum JoinModel {
    /// CHOCO: the average of its neighbours' public copies x̂_j, which it downloads anyway to
    /// keep them exact, so the model costs no byte beyond the copies and comes from every
    /// neighbour in parallel (no single donor is trusted or waited on). Only neighbours
    /// whose copy is not zero and whose hello reported a round ahead count; the other
    /// algorithms keep no exact copies of models and use [`JoinModel::Donor`].
    #[default]
    Average,
    /// One donor's model x (snapshot with `want_model`), from the direct neighbour furthest
    /// ahead (see `lifecycle`).
    Donor,
}

/// Everything that configures a peer. `Default` is CHOCO with an adaptive threshold-sign codec
/// at 1% density, γ = 0.4, one local step per round, round-tagged with a 1 s timeout, privacy
/// off.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PeerConfig {
    /// Averaging algorithm.
    pub algorithm: Algorithm,
    /// Per-neighbour copies or the aggregate sum (CHOCO only).
    pub copies: CopyStorage,
    /// H: local steps (minibatches) per gossip round; 0 gives pure averaging.
    pub local_steps: u32,
    /// Round-tagged or asynchronous.
    pub mode: Mode,
    /// Push-sum: whom to push to each round.
    pub push: PushSchedule,
    /// Round-tagged CHOCO / D-PSGD: ask for the next round's compute as soon as this round's
    /// update is sent, so local steps overlap the wait for the neighbours (the gradient is
    /// then one mix stale; CHOCO-SGD's gradient and gossip steps are independent). The next
    /// update still goes out only after this round's mix.
    pub overlap_compute: bool,
    /// ClippedGossip (He, Karimireddy, Jaggi 2022): clip each neighbour's contribution
    /// (x̂_j − x̂_i) to this L2 radius before mixing. `None`: no clipping.
    pub clip_radius: Option<f32>,
    /// Peer-level differential privacy: each round's local update is clipped to
    /// `privacy.clip` and noised with N(0, (σ · clip)²) before it touches the model, so
    /// nothing the peer sends or a driver publishes is more than post-processing of noised
    /// updates (see [`crate::privacy`]). `None`: off. (This replaces `noise_std`, which
    /// added unclipped noise to what was sent: no bound on sensitivity, no accountant, and
    /// the model itself stayed exact.)
    pub privacy: Option<PrivacyConfig>,
    /// DiLoCo outer step (Douillard et al. 2023): the round's local steps become a
    /// pseudo-gradient that an outer Nesterov optimizer applies before the update is sent
    /// (see `outer`). `None`: off, the local steps are the update.
    pub outer: Option<OuterConfig>,
    /// Emit [`super::Output::CheckpointDue`] every this many rounds (0: never).
    pub checkpoint_every: u64,
    /// Seed of every random choice the peer makes (codec, privacy noise unless the driver sets
    /// a secret key with [`super::Peer::set_noise_key`]).
    pub seed: u64,
    /// Fingerprint of the model family, see [`crate::message::fingerprint`]; peers with another
    /// fingerprint are rejected.
    pub fingerprint: u64,
    /// Largest accepted frame; `None`: 8 × dim + 4096 (a snapshot carrying x̂ and x).
    pub max_message_bytes: Option<usize>,
    /// How long a started peer waits for its neighbours' hellos (and a joiner for the model it
    /// adopts) before its first round.
    pub startup_timeout: Micros,
    /// Resend a snapshot request not answered after this long.
    pub snapshot_timeout: Micros,
    /// A gap in a neighbour's sequence numbers is given this long to close by itself (the
    /// missing update may just be late) before a snapshot is requested; 0: request at once.
    pub gap_grace: Micros,
    /// Out-of-order updates kept per neighbour while a gap is being repaired.
    pub max_buffered_updates: usize,
    /// A fresh peer whose neighbours are past round 0 adopts a neighbour's model before its
    /// first step.
    pub adopt_on_join: bool,
    /// Answer snapshot requests that ask for the model x (needed by joiners).
    pub serve_model: bool,
    /// Snapshot requests served per neighbour per round (more are rejected as rate-limited).
    pub max_snapshots_per_round: u32,
    /// What a joiner starts from: the average of its neighbours' copies or one donor's model.
    pub join_model: JoinModel,
    /// Values per snapshot chunk: a snapshot with more values (x̂, plus x when asked) is sent
    /// as a manifest and chunks of this many values (4 bytes each), so no frame outgrows
    /// the transport's cap whatever the model's size.
    pub snapshot_chunk_values: usize,
    /// Chunk requests a receiver keeps outstanding per snapshot: the share of a donor's
    /// uplink one download can take is this many chunks per round trip. A daemon's round
    /// trip includes the donor's local step (requests wait while it computes), so the window
    /// is wide: 16 MiB in flight at the default chunk size; at 10M parameters a copy takes
    /// three round trips rather than eleven with a window of 4.
    pub snapshot_window: u32,
    /// Misbehaviour policy: a neighbour with this many rejected frames within
    /// `misbehaviour_window` rounds is excluded for good. Only frames an honest peer never
    /// produces count (undecodable frames, wrong dimensions, non-finite values, codec errors,
    /// out-of-range fields, messages its algorithm does not use, mismatched hellos); losses,
    /// duplicates, late snapshots and rate-limited requests do not. The excluded neighbour is
    /// dropped as on [`super::Input::NeighbourDown`] (no longer waited for, weights
    /// recomputed), sent a goodbye, refused on later [`super::Input::NeighbourUp`], and
    /// reported once as [`super::Output::Misbehaving`] so the driver can disconnect or ban it.
    /// 0: never exclude.
    pub misbehaviour_threshold: u32,
    /// Window of the misbehaviour policy, in this peer's rounds (> 0 when the policy is on).
    pub misbehaviour_window: u64,
}

impl Default for PeerConfig {
    fn default() -> Self {
        PeerConfig {
            algorithm: Algorithm::Choco {
                codec: CodecSpec::AdaptiveThreshold { density: 0.01 },
                gamma: 0.4,
            },
            copies: CopyStorage::PerNeighbour,
            local_steps: 1,
            mode: Mode::RoundTagged { timeout: 1_000_000 },
            push: PushSchedule::All,
            overlap_compute: false,
            clip_radius: None,
            privacy: None,
            outer: None,
            checkpoint_every: 0,
            seed: 0,
            fingerprint: 0,
            max_message_bytes: None,
            startup_timeout: 2_000_000,
            snapshot_timeout: 500_000,
            gap_grace: 100_000,
            max_buffered_updates: 32,
            adopt_on_join: true,
            serve_model: true,
            max_snapshots_per_round: 2,
            join_model: JoinModel::Average,
            snapshot_chunk_values: 1 << 18,
            snapshot_window: 16,
            misbehaviour_threshold: 8,
            misbehaviour_window: 32,
        }
    }
}

/// An algorithm setting [`Algorithm::from_name`] cannot read.
#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum AlgorithmError {
    /// No such algorithm.
    #[error("unknown algorithm {0:?}: expected one of {names}", names = Algorithm::NAMES)]
    Unknown(String),
    /// The codec spec does not parse.
    #[error("codec {codec:?}: {error}")]
    Codec {
        /// The spec as given.
        codec: String,
        /// Why it does not parse.
        error: String,
    },
}

/// A configuration value out of range.
#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum ConfigError {
    /// γ outside (0, 1].
    #[error("consensus step gamma = {0} must be in (0, 1]")]
    Gamma(f32),
    /// Damping outside (0, 1].
    #[error("async damping = {0} must be in (0, 1]")]
    Damping(f32),
    /// A privacy setting out of range.
    #[error(transparent)]
    Privacy(#[from] PrivacyError),
    /// Privacy with no local step: the data is never touched, so there is nothing to protect
    /// and the noise would only be harm.
    #[error(
        "privacy needs local_steps >= 1 (with 0 the peer never touches its data: nothing to protect)"
    )]
    PrivacyWithoutSteps,
    /// An outer-step setting out of range or a combination it cannot run with.
    #[error(transparent)]
    Outer(#[from] OuterError),
    /// Non-positive or non-finite clip radius.
    #[error("clip_radius = {0} must be finite and > 0")]
    ClipRadius(f32),
    /// The initial model's length differs from the learner's dimension.
    #[error("initial model has {got} parameters, the learner trains {expected}")]
    InitDimension {
        /// Learner dimension.
        expected: usize,
        /// Initial model length.
        got: usize,
    },
    /// The initial model has NaN or infinite entries.
    #[error("initial model has non-finite entries")]
    InitNonFinite,
    /// A combination the aggregate copy storage cannot support.
    #[error("aggregate copy storage needs {0}")]
    Aggregate(&'static str),
    /// Push-sum without round pacing: a fast peer gives its weight away faster than it gets
    /// weight back, and four daemons on loopback ended at 63% accuracy with models far apart.
    #[error(
        "push-sum runs round-tagged only (its rounds are paced by shares and round markers); the asynchronous mode is for CHOCO and D-PSGD"
    )]
    PushSumAsync,
    /// A push schedule other than `all` with an algorithm that does not push.
    #[error(
        "a push schedule (one-peer-exponential, random:K) needs the push-sum or compressed-push-sum algorithm"
    )]
    PushSchedule,
    /// A setter that only works before [`super::Input::Start`] was called after it.
    #[error("{0} must be called before Start")]
    Started(&'static str),
    /// A chunk size outside 1..=[`MAX_CHUNK_VALUES`].
    #[error("snapshot_chunk_values = {0} must be in 1..={MAX_CHUNK_VALUES}")]
    ChunkValues(usize),
    /// Zero-sized model or message cap.
    #[error("{0} must be > 0")]
    Zero(&'static str),
}

impl PeerConfig {
    /// Checks every value (called by [`super::Peer::new`]).
    pub fn validate(&self) -> Result<(), ConfigError> {
        if let Algorithm::Choco { gamma, .. } | Algorithm::CompressedPushSum { gamma, .. } =
            &self.algorithm
            && !(*gamma > 0.0 && *gamma <= 1.0)
        {
            return Err(ConfigError::Gamma(*gamma));
        }
        if let Mode::Async { damping, .. } = &self.mode
            && !(*damping > 0.0 && *damping <= 1.0)
        {
            return Err(ConfigError::Damping(*damping));
        }
        if let Some(privacy) = &self.privacy {
            privacy.validate()?;
            if self.local_steps == 0 {
                return Err(ConfigError::PrivacyWithoutSteps);
            }
        }
        if let Some(outer) = &self.outer {
            outer.validate()?;
            if self.algorithm.kind().pushes() {
                return Err(OuterError::PushSum.into());
            }
            if self.local_steps == 0 {
                return Err(OuterError::NoLocalSteps.into());
            }
        }
        if let Some(r) = self.clip_radius
            && !(r.is_finite() && r > 0.0)
        {
            return Err(ConfigError::ClipRadius(r));
        }
        if self.copies == CopyStorage::Aggregate {
            if !matches!(self.algorithm, Algorithm::Choco { .. }) {
                return Err(ConfigError::Aggregate("the CHOCO algorithm"));
            }
            if self.clip_radius.is_some() {
                return Err(ConfigError::Aggregate(
                    "clipping off (it clips per neighbour)",
                ));
            }
            if !matches!(self.mode, Mode::RoundTagged { .. }) {
                return Err(ConfigError::Aggregate(
                    "round-tagged mode (staleness is per neighbour)",
                ));
            }
        }
        let pushes = self.algorithm.kind().pushes();
        if pushes && matches!(self.mode, Mode::Async { .. }) {
            return Err(ConfigError::PushSumAsync);
        }
        if self.push != PushSchedule::All && !pushes {
            return Err(ConfigError::PushSchedule);
        }
        if self.push == (PushSchedule::Random { k: 0 }) {
            return Err(ConfigError::Zero("push random k"));
        }
        if self.max_message_bytes == Some(0) {
            return Err(ConfigError::Zero("max_message_bytes"));
        }
        if self.snapshot_chunk_values == 0 || self.snapshot_chunk_values > MAX_CHUNK_VALUES {
            return Err(ConfigError::ChunkValues(self.snapshot_chunk_values));
        }
        if self.snapshot_window == 0 {
            return Err(ConfigError::Zero("snapshot_window"));
        }
        if self.max_buffered_updates == 0 {
            return Err(ConfigError::Zero("max_buffered_updates"));
        }
        if self.misbehaviour_threshold > 0 && self.misbehaviour_window == 0 {
            return Err(ConfigError::Zero("misbehaviour_window"));
        }
        Ok(())
    }
}

/// What replaced a removed `PeerConfig` key (a driver that reads configuration files refuses
/// the old key with this message instead of serde's "unknown field"). `None` for any other key.
pub fn removed_key(key: &str) -> Option<&'static str> {
    match key {
        "noise_std" => Some(
            "noise_std was removed: Gaussian noise on what is sent, without clipping or an \
             accountant, bounded nothing and left the model exact. Use privacy = { clip = C, \
             noise_multiplier = SIGMA, delta = 1e-5 } instead (peer-level differential privacy of \
             each round's clipped update, with epsilon reported)",
        ),
        _ => None,
    }
}
