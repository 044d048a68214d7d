//! What a peer saves to resume exactly where it stopped: the [`PeerCheckpoint`] layout, and
//! [`Peer::checkpoint`] / [`Peer::restore`] that take it from and put it back into a peer.

use std::fmt::Debug;
use std::hash::Hash;

use ndarray::Array1;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::{Peer, Phase, all_finite};
use crate::message::AlgorithmKind;
use crate::privacy::PrivacyConfig;

/// Version of the [`PeerCheckpoint`] layout (2 added `privacy`, 3 `outer_velocity`; formats 1
/// and 2 still decode, as checkpoints written without privacy and without an outer step).
pub const CHECKPOINT_FORMAT: u16 = 3;

/// A peer's resumable state. Neighbour copies are deliberately absent: a restarted peer
/// reconnects, and a reconnect resynchronises every copy by snapshot, so saving them would only
/// save stale data.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PeerCheckpoint {
    /// [`CHECKPOINT_FORMAT`].
    pub format: u16,
    /// Parameter count.
    pub dim: u64,
    /// Model fingerprint the peer was configured with.
    pub fingerprint: u64,
    /// Algorithm the peer ran.
    pub algorithm: AlgorithmKind,
    /// Next round to run.
    pub round: u64,
    /// Sequence number of the last update sent.
    pub seq: u64,
    /// Round tag of that update.
    pub last_update_round: u64,
    /// Local steps taken so far.
    pub local_steps: u64,
    /// The model x (push-sum: the de-biased model).
    pub model: Vec<f32>,
    /// The public copy x̂ (D-PSGD: the last model sent; push-sum: unused zeros).
    pub x_hat: Vec<f32>,
    /// Push-sum weight.
    pub push_weight: f64,
    /// `LocalLearner::save_state` bytes.
    pub learner_state: Vec<u8>,
    /// The noise generator's position.
    pub rng: RngState,
    /// The privacy the peer ran with: a checkpoint resumes only under the same clip and noise
    /// multiplier (a model trained without privacy must not be published as if it had it).
    pub privacy: Option<PrivacyConfig>,
    /// The DiLoCo outer step's velocity (empty when it was off). A checkpoint resumed with
    /// the outer step turned off drops it; one resumed with it turned on and no velocity
    /// starts from zero, as a fresh peer does.
    pub outer_velocity: Vec<f32>,
}

/// Format 2: format 1 then `privacy` (postcard writes a struct as its fields in order, so
/// this tuple reads exactly what a format-2 struct wrote).
type PeerCheckpointV2 = (PeerCheckpointV1, Option<PrivacyConfig>);

/// Format 1: [`PeerCheckpoint`] without `privacy`.
#[derive(Deserialize)]
struct PeerCheckpointV1 {
    format: u16,
    dim: u64,
    fingerprint: u64,
    algorithm: AlgorithmKind,
    round: u64,
    seq: u64,
    last_update_round: u64,
    local_steps: u64,
    model: Vec<f32>,
    x_hat: Vec<f32>,
    push_weight: f64,
    learner_state: Vec<u8>,
    rng: RngState,
}

impl From<PeerCheckpointV2> for PeerCheckpoint {
    fn from((v, privacy): PeerCheckpointV2) -> Self {
        PeerCheckpoint {
            format: CHECKPOINT_FORMAT,
            dim: v.dim,
            fingerprint: v.fingerprint,
            algorithm: v.algorithm,
            round: v.round,
            seq: v.seq,
            last_update_round: v.last_update_round,
            local_steps: v.local_steps,
            model: v.model,
            x_hat: v.x_hat,
            push_weight: v.push_weight,
            learner_state: v.learner_state,
            rng: v.rng,
            privacy,
            outer_velocity: Vec::new(),
        }
    }
}

/// Exact position of a ChaCha8 generator.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RngState {
    /// Key.
    pub seed: [u8; 32],
    /// Stream id.
    pub stream: u64,
    /// Word position in the stream.
    pub word_pos: u128,
}

impl RngState {
    fn of(rng: &ChaCha8Rng) -> Self {
        RngState {
            seed: rng.get_seed(),
            stream: rng.get_stream(),
            word_pos: rng.get_word_pos(),
        }
    }

    fn to_rng(&self) -> ChaCha8Rng {
        use rand::SeedableRng;
        let mut rng = ChaCha8Rng::from_seed(self.seed);
        rng.set_stream(self.stream);
        rng.set_word_pos(self.word_pos);
        rng
    }
}

