//! Daemon configuration: one TOML file with every option (`murmur config` prints the defaults);
//! command-line flags override single values.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use libp2p::{Multiaddr, PeerId};
use murmur_gossip::peer::{
    Algorithm, AlgorithmError, ConfigError, CopyStorage, JoinModel, Mode, OuterConfig, OuterError,
    PeerConfig, PushSchedule,
};
use murmur_gossip::privacy::{DEFAULT_DELTA, PrivacyConfig, PrivacyError};
use murmur_gossip::task::{TaskConfig, TaskError};
use murmur_topology::NeighbourRule;
use serde::{Deserialize, Serialize};

use murmur_gossip::adversary::AttackKind;

/// Everything a `murmur run` needs.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Identity, addresses, discovery, connection limits.
    pub node: NodeConfig,
    /// Private network key, allow-list, per-peer limits.
    pub access: AccessConfig,
    /// Circuit relay v2: serving as a relay, and reserving slots on relays when private.
    pub relay: RelayConfig,
    /// Which shard of the data set this node trains on.
    pub shard: ShardConfig,
    /// Data source, model, optimizer, partition (shared with the simulator).
    pub task: TaskConfig,
    /// Averaging algorithm, codec and its knobs.
    pub gossip: GossipConfig,
    /// Peer-level differential privacy of every update this node releases.
    pub privacy: PrivacySection,
    /// How neighbours are chosen among the discovered peers.
    pub topology: TopologyConfig,
    /// Stopping and evaluation.
    pub run: RunConfig,
    /// Checkpoint cadence and retention.
    pub checkpoint: CheckpointConfig,
    /// Metrics and status endpoint.
    pub http: HttpConfig,
    /// Log format.
    pub log: LogConfig,
    /// FOR ROBUSTNESS TESTS AND DEMOS ONLY: make this node a hostile peer.
    pub testing: TestingConfig,
}

/// Identity, addresses, discovery and connection limits.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NodeConfig {
    /// Directory for the identity key, checkpoints and `node.json`.
    pub data_dir: PathBuf,
    /// Identity key file (default `<data_dir>/identity.key`), created with mode 0600.
    pub identity_file: Option<PathBuf>,
    /// Listen multiaddrs (TCP and QUIC; QUIC is skipped under a pre-shared key).
    pub listen: Vec<String>,
    /// Multiaddrs of known peers, each ending in `/p2p/<peer id>`.
    pub bootstrap: Vec<String>,
    /// Addresses to advertise instead of the listen addresses (e.g. a NAT's or relay's
    /// public address). When non-empty, identify sends only these, so peers (and their
    /// Kademlia tables) never learn the real listen addresses.
    pub announce: Vec<String>,
    /// Find peers on the LAN by multicast DNS. Off by default: it multicasts to the LAN.
    pub mdns: bool,
    /// Also listen on QUIC addresses given in `listen` (ignored when a pre-shared key is set).
    /// The transports are TCP (`/tcp/` listen addresses) and QUIC v1 (`/udp/../quic-v1`);
    /// a node listens on those its `listen` list names, and dials both.
    pub quic: bool,
    /// AutoNAT counts only dial-backs to global IP addresses as evidence (the internet
    /// default). Off: private (10/8, 192.168/16, ...) addresses count too, for a swarm on one
    /// private network, or the namespace lab of `docs/deploy.md`.
    pub autonat_global_only: bool,
    /// Established connections in total.
    pub max_connections: u32,
    /// Established connections per peer.
    pub max_connections_per_peer: u32,
    /// Pending (handshaking) connections, each direction.
    pub max_pending: u32,
    /// Seconds an idle connection is kept.
    pub idle_timeout_secs: u64,
    /// Seconds between Kademlia random walks (peer discovery) while the view changes; the
    /// period doubles while it does not, up to 16 times this.
    pub discovery_interval_secs: u64,
    /// Seconds between pings; a connection unanswered for twice this is closed.
    pub ping_interval_secs: u64,
    /// Wait for this many peers in total (this node included) before the first round, or
    /// `start_timeout_secs`, whichever comes first. 0: start at once.
    pub min_peers: usize,
    /// Upper bound of that wait.
    pub start_timeout_secs: u64,
}

