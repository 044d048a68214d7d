//! The simulator's typed errors: a setting out of range names its scenario key
//! ([`InvalidSetting`]); building a run fails on such a setting or on a peer configuration
//! the core refuses ([`EngineError`]).

use murmur_gossip::peer::ConfigError;

/// A scenario setting out of its range: `key` is the TOML key (`network.latency.min_ms`),
/// `problem` what is wrong with its value.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[error("{key} {problem}")]
pub struct InvalidSetting {
    /// The scenario key.
    pub key: String,
    /// What is wrong (starts with the value, e.g. "= -1 must be >= 0").
    pub problem: String,
}

impl InvalidSetting {
    /// The setting `key` is wrong in the way `problem` says.
    pub fn new(key: impl Into<String>, problem: impl Into<String>) -> Self {
        InvalidSetting {
            key: key.into(),
            problem: problem.into(),
        }
    }
}

/// Why an [`crate::engine::Engine`] could not be built.
#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum EngineError {
    /// A scenario setting out of range.
    #[error(transparent)]
    Setting(#[from] InvalidSetting),
    /// The core refused the peer configuration.
    #[error("[peer]/[gossip]: {0}")]
    Peer(#[from] ConfigError),
}