/// Why a checkpoint could not be decoded or restored.
#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum CheckpointError {
    /// postcard could not parse the bytes.
    #[error("malformed checkpoint: {0}")]
    Malformed(String),
    /// Bytes after a complete checkpoint.
    #[error("{0} trailing bytes after the checkpoint")]
    TrailingBytes(usize),
    /// Another layout version.
    #[error("unsupported checkpoint format {got} (expected {expected})")]
    Format {
        /// In the checkpoint.
        got: u16,
        /// [`CHECKPOINT_FORMAT`].
        expected: u16,
    },
    /// Another dimension, fingerprint or algorithm than this peer's.
    #[error("checkpoint does not match this peer: {0}")]
    Mismatch(String),
    /// A vector has the wrong length.
    #[error("checkpoint vector {what} has {got} entries, expected {expected}")]
    WrongLength {
        /// Which vector.
        what: &'static str,
        /// Its length.
        got: usize,
        /// The peer's dimension.
        expected: usize,
    },
    /// NaN or infinite state.
    #[error("checkpoint has non-finite values in {0}")]
    NonFinite(&'static str),
    /// The learner refused its state.
    #[error("learner state rejected: {0}")]
    Learner(String),
    /// `restore` called after `Start` or with neighbours present.
    #[error("restore must happen before Start and before any NeighbourUp")]
    NotFresh,
}

impl PeerCheckpoint {
    /// postcard bytes.
    pub fn encode(&self) -> Vec<u8> {
        postcard::to_stdvec(self).expect("checkpoint serializes into a Vec")
    }

    /// Strict decoding (no trailing bytes, format checked; formats 1 and 2 are read as
    /// checkpoints without privacy and without outer velocity).
    pub fn decode(bytes: &[u8]) -> Result<Self, CheckpointError> {
        let malformed = |e: postcard::Error| CheckpointError::Malformed(e.to_string());
        // The format is the first field in every version.
        let (format, _): (u16, &[u8]) = postcard::take_from_bytes(bytes).map_err(malformed)?;
        let (cp, rest): (PeerCheckpoint, &[u8]) = match format {
            1 => {
                let (v1, rest): (PeerCheckpointV1, &[u8]) =
                    postcard::take_from_bytes(bytes).map_err(malformed)?;
                debug_assert_eq!(v1.format, 1);
                ((v1, None).into(), rest)
            }
            2 => {
                let (v2, rest): (PeerCheckpointV2, &[u8]) =
                    postcard::take_from_bytes(bytes).map_err(malformed)?;
                (v2.into(), rest)
            }
            CHECKPOINT_FORMAT => postcard::take_from_bytes(bytes).map_err(malformed)?,
            got => {
                return Err(CheckpointError::Format {
                    got,
                    expected: CHECKPOINT_FORMAT,
                });
            }
        };
        if !rest.is_empty() {
            return Err(CheckpointError::TrailingBytes(rest.len()));
        }
        Ok(cp)
    }
}

impl<I: Clone + Ord + Debug + Hash> Peer<I> {
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
            push_weight: self.push.weight,
            learner_state: self.learner.save_state(),
            rng: RngState::of(&self.rng),
            privacy: self.config.privacy,
            outer_velocity: self.outer_velocity.clone(),
        }
    }

    /// Resumes from a checkpoint. Must be called before [`Input::Start`](super::Input::Start)
    /// and before any [`Input::NeighbourUp`](super::Input::NeighbourUp); on error nothing
    /// changed.
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
        let mechanism = |p: &Option<PrivacyConfig>| p.map(|p| (p.clip, p.noise_multiplier));
        if mechanism(&cp.privacy) != mechanism(&self.config.privacy) {
            let show = |p: &Option<PrivacyConfig>| match p {
                Some(p) => format!("clip {} noise_multiplier {}", p.clip, p.noise_multiplier),
                None => "off".to_string(),
            };
            return Err(CheckpointError::Mismatch(format!(
                "privacy {} (peer: {})",
                show(&cp.privacy),
                show(&self.config.privacy)
            )));
        }
        // The outer velocity may be empty (the step was off when it was written).
        let velocity_len = if cp.outer_velocity.is_empty() {
            0
        } else {
            self.dim
        };
        for (what, v, expected) in [
            ("model", &cp.model, self.dim),
            ("x_hat", &cp.x_hat, self.dim),
            ("outer_velocity", &cp.outer_velocity, velocity_len),
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
        self.push.weight = cp.push_weight;
        self.outer_velocity = if self.config.outer.is_some() {
            cp.outer_velocity
        } else {
            Vec::new()
        };
        self.round = cp.round;
        self.seq = cp.seq;
        self.last_update_round = cp.last_update_round;
        self.steps_taken = cp.local_steps;
        self.rng = cp.rng.to_rng();
        self.compressor = Self::build_compressor(&self.config, cp.round);
        self.restored = true;
        Ok(())
    }
}