impl Default for NodeConfig {
    fn default() -> Self {
        NodeConfig {
            data_dir: PathBuf::from("murmur-data"),
            identity_file: None,
            listen: vec![
                "/ip4/0.0.0.0/tcp/0".to_string(),
                "/ip4/0.0.0.0/udp/0/quic-v1".to_string(),
            ],
            bootstrap: Vec::new(),
            announce: Vec::new(),
            mdns: false,
            quic: true,
            autonat_global_only: true,
            max_connections: 128,
            max_connections_per_peer: 2,
            max_pending: 32,
            idle_timeout_secs: 300,
            discovery_interval_secs: 5,
            ping_interval_secs: 5,
            min_peers: 0,
            start_timeout_secs: 20,
        }
    }
}

impl NodeConfig {
    fn validate(&self) -> Result<()> {
        for addr in &self.listen {
            addr.parse::<Multiaddr>().map_err(|e| {
                anyhow::anyhow!("node.listen (--listen) = {addr:?} is not a multiaddr ({e}), e.g. /ip4/0.0.0.0/tcp/4001")
            })?;
        }
        for addr in &self.bootstrap {
            bootstrap_peer(addr)?;
        }
        for addr in &self.announce {
            addr.parse::<Multiaddr>().map_err(|e| {
                anyhow::anyhow!("node.announce (--announce) = {addr:?} is not a multiaddr ({e})")
            })?;
        }
        at_least("node.max_connections", self.max_connections.into(), 1)?;
        at_least(
            "node.max_connections_per_peer",
            self.max_connections_per_peer.into(),
            1,
        )?;
        at_least("node.max_pending", self.max_pending.into(), 1)?;
        at_least("node.idle_timeout_secs", self.idle_timeout_secs, 1)?;
        at_least(
            "node.discovery_interval_secs",
            self.discovery_interval_secs,
            1,
        )?;
        at_least("node.ping_interval_secs", self.ping_interval_secs, 1)?;
        Ok(())
    }

    /// The identity key path.
    pub fn identity_path(&self) -> PathBuf {
        self.identity_file
            .clone()
            .unwrap_or_else(|| self.data_dir.join("identity.key"))
    }
}

/// Who may connect and how much they may send.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AccessConfig {
    /// Pre-shared key file (`swarm.key` format, `murmur psk` writes one): only holders connect.
    pub psk_file: Option<PathBuf>,
    /// Peer ids allowed to connect; empty: everyone (who holds the key, if any).
    pub allow_peers: Vec<String>,
    /// Largest frame accepted on `/murmur/gossip/1` (bytes).
    pub max_frame_bytes: usize,
    /// Frames per second each peer may send (token bucket, `burst_secs` deep).
    pub max_frames_per_sec: f64,
    /// Bytes per second each peer may send.
    pub max_bytes_per_sec: f64,
    /// Depth of the rate buckets, in seconds of traffic.
    pub burst_secs: f64,
}

impl AccessConfig {
    fn validate(&self) -> Result<()> {
        for id in &self.allow_peers {
            id.parse::<PeerId>().map_err(|_| {
                anyhow::anyhow!(
                    "access.allow_peers (--allow) = {id:?} is not a peer id; a peer id looks \
                     like 12D3KooW... (`murmur id --data-dir <dir>` prints a node's)"
                )
            })?;
        }
        at_least(
            "access.max_frame_bytes (--max-frame-bytes)",
            self.max_frame_bytes as u64,
            1024,
        )?;
        positive(
            "access.max_frames_per_sec (--max-frames-per-sec)",
            self.max_frames_per_sec,
        )?;
        positive("access.max_bytes_per_sec", self.max_bytes_per_sec)?;
        positive("access.burst_secs", self.burst_secs)?;
        Ok(())
    }
}

impl Default for AccessConfig {
    fn default() -> Self {
        AccessConfig {
            psk_file: None,
            allow_peers: Vec::new(),
            max_frame_bytes: 4 << 20,
            max_frames_per_sec: 5_000.0,
            max_bytes_per_sec: 64.0 * 1024.0 * 1024.0,
            burst_secs: 2.0,
        }
    }
}

/// Circuit relay v2 (libp2p `relay`): a public node may carry connections between peers that
/// cannot dial each other; a node AutoNAT finds private reserves a slot on the relays it
/// dialled and advertises the relayed address. Relayed connections carry gossip updates but
/// never a joiner's model download (see `crate::nat`).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RelayConfig {
    /// Serve as a relay for others. Off by default: a relay spends its bandwidth on traffic
    /// between other peers.
    pub serve: bool,
    /// Serving: seconds a circuit may last before the relay closes it (the ends then open a
    /// new one).
    pub max_circuit_secs: u64,
    /// Serving: bytes a circuit may carry, both directions together, before it is closed.
    pub max_circuit_bytes: u64,
    /// Private: reserve a slot on at most this many relays (0: never reserve).
    pub reserve_on: usize,
}

impl Default for RelayConfig {
    fn default() -> Self {
        RelayConfig {
            serve: false,
            // libp2p's defaults (2 min, 128 KiB) only cover a hole punch; gossip over a
            // relay runs for the whole training.
            max_circuit_secs: 3600,
            max_circuit_bytes: 256 << 20,
            reserve_on: 2,
        }
    }
}

impl RelayConfig {
    fn validate(&self) -> Result<()> {
        at_least("relay.max_circuit_secs", self.max_circuit_secs, 1)?;
        at_least("relay.max_circuit_bytes", self.max_circuit_bytes, 64 << 10)?;
        Ok(())
    }
}

/// This node's shard: `index` of `count` (partition scheme in `task.partition`).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ShardConfig {
    /// This node's shard.
    pub index: usize,
    /// Number of shards the data set is cut into.
    pub count: usize,
}

impl Default for ShardConfig {
    fn default() -> Self {
        ShardConfig { index: 0, count: 1 }
    }
}

/// The averaging algorithm in flat, TOML-friendly form (turned into a [`PeerConfig`]).
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GossipConfig {
    /// `choco`, `dpsgd`, `push-sum` or `compressed-push-sum`.
    pub algorithm: String,
    /// Codec of CHOCO and compressed push-sum (`dense`, `threshold:0.01`, `topk:0.01`, `sign`,
    /// `qsgd:16`, ...).
    pub codec: String,
    /// Consensus step size of CHOCO and compressed push-sum, in (0, 1].
    pub gamma: f32,
    /// Local SGD steps per round.
    pub local_steps: u32,
    /// `round-tagged` (wait for the neighbours' round, bounded by the timeout) or `async`.
    pub mode: String,
    /// Push-sum targets each round: `all` (every neighbour), `one-peer-exponential` (one
    /// neighbour per round, cycling clockwise round the hash ring) or `random:K` (K
    /// neighbours drawn afresh each round, Epidemic Learning).
    pub push: String,
    /// Round-tagged: longest wait for a round's updates (ms).
    pub round_timeout_ms: u64,
    /// Async: largest staleness still mixed (rounds).
    pub max_staleness: u64,
    /// Async: damping per round of staleness.
    pub damping: f32,
    /// Run round r+1's local steps while round r's gossip is in flight.
    pub overlap_compute: bool,
    /// `auto` (the aggregate sum from 2^20 parameters up when the settings allow it,
    /// per-neighbour copies otherwise), `per-neighbour` or `aggregate`.
    pub copies: String,
    /// Clip each neighbour's contribution to this L2 radius (robustness to hostile peers).
    pub clip_radius: Option<f32>,
    /// DiLoCo outer step: the learning rate η of the outer Nesterov optimizer applied to each
    /// round's pseudo-gradient (the `local_steps` steps' movement) before it is gossiped.
    /// Unset: off.
    pub outer_lr: Option<f32>,
    /// DiLoCo outer step: Nesterov momentum μ (with `outer_lr`).
    pub outer_momentum: f32,
    /// Base seed; each node mixes in its shard index.
    pub seed: u64,
    /// Largest gossip message accepted (default 8 × dim + 4096).
    pub max_message_bytes: Option<usize>,
    /// Wait for the neighbours' hellos before the first round (ms).
    pub startup_timeout_ms: u64,
    /// Resend an unanswered snapshot request after (ms).
    pub snapshot_timeout_ms: u64,
    /// Grace before a sequence gap triggers a snapshot (ms).
    pub gap_grace_ms: u64,
    /// Out-of-order updates buffered per neighbour.
    pub max_buffered_updates: usize,
    /// A fresh node adopts its neighbours' model before training.
    pub adopt_on_join: bool,
    /// Serve the model to joiners.
    pub serve_model: bool,
    /// Snapshot requests served per neighbour per round.
    pub max_snapshots_per_round: u32,
    /// What a joiner starts from: `average` (of its neighbours' public copies, CHOCO) or
    /// `donor` (one neighbour's model).
    pub join_model: String,
    /// Values per snapshot chunk (4 bytes each): larger snapshots stream as chunks.
    pub snapshot_chunk_values: usize,
    /// Chunk requests outstanding per download.
    pub snapshot_window: u32,
}

impl Default for GossipConfig {
    fn default() -> Self {
        let p = PeerConfig::default();
        GossipConfig {
            algorithm: "choco".to_string(),
            codec: "threshold:0.01".to_string(),
            gamma: 0.05,
            local_steps: p.local_steps,
            mode: "round-tagged".to_string(),
            push: "all".to_string(),
            round_timeout_ms: 1_000,
            max_staleness: 4,
            damping: 1.0,
            overlap_compute: true,
            copies: "auto".to_string(),
            clip_radius: p.clip_radius,
            outer_lr: None,
            outer_momentum: 0.9,
            seed: 0,
            max_message_bytes: p.max_message_bytes,
            startup_timeout_ms: p.startup_timeout / 1_000,
            snapshot_timeout_ms: p.snapshot_timeout / 1_000,
            gap_grace_ms: p.gap_grace / 1_000,
            max_buffered_updates: p.max_buffered_updates,
            adopt_on_join: p.adopt_on_join,
            serve_model: p.serve_model,
            max_snapshots_per_round: p.max_snapshots_per_round,
            join_model: "average".to_string(),
            snapshot_chunk_values: p.snapshot_chunk_values,
            snapshot_window: p.snapshot_window,
        }
    }
}

impl GossipConfig {
    /// The peer configuration (seed, fingerprint and checkpoint cadence filled in by the
    /// caller).
    pub fn peer_config(&self) -> Result<PeerConfig> {
        let algorithm = Algorithm::from_name(&self.algorithm, &self.codec, self.gamma).map_err(
            |e| match e {
                AlgorithmError::Codec { .. } => anyhow::anyhow!("gossip.codec: {e}"),
                AlgorithmError::Unknown(_) => anyhow::anyhow!("gossip.algorithm: {e}"),
            },
        )?;
        let mode = match self.mode.as_str() {
            "round-tagged" => Mode::RoundTagged {
                timeout: self.round_timeout_ms * 1_000,
            },
            "async" => Mode::Async {
                max_staleness: self.max_staleness,
                damping: self.damping,
                timeout: self.round_timeout_ms * 1_000,
            },
            other => bail!("gossip.mode {other:?}: expected round-tagged or async"),
        };
        let push = match self.push.as_str() {
            "all" => PushSchedule::All,
            "one-peer-exponential" => PushSchedule::OnePeerExponential,
            other => match other.strip_prefix("random:").map(str::parse::<usize>) {
                Some(Ok(k)) if k >= 1 => PushSchedule::Random { k },
                _ => bail!(
                    "gossip.push {other:?}: expected all, one-peer-exponential or random:K with K >= 1"
                ),
            },
        };
        if push != PushSchedule::All && !algorithm.kind().pushes() {
            bail!(
                "gossip.push = {:?} needs gossip.algorithm = \"push-sum\" or \"compressed-push-sum\" (it is {:?})",
                self.push,
                self.algorithm
            );
        }
        let copies = match self.copies.as_str() {
            "per-neighbour" => CopyStorage::PerNeighbour,
            "aggregate" => CopyStorage::Aggregate,
            "auto" => CopyStorage::Auto,
            other => bail!("gossip.copies {other:?}: expected auto, per-neighbour or aggregate"),
        };
        let join_model = match self.join_model.as_str() {
            "average" => JoinModel::Average,
            "donor" => JoinModel::Donor,
            other => bail!("gossip.join_model {other:?}: expected average or donor"),
        };
        let config = PeerConfig {
            join_model,
            snapshot_chunk_values: self.snapshot_chunk_values,
            snapshot_window: self.snapshot_window,
            algorithm,
            copies,
            local_steps: self.local_steps,
            mode,
            push,
            overlap_compute: self.overlap_compute,
            clip_radius: self.clip_radius,
            outer: self.outer_lr.map(|lr| OuterConfig {
                lr,
                momentum: self.outer_momentum,
            }),
            checkpoint_every: 0,
            seed: self.seed,
            fingerprint: 0,
            max_message_bytes: self.max_message_bytes,
            startup_timeout: self.startup_timeout_ms * 1_000,
            snapshot_timeout: self.snapshot_timeout_ms * 1_000,
            gap_grace: self.gap_grace_ms * 1_000,
            max_buffered_updates: self.max_buffered_updates,
            adopt_on_join: self.adopt_on_join,
            serve_model: self.serve_model,
            max_snapshots_per_round: self.max_snapshots_per_round,
            ..PeerConfig::default()
        };
        config.validate().map_err(|e| match e {
            // The peer names the setting `outer.lr`; here it is `gossip.outer_lr`.
            ConfigError::Outer(OuterError::Lr(v)) => {
                anyhow::anyhow!("gossip.outer_lr = {v} must be in (0, 10]")
            }
            ConfigError::Outer(OuterError::Momentum(v)) => {
                anyhow::anyhow!("gossip.outer_momentum = {v} must be in [0, 1)")
            }
            e => anyhow::anyhow!("gossip: {e}"),
        })?;
        Ok(config)
    }
}

/// Peer-level differential privacy (`murmur_gossip::privacy`): each round's local update is
/// clipped to L2 norm `clip` and Gaussian noise of std `noise_multiplier` × `clip` is added
/// before the update touches the model, so everything the node sends, serves on `/model` and
/// checkpoints as a model is post-processing of noised updates; `/status` reports the (ε, δ)
/// spent. The unit protected is this node's whole local dataset. Off unless both `clip` and
/// `noise_multiplier` are set.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PrivacySection {
    /// C: L2 norm each round's update is clipped to.
    pub clip: Option<f64>,
    /// σ: noise std per coordinate in units of `clip` (>= 1).
    pub noise_multiplier: Option<f64>,
    /// δ of the reported (ε, δ), in (0, 1).
    pub delta: f64,
}

impl Default for PrivacySection {
    fn default() -> Self {
        PrivacySection {
            clip: None,
            noise_multiplier: None,
            delta: DEFAULT_DELTA,
        }
    }
}

impl PrivacySection {
    /// The peer's privacy setting (None: off), every value checked with its key and flag.
    pub fn config(&self) -> Result<Option<PrivacyConfig>> {
        let named = |e: PrivacyError| {
            let (key, flag) = match e {
                PrivacyError::Clip(_) => ("privacy.clip", "--dp-clip"),
                PrivacyError::NoiseMultiplier(_) => ("privacy.noise_multiplier", "--dp-noise"),
                PrivacyError::Delta(_) => ("privacy.delta", "--dp-delta"),
            };
            anyhow::anyhow!(
                "{}",
                e.to_string().replacen(key, &format!("{key} ({flag})"), 1)
            )
        };
        let config = match (self.clip, self.noise_multiplier) {
            (None, None) => {
                // Checked even while off: a nonsense value is a mistake either way.
                if !(self.delta > 0.0 && self.delta < 1.0) {
                    return Err(named(PrivacyError::Delta(self.delta)));
                }
                return Ok(None);
            }
            (Some(clip), Some(noise_multiplier)) => PrivacyConfig {
                clip,
                noise_multiplier,
                delta: self.delta,
            },
            (Some(_), None) => bail!(
                "privacy.clip (--dp-clip) is set but privacy.noise_multiplier (--dp-noise) is \
                 not: set both to turn differential privacy on"
            ),
            (None, Some(_)) => bail!(
                "privacy.noise_multiplier (--dp-noise) is set but privacy.clip (--dp-clip) is \
                 not: set both to turn differential privacy on"
            ),
        };
        config.validate().map_err(named)?;
        Ok(Some(config))
    }
}

/// The live neighbour rule.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TopologyConfig {
    /// `ring`, `exponential` or `random-k:<k>` (murmur-topology's `NeighbourRule`, applied to
    /// the peers this node discovered, hashed onto a ring).
    pub rule: String,
}

impl Default for TopologyConfig {
    fn default() -> Self {
        TopologyConfig {
            rule: "exponential".to_string(),
        }
    }
}

/// Stopping and evaluation.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RunConfig {
    /// Stop training after this many rounds (the node stays up, serving its model, until
    /// stopped). None: train until stopped.
    pub max_rounds: Option<u64>,
    /// Evaluate on the test split every this many rounds (and when training stops).
    pub eval_every: u64,
}

impl Default for RunConfig {
    fn default() -> Self {
        RunConfig {
            max_rounds: None,
            eval_every: 50,
        }
    }
}

/// Checkpoint cadence and retention.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CheckpointConfig {
    /// Save every this many rounds (0: only on shutdown and when training stops).
    pub every: u64,
    /// Checkpoints kept.
    pub keep: usize,
    /// Directory (default `<data_dir>/checkpoints`).
    pub dir: Option<PathBuf>,
    /// Resume from the newest valid checkpoint on start.
    pub resume: bool,
}

impl Default for CheckpointConfig {
    fn default() -> Self {
        CheckpointConfig {
            every: 200,
            keep: 3,
            dir: None,
            resume: true,
        }
    }
}

/// Metrics and status endpoint.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// Socket address for `/metrics` and `/status` (port 0: any free port, see `node.json`);
    /// None: no endpoint.
    pub listen: Option<String>,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            listen: Some("127.0.0.1:9464".to_string()),
        }
    }
}

/// Log output.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// JSON lines instead of text (filter with RUST_LOG).
    pub json: bool,
    /// Seconds between one-line progress logs (round, rate, accuracy, neighbours); 0: none.
    pub progress_secs: u64,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            json: false,
            progress_secs: 60,
        }
    }
}

/// FOR ROBUSTNESS TESTS AND DEMOS ONLY: turns this node into a hostile peer whose outgoing
/// gossip frames are rewritten into an attack (see [`crate::adversary`]). Never set it on a
/// node meant to do useful work.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TestingConfig {
    /// The attack: huge, nan, wrong-dim, replay, flood (none: an honest node).
    pub adversary: Option<AttackKind>,
    /// `huge`: magnitude of the forged values.
    pub scale: f32,
    /// `flood`: extra copies (and as many mangled frames) per frame; `replay`: earlier updates
    /// re-sent after each new one.
    pub copies: usize,
}

impl Default for TestingConfig {
    fn default() -> Self {
        TestingConfig {
            adversary: None,
            scale: 1e4,
            copies: 8,
        }
    }
}

/// Why `gossip.noise_std` is refused (it was removed: noise without clipping or accounting).
pub const NOISE_STD_REMOVED: &str = "gossip.noise_std was removed: Gaussian noise on what was \
     sent, without clipping or an accountant, bounded nothing and left the model and /model \
     exact, so it was not privacy. Use the [privacy] section (clip, noise_multiplier, delta) or \
     --dp-clip C --dp-noise SIGMA [--dp-delta D]: each round's update is clipped to C and \
     noised with std SIGMA x C, and /status reports the epsilon spent";

impl Config {
    /// Parses a TOML file.
    pub fn load(path: &std::path::Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading config {}", path.display()))?;
        Self::parse(&text).with_context(|| format!("parsing config {}", path.display()))
    }

    /// Parses TOML text, refusing removed keys with what replaced them.
    pub fn parse(text: &str) -> Result<Self> {
        if let Ok(table) = toml::from_str::<toml::Table>(text)
            && table
                .get("gossip")
                .and_then(toml::Value::as_table)
                .is_some_and(|g| g.contains_key("noise_std"))
        {
            bail!("{NOISE_STD_REMOVED}");
        }
        // Parsed from the text (not the table) so errors keep their line and column.
        Ok(toml::from_str(text)?)
    }

    /// The peer configuration: `[gossip]` and `[privacy]` (seed, fingerprint and checkpoint
    /// cadence are filled in by `task::prepare`).
    pub fn peer_config(&self) -> Result<PeerConfig> {
        let mut config = self
            .gossip
            .peer_config()
            .context("gossip settings (see `murmur config`)")?;
        config.privacy = self.privacy.config()?;
        if config.privacy.is_some() && config.local_steps == 0 {
            bail!(
                "privacy (--dp-clip/--dp-noise) needs gossip.local_steps (--local-steps) >= 1: \
                 with 0 the node never touches its data, so there is nothing to protect"
            );
        }
        config.validate()?;
        Ok(config)
    }

    /// Checks every numeric and enumerated setting, so a nonsense value stops the node at
    /// start instead of training nothing (`lr = nan`) or refusing every peer
    /// (`max_connections = 0`). The message names the setting, its flag and the range.
    pub fn validate(&self) -> Result<()> {
        self.node.validate()?;
        self.access.validate()?;
        self.relay.validate()?;
        let shard = &self.shard;
        at_least("shard.count (--shards)", shard.count as u64, 1)?;
        if shard.index >= shard.count {
            bail!(
                "shard.index (--shard) = {} must be below shard.count (--shards) = {}",
                shard.index,
                shard.count
            );
        }
        self.task.validate().map_err(|e| match e {
            TaskError::Config(msg) => anyhow::anyhow!("task.{msg}"),
            other => anyhow::anyhow!("task: {other}"),
        })?;
        self.peer_config()?;
        // A chunk frame is its values plus a few header bytes; it must pass the frame cap.
        let chunk_frame = 4 * self.gossip.snapshot_chunk_values + 64;
        if chunk_frame > self.access.max_frame_bytes {
            bail!(
                "gossip.snapshot_chunk_values = {} makes {chunk_frame}-byte chunk frames, above                  access.max_frame_bytes (--max-frame-bytes) = {}: lower the first or raise the second",
                self.gossip.snapshot_chunk_values,
                self.access.max_frame_bytes
            );
        }
        let rule = self.topology.rule.parse::<NeighbourRule>().map_err(|e| {
            anyhow::anyhow!("topology.rule (--topology) = {:?}: {e}", self.topology.rule)
        })?;
        if rule == (NeighbourRule::RandomK { k: 0 }) {
            bail!(
                "topology.rule (--topology) = \"random-k:0\": K must be at least 1 \
                 (random-k:0 is the plain ring: write ring)"
            );
        }
        if let Some(rounds) = self.run.max_rounds {
            at_least("run.max_rounds (--max-rounds)", rounds, 1)?;
        }
        at_least("run.eval_every (--eval-every)", self.run.eval_every, 1)?;
        at_least("checkpoint.keep", self.checkpoint.keep as u64, 1)?;
        positive("testing.scale", f64::from(self.testing.scale))?;
        Ok(())
    }

    /// The checkpoint directory.
    pub fn checkpoint_dir(&self) -> PathBuf {
        self.checkpoint
            .dir
            .clone()
            .unwrap_or_else(|| self.node.data_dir.join("checkpoints"))
    }
}

/// `key = value must be >= min` unless `value >= min`.
fn at_least(key: &str, value: u64, min: u64) -> Result<()> {
    if value < min {
        bail!("{key} = {value} must be >= {min}");
    }
    Ok(())
}

/// `key = value must be a finite number > 0` unless it is one.
fn positive(key: &str, value: f64) -> Result<()> {
    if !(value.is_finite() && value > 0.0) {
        bail!("{key} = {value} must be a finite number > 0");
    }
    Ok(())
}

/// The peer id at the end of a bootstrap multiaddr (`.../p2p/<id>`).
pub fn bootstrap_peer(addr: &str) -> Result<(Multiaddr, PeerId)> {
    let ma: Multiaddr = addr.parse().map_err(|e| {
        anyhow::anyhow!("node.bootstrap (--bootstrap) = {addr:?} is not a multiaddr ({e})")
    })?;
    match ma.iter().last() {
        Some(libp2p::multiaddr::Protocol::P2p(peer)) => Ok((ma, peer)),
        _ => bail!(
            "node.bootstrap (--bootstrap) = {addr:?} must end in /p2p/<peer id>: copy the whole \
             `listening ...` line the other node printed"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_round_trip_through_toml_and_build_a_valid_peer_config() {
        let text = toml::to_string(&Config::default()).unwrap();
        let back: Config = toml::from_str(&text).unwrap();
        assert_eq!(toml::to_string(&back).unwrap(), text);
        back.gossip.peer_config().unwrap();
    }

    #[test]
    fn privacy_is_off_by_default_and_named_when_half_set_or_out_of_range() {
        assert_eq!(Config::default().peer_config().unwrap().privacy, None);
        let with = |clip, noise, delta| Config {
            privacy: PrivacySection {
                clip,
                noise_multiplier: noise,
                delta,
            },
            ..Config::default()
        };
        let on = with(Some(1.0), Some(4.0), 1e-6).peer_config().unwrap();
        assert_eq!(
            on.privacy,
            Some(PrivacyConfig {
                clip: 1.0,
                noise_multiplier: 4.0,
                delta: 1e-6
            })
        );
        for (config, expected) in [
            (
                with(Some(1.0), None, 1e-5),
                "privacy.clip (--dp-clip) is set",
            ),
            (
                with(None, Some(4.0), 1e-5),
                "privacy.noise_multiplier (--dp-noise) is set",
            ),
            (
                with(Some(0.0), Some(4.0), 1e-5),
                "privacy.clip (--dp-clip) = 0 must be",
            ),
            (
                with(Some(1.0), Some(0.1), 1e-5),
                "privacy.noise_multiplier (--dp-noise) = 0.1",
            ),
            (
                with(Some(1.0), Some(4.0), 1.0),
                "privacy.delta (--dp-delta) = 1 must be",
            ),
            (
                with(None, None, 0.0),
                "privacy.delta (--dp-delta) = 0 must be",
            ),
        ] {
            let err = config.validate().unwrap_err().to_string();
            assert!(err.contains(expected), "{err}");
        }
        // The removed key points at its replacement; the section parses from TOML.
        let err = Config::parse("[gossip]\nnoise_std = 0.01\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("gossip.noise_std was removed") && err.contains("--dp-noise"),
            "{err}"
        );
        let parsed = Config::parse("[privacy]\nclip = 2.0\nnoise_multiplier = 8\n").unwrap();
        assert_eq!(
            parsed.privacy.config().unwrap().unwrap().delta,
            DEFAULT_DELTA
        );
    }

    #[test]
    fn relay_serving_is_off_by_default_and_nonsense_limits_are_named() {
        let config = Config::default();
        assert!(
            !config.relay.serve,
            "serving a relay costs bandwidth: opt in"
        );
        assert!(config.node.autonat_global_only);
        for (text, expected) in [
            (
                "[relay]\nmax_circuit_secs = 0\n",
                "relay.max_circuit_secs = 0",
            ),
            (
                "[relay]\nmax_circuit_bytes = 10\n",
                "relay.max_circuit_bytes = 10",
            ),
        ] {
            let err = Config::parse(text)
                .unwrap()
                .validate()
                .unwrap_err()
                .to_string();
            assert!(err.contains(expected), "{text}: {err}");
        }
    }

    #[test]
    fn unknown_keys_and_bad_values_are_named_errors() {
        let err = toml::from_str::<Config>("[node]\nlisen = []\n").unwrap_err();
        assert!(err.to_string().contains("lisen"), "{err}");
        let gossip = GossipConfig {
            algorithm: "flood".into(),
            ..GossipConfig::default()
        };
        assert!(
            gossip
                .peer_config()
                .unwrap_err()
                .to_string()
                .contains("flood")
        );
        let gossip = GossipConfig {
            gamma: 1.5,
            ..GossipConfig::default()
        };
        assert!(gossip.peer_config().is_err());
    }
}
