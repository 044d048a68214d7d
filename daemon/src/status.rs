//! What a node reports about itself: the JSON status (`GET /status`, `murmur status`), its
//! recent history (`GET /history`, the dashboard's charts) and the Prometheus metrics
//! (`GET /metrics`, libp2p's own metrics included), with per-link series for at most
//! [`MAX_LINK_SERIES`] neighbours.

use std::collections::BTreeMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};

use murmur_gossip::peer::{LinkStats, RejectReason, UpdateFigures};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use serde::{Deserialize, Serialize};

/// Where the time of the training thread went (seconds since start).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Timing {
    /// Local SGD steps (inside `ComputeGranted`).
    pub compute_secs: f64,
    /// Decoding and mixing neighbours' messages.
    pub gossip_secs: f64,
    /// Blocked while a round waited for its neighbours (the network's share).
    pub wait_secs: f64,
    /// Rounds these totals cover.
    pub rounds: u64,
}

impl Timing {
    /// Fraction of the round time spent waiting on the network.
    pub fn wait_share(&self) -> f64 {
        let total = self.compute_secs + self.gossip_secs + self.wait_secs;
        if total > 0.0 {
            self.wait_secs / total
        } else {
            0.0
        }
    }

    /// Fraction spent in local SGD steps.
    pub fn compute_share(&self) -> f64 {
        let total = self.compute_secs + self.gossip_secs + self.wait_secs;
        if total > 0.0 {
            self.compute_secs / total
        } else {
            0.0
        }
    }
}

/// Peer-level differential privacy of this node's updates (`/status` `privacy`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PrivacyStatus {
    /// ε of the (ε, δ) guarantee for this node's whole local dataset, over every noised update
    /// of this data directory (earlier runs included, see `crate::privacy`).
    pub epsilon: f64,
    /// δ.
    pub delta: f64,
    /// Noised updates composed into ε (earlier runs included; after a crash, their
    /// reservation).
    pub rounds: u64,
    /// Noised updates released by this run.
    pub rounds_this_run: u64,
    /// Of those, updates longer than the clip (the share tells whether the clip fits).
    pub clipped_this_run: u64,
    /// C: the L2 norm each update is clipped to.
    pub clip: f64,
    /// σ: noise std per coordinate in units of the clip.
    pub noise_multiplier: f64,
}

/// Whether this node can be dialled from the internet, as AutoNAT concluded from its peers'
/// dial-back attempts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Reachability {
    /// No verdict yet (no probe answered, or only probes that do not count: loopback and
    /// private addresses under `node.autonat_global_only`).
    #[default]
    Unknown,
    /// Peers dialled this node back: it needs no relay.
    Public,
    /// Peers could not dial it back (NAT, firewall): it reserves relay slots.
    Private,
}

impl Reachability {
    /// Every state, in label order.
    pub const ALL: [Reachability; 3] = [
        Reachability::Private,
        Reachability::Public,
        Reachability::Unknown,
    ];

    /// The `state` label of `murmur_reachability` (and the JSON value).
    pub fn label(self) -> &'static str {
        match self {
            Reachability::Unknown => "unknown",
            Reachability::Public => "public",
            Reachability::Private => "private",
        }
    }
}

/// How frames reach a neighbour.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LinkPath {
    /// At least one connection goes straight to the peer.
    Direct,
    /// Every connection goes through a circuit relay.
    Relayed,
}

/// NAT traversal as the status reports it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct NatStatus {
    /// AutoNAT's verdict.
    pub reachability: Reachability,
    /// Relays holding a reservation for this node (peer ids).
    pub relays: Vec<String>,
    /// This node serves as a relay (`relay.serve`).
    pub relay_serving: bool,
    /// Serving: circuits it accepted between other peers.
    pub circuits_served: u64,
    /// DCUtR hole punches attempted on relayed connections (finished, either way).
    pub hole_punch_attempts: u64,
    /// Of those, the ones that opened a direct connection.
    pub hole_punch_successes: u64,
    /// Gossip bytes sent over relayed-only connections.
    pub relayed_bytes_sent: u64,
    /// Gossip bytes received over relayed-only connections.
    pub relayed_bytes_received: u64,
    /// Model downloads for joiners refused on relayed-only connections (see `crate::nat`).
    pub downloads_refused: u64,
}

/// One neighbour's row of the dashboard's table: what the gossip peer counted on the edge
/// since it came up (`/status` `links`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LinkStatus {
    /// The neighbour's peer id.
    pub peer: String,
    /// Gossip frame bytes sent to it.
    pub bytes_sent: u64,
    /// Gossip frame bytes received from it.
    pub bytes_received: u64,
    /// Updates sent to it.
    pub updates_sent: u64,
    /// Bytes of those updates.
    pub update_bytes_sent: u64,
    /// What those updates would have cost as dense f32 vectors.
    pub dense_update_bytes: u64,
    /// Its updates applied to its copy.
    pub updates_applied: u64,
    /// Bits per entry of the updates sent to it (whole frames over entries).
    pub bits_per_entry: Option<f64>,
    /// The entropy bound H_b(p)/p + 1 per entry of the same updates.
    pub entropy_bound_bits_per_entry: Option<f64>,
    /// Rounds its newest contribution lagged the round that mixed it, at the last mix.
    pub staleness: Option<u64>,
    /// Its contributions dropped for staleness (async mode).
    pub stale_dropped: u64,
    /// Its contributions damped for staleness (async mode).
    pub damped_contributions: u64,
    /// Its contributions shortened by clipping.
    pub clipped_contributions: u64,
    /// Its frames the gossip peer rejected, by reason (non-zero reasons only).
    pub rejected: BTreeMap<String, u64>,
}

impl LinkStatus {
    /// The row for neighbour `peer` from the gossip peer's counters; `dense_update_len` is
    /// what one update costs as a dense frame.
    pub fn new(peer: String, link: &LinkStats, dense_update_len: usize) -> LinkStatus {
        LinkStatus {
            peer,
            bytes_sent: link.bytes_sent,
            bytes_received: link.bytes_received,
            updates_sent: link.updates_sent,
            update_bytes_sent: link.update_bytes_sent,
            dense_update_bytes: link.updates_sent * dense_update_len as u64,
            updates_applied: link.updates_applied,
            bits_per_entry: link.bits_per_entry(),
            entropy_bound_bits_per_entry: link.entropy_bound_bits_per_entry(),
            staleness: link.last_staleness,
            stale_dropped: link.stale_dropped,
            damped_contributions: link.damped_contributions,
            clipped_contributions: link.clipped_contributions,
            rejected: link
                .rejected
                .by_label()
                .into_iter()
                .filter(|(_, n)| *n > 0)
                .map(|(l, n)| (l.to_string(), n))
                .collect(),
        }
    }

    /// Total rejections on this edge.
    pub fn rejected_total(&self) -> u64 {
        self.rejected.values().sum()
    }
}

/// The last update this node sent (`/status` `update`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct UpdateStatus {
    /// Round it was sent in.
    pub round: u64,
    /// Entries it carried over the parameter count: for the threshold codec, the share of
    /// entries of x − x̂ above τ.
    pub density: f64,
    /// ‖x − x̂‖ before the update.
    pub input_norm: f64,
    /// ‖x − x̂‖ after it: the residual error feedback carries to later rounds.
    pub residual_norm: f64,
}

impl From<UpdateFigures> for UpdateStatus {
    fn from(f: UpdateFigures) -> UpdateStatus {
        UpdateStatus {
            round: f.round,
            density: f.density(),
            input_norm: f.input_norm,
            residual_norm: f.residual_norm,
        }
    }
}

/// Cap of [`Status::dialed_addrs`].
pub const MAX_DIALED_ADDRS: usize = 64;

/// A node's status as served on `/status`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Status {
    /// libp2p peer id.
    pub peer_id: String,
    /// Listen multiaddrs (with `/p2p/<id>`).
    pub listen: Vec<String>,
    /// The HTTP endpoint.
    pub http: Option<String>,
    /// Shard index and count.
    pub shard: (usize, usize),
    /// Coarse peer phase (`starting`, `wants-compute`, `mixing`, ...).
    pub phase: String,
    /// Next round to run.
    pub round: u64,
    /// Training stopped (`run.max_rounds` reached); the node keeps serving.
    pub done: bool,
    /// Mean minibatch loss of the last round.
    pub loss: Option<f32>,
    /// Test accuracy at the last evaluation.
    pub accuracy: Option<f32>,
    /// Test loss at the last evaluation.
    pub test_loss: Option<f32>,
    /// Round of the last evaluation.
    pub evaluated_round: Option<u64>,
    /// Differential privacy, when on: the (ε, δ) spent so far.
    #[serde(default)]
    pub privacy: Option<PrivacyStatus>,
    /// Current neighbours (edges both ends agreed on).
    pub neighbours: Vec<String>,
    /// The most neighbours the gossip peer had at once this run (the neighbour rule bounds
    /// it; `murmur bench` checks it).
    #[serde(default)]
    pub peak_degree: usize,
    /// The neighbour rule this node chooses its neighbours by (`topology.rule`).
    #[serde(default)]
    pub neighbour_rule: String,
    /// Seconds from the trainer's start to the first round it completed this run: the
    /// start-up cost (meeting the neighbours) before training proper.
    #[serde(default)]
    pub first_round_secs: Option<f64>,
    /// Each neighbour's path: direct, or through a relay.
    #[serde(default)]
    pub neighbour_paths: BTreeMap<String, LinkPath>,
    /// Per-neighbour figures from the gossip peer, in peer-id order.
    #[serde(default)]
    pub links: Vec<LinkStatus>,
    /// Round-trip time to each neighbour (libp2p ping), milliseconds.
    #[serde(default)]
    pub link_rtt_ms: BTreeMap<String, f64>,
    /// The neighbours each neighbour reported having (its `Neighbours` frames): the part of
    /// the swarm two hops out, which the dashboard draws.
    #[serde(default)]
    pub reported_neighbours: BTreeMap<String, Vec<String>>,
    /// The last update sent: density and the unsent residual.
    #[serde(default)]
    pub update: Option<UpdateStatus>,
    /// Resident memory of the node's process (`VmRSS`), where the system reports it.
    #[serde(default)]
    pub resident_bytes: Option<u64>,
    /// The model's size as f32 (4 × parameters): what `resident_bytes` compares against.
    #[serde(default)]
    pub model_bytes: u64,
    /// Reachability, relays, hole punches and relayed traffic.
    #[serde(default)]
    pub nat: NatStatus,
    /// Peers discovered that speak `/murmur/gossip/1`.
    pub known_peers: usize,
    /// Peers with an open connection.
    pub connected_peers: usize,
    /// Distinct addresses this node dialled successfully since it started (at most
    /// [`MAX_DIALED_ADDRS`]): shows which path outbound connections took.
    #[serde(default)]
    pub dialed_addrs: Vec<String>,
    /// Gossip frame bytes handed to the network.
    pub bytes_sent: u64,
    /// Gossip frame bytes received.
    pub bytes_received: u64,
    /// Model updates sent.
    pub updates_sent: u64,
    /// Bytes of those updates.
    pub update_bytes_sent: u64,
    /// What those updates would have cost as dense f32 vectors.
    pub dense_update_bytes: u64,
    /// Frames the gossip peer rejected (decode errors, wrong dimension, non-finite, ...).
    pub rejected_protocol: u64,
    /// Frames refused by access control (rate, size, allow-list, over-full queue).
    pub rejected_access: u64,
    /// Updates received twice or replayed (sequence number already applied): dropped without
    /// a resync, their bits being in the copy already.
    #[serde(default)]
    pub duplicates_dropped: u64,
    /// Chunks of chunked snapshots (models above `gossip.snapshot_chunk_values` values)
    /// served to neighbours.
    #[serde(default)]
    pub snapshot_chunks_sent: u64,
    /// Chunks of chunked snapshots received and verified against their hash.
    #[serde(default)]
    pub snapshot_chunks_received: u64,
    /// DiLoCo outer steps taken this run (`gossip.outer_lr`; one per round when on).
    #[serde(default)]
    pub outer_steps: u64,
    /// Where the neighbours' public copies live: `per-neighbour` or `aggregate` (what
    /// `gossip.copies = "auto"` chose for this model's size).
    #[serde(default)]
    pub copies: String,
    /// Round this node resumed from (a checkpoint), if any.
    pub resumed_from: Option<u64>,
    /// Neighbour whose model this node adopted on joining, and the round.
    pub adopted: Option<(String, u64)>,
    /// How many neighbours' vectors that model is made of (the average of their public
    /// copies, `gossip.join_model = "average"`; 1 with a donor).
    #[serde(default)]
    pub adopted_donors: Option<u32>,
    /// Local steps taken before the adoption (0: the model was synced before training).
    pub steps_before_adoption: Option<u64>,
    /// Checkpoints written.
    pub checkpoints: u64,
    /// Round of the newest checkpoint written.
    pub last_checkpoint: Option<u64>,
    /// Where the training thread's time went.
    pub timing: Timing,
    /// Seconds since start.
    pub uptime_secs: f64,
}

/// Shared, lock-protected status (short critical sections only).
pub type SharedStatus = Arc<Mutex<Status>>;

/// This process's resident memory, from `/proc/self/status` (`None` off Linux).
pub fn resident_bytes() -> Option<u64> {
    parse_vm_rss(&std::fs::read_to_string("/proc/self/status").ok()?)
}

/// CPU time (user + system) the process `pid` has used so far, in seconds, from
/// `/proc/<pid>/stat` (`None` off Linux or once it has gone).
pub fn process_cpu_secs(pid: u32) -> Option<f64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let ticks_per_sec = rustix::param::clock_ticks_per_second();
    (ticks_per_sec > 0).then_some(())?;
    Some(parse_cpu_ticks(&text)? as f64 / ticks_per_sec as f64)
}

/// utime + stime (fields 14 and 15) of a `/proc/<pid>/stat` line, in clock ticks. The
/// command name (field 2) may hold spaces and parentheses, so fields are counted from the
/// last `)`.
fn parse_cpu_ticks(text: &str) -> Option<u64> {
    let after_name = &text[text.rfind(')')? + 1..];
    let mut fields = after_name.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// The `VmRSS:` line of a `/proc/<pid>/status` text, in bytes.
fn parse_vm_rss(text: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with("VmRSS:"))?;
    let mut parts = line["VmRSS:".len()..].split_whitespace();
    let value: u64 = parts.next()?.parse().ok()?;
    match parts.next()? {
        "kB" => Some(value * 1024),
        _ => None,
    }
}

/// One point of [`History`]: the node after one completed round.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    /// Seconds since the node started.
    pub t: f64,
    /// Rounds completed.
    pub round: u64,
    /// Mean minibatch loss of that round.
    pub loss: Option<f32>,
    /// Test accuracy at the newest evaluation.
    pub accuracy: Option<f32>,
    /// Gossip bytes sent so far.
    pub bytes_sent: u64,
    /// What the updates sent so far would have cost as dense f32 vectors.
    pub dense_update_bytes: u64,
    /// ‖x − x̂‖ after the last update.
    pub residual_norm: Option<f64>,
}

/// Points kept by [`History`] at most.
pub const HISTORY_POINTS: usize = 512;

/// The node's recent past at bounded size, for charts: one sample every `stride` rounds.
/// When it fills, every other sample is dropped and the stride doubles, so it always spans
/// the whole run, with at most [`HISTORY_POINTS`] points, evenly spaced in rounds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct History {
    /// Rounds between kept samples (a power of two).
    pub stride: u64,
    /// The samples, oldest first.
    pub points: Vec<Sample>,
    /// Rounds offered since the last kept sample.
    #[serde(skip)]
    since_kept: u64,
}

impl Default for History {
    fn default() -> History {
        History {
            stride: 1,
            points: Vec::new(),
            since_kept: 0,
        }
    }
}

impl History {
    /// Offers the sample of one more completed round; kept if it falls on the stride.
    pub fn push(&mut self, sample: Sample) {
        if !self.points.is_empty() {
            self.since_kept += 1;
            if self.since_kept < self.stride {
                return;
            }
        }
        self.since_kept = 0;
        self.points.push(sample);
        if self.points.len() >= HISTORY_POINTS {
            // Keep the even positions: equally spaced at twice the stride.
            let mut i = 0;
            self.points.retain(|_| {
                i += 1;
                i % 2 == 1
            });
            self.stride *= 2;
            // The newest point kept is half a (new) stride before the newest round offered.
            self.since_kept = self.stride / 2;
        }
    }
}

/// Shared history (the training thread pushes, the HTTP side reads).
pub type SharedHistory = Arc<Mutex<History>>;

/// Neighbours with per-link series at most: the series of the others exist only in the
/// node's totals and in `/status`. Bounds the label cardinality of the `murmur_link_*`
/// families whatever the degree (the neighbour rule keeps it near log n; 32 covers swarms
/// far larger than any tested).
pub const MAX_LINK_SERIES: usize = 32;

/// Why the swarm loop (access control and queues, before the gossip peer sees a frame)
/// dropped a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AccessReject {
    /// A connection the allow-list or the limits refused.
    ConnectionRefused,
    /// A frame over the cap, refused before it was read.
    FrameTooLarge,
    /// The training thread's inbox was full.
    InboxFull,
    /// The gossip envelope did not parse.
    MalformedEnvelope,
    /// A gossip frame from a peer outside the agreed edge set.
    NotNeighbour,
    /// The outgoing queue to a neighbour was full.
    OutboxFull,
    /// A connection over its frames-per-second budget.
    RateLimit,
    /// A joiner's model download on a relayed-only connection.
    DownloadOverRelay,
}

impl AccessReject {
    /// Every reason, in label order.
    pub const ALL: [AccessReject; 8] = [
        AccessReject::ConnectionRefused,
        AccessReject::DownloadOverRelay,
        AccessReject::FrameTooLarge,
        AccessReject::InboxFull,
        AccessReject::MalformedEnvelope,
        AccessReject::NotNeighbour,
        AccessReject::OutboxFull,
        AccessReject::RateLimit,
    ];

    /// The `reason` label of `murmur_rejected_total`.
    pub fn label(self) -> &'static str {
        match self {
            AccessReject::ConnectionRefused => "connection-refused",
            AccessReject::FrameTooLarge => "frame-too-large",
            AccessReject::InboxFull => "inbox-full",
            AccessReject::MalformedEnvelope => "malformed-envelope",
            AccessReject::NotNeighbour => "not-neighbour",
            AccessReject::OutboxFull => "outbox-full",
            AccessReject::RateLimit => "rate-limit",
            AccessReject::DownloadOverRelay => "download-over-relay",
        }
    }
}

/// murmur's own Prometheus metrics.
#[derive(Clone, Debug, Default)]
pub struct Metrics {
    /// Next round to run.
    pub round: Gauge,
    /// Last round's mean minibatch loss.
    pub loss: Gauge<f64, AtomicU64>,
    /// Last test accuracy.
    pub accuracy: Gauge<f64, AtomicU64>,
    /// Current neighbour count.
    pub neighbours: Gauge,
    /// Discovered murmur peers.
    pub known_peers: Gauge,
    /// Gossip bytes sent.
    pub bytes_sent: Counter,
    /// Gossip bytes received.
    pub bytes_received: Counter,
    /// Dense-equivalent bytes of the updates sent.
    pub dense_update_bytes: Counter,
    /// Rejected frames by reason.
    pub rejected: Family<Vec<(String, String)>, Counter>,
    /// Duplicate or replayed updates dropped.
    pub duplicates_dropped: Counter,
    /// Seconds of local compute.
    pub compute_seconds: Counter<f64, AtomicU64>,
    /// Seconds waiting on neighbours.
    pub wait_seconds: Counter<f64, AtomicU64>,
    /// Checkpoints written.
    pub checkpoints: Counter,
    /// 1 for AutoNAT's current verdict, 0 for the other states.
    pub reachability: Family<Vec<(String, String)>, Gauge>,
    /// Relays holding a reservation for this node.
    pub relay_reservations: Gauge,
    /// Neighbours reached only through a relay.
    pub relayed_neighbours: Gauge,
    /// Gossip bytes over relayed-only connections, by direction.
    pub relayed_bytes: Family<Vec<(String, String)>, Counter>,
    /// DCUtR hole punches by result.
    pub hole_punches: Family<Vec<(String, String)>, Counter>,
    /// Circuits this node relayed for others.
    pub circuits_served: Counter,
    /// Privacy on: ε spent (registered only then: 0 would claim perfect privacy).
    pub privacy_epsilon: Gauge<f64, AtomicU64>,
    /// Privacy on: δ of that ε.
    pub privacy_delta: Gauge<f64, AtomicU64>,
    /// ‖x − x̂‖ after the last update sent.
    pub residual_norm: Gauge<f64, AtomicU64>,
    /// Entries of the last update over the parameter count.
    pub update_density: Gauge<f64, AtomicU64>,
    /// Resident memory of the process.
    pub resident_bytes: Gauge,
    /// The model's f32 size.
    pub model_bytes: Gauge,
    /// Per-link gossip bytes sent, by `peer`.
    pub link_bytes_sent: Family<Vec<(String, String)>, Counter>,
    /// Per-link gossip bytes received.
    pub link_bytes_received: Family<Vec<(String, String)>, Counter>,
    /// Per-link updates sent.
    pub link_updates_sent: Family<Vec<(String, String)>, Counter>,
    /// Per-link updates applied to the neighbour's copy.
    pub link_updates_applied: Family<Vec<(String, String)>, Counter>,
    /// Per-link bytes per sent entry (bits / 8: Prometheus names its base unit bytes).
    pub link_bytes_per_entry: Family<Vec<(String, String)>, Gauge<f64, AtomicU64>>,
    /// Per-link entropy bound per sent entry, in bytes.
    pub link_entropy_bound_bytes_per_entry: Family<Vec<(String, String)>, Gauge<f64, AtomicU64>>,
    /// Per-link staleness of the newest contribution mixed, in rounds.
    pub link_staleness_rounds: Family<Vec<(String, String)>, Gauge>,
    /// Per-link contributions dropped for staleness.
    pub link_stale_dropped: Family<Vec<(String, String)>, Counter>,
    /// Per-link contributions damped for staleness.
    pub link_damped: Family<Vec<(String, String)>, Counter>,
    /// Per-link frames rejected by the gossip peer.
    pub link_rejected: Family<Vec<(String, String)>, Counter>,
    /// Per-link round-trip time (libp2p ping), seconds.
    pub link_rtt_seconds: Family<Vec<(String, String)>, Gauge<f64, AtomicU64>>,
}

impl Metrics {
    /// Registers every metric under the `murmur` prefix.
    pub fn register(&self, registry: &mut Registry) {
        let r = registry.sub_registry_with_prefix("murmur");
        r.register("round", "Next training round", self.round.clone());
        r.register(
            "loss",
            "Mean minibatch loss of the last round",
            self.loss.clone(),
        );
        r.register(
            "accuracy",
            "Test accuracy at the last evaluation",
            self.accuracy.clone(),
        );
        r.register(
            "neighbours",
            "Current gossip neighbours",
            self.neighbours.clone(),
        );
        r.register(
            "known_peers",
            "Discovered murmur peers",
            self.known_peers.clone(),
        );
        r.register("bytes_sent", "Gossip bytes sent", self.bytes_sent.clone());
        r.register(
            "bytes_received",
            "Gossip bytes received",
            self.bytes_received.clone(),
        );
        r.register(
            "dense_update_bytes",
            "Bytes the updates sent would take as dense f32",
            self.dense_update_bytes.clone(),
        );
        r.register(
            "rejected",
            "Rejected frames by reason",
            self.rejected.clone(),
        );
        r.register(
            "duplicates_dropped",
            "Updates received twice or replayed, dropped without a resync",
            self.duplicates_dropped.clone(),
        );
        r.register(
            "compute_seconds",
            "Seconds spent in local SGD steps",
            self.compute_seconds.clone(),
        );
        r.register(
            "wait_seconds",
            "Seconds rounds waited for neighbours",
            self.wait_seconds.clone(),
        );
        r.register(
            "checkpoints",
            "Checkpoints written",
            self.checkpoints.clone(),
        );
        r.register(
            "reachability",
            "AutoNAT verdict: 1 for the current state (public, private, unknown)",
            self.reachability.clone(),
        );
        r.register(
            "relay_reservations",
            "Relays holding a reservation for this node",
            self.relay_reservations.clone(),
        );
        r.register(
            "relayed_neighbours",
            "Neighbours reached only through a relay",
            self.relayed_neighbours.clone(),
        );
        r.register(
            "relayed_bytes",
            "Gossip bytes over relayed-only connections",
            self.relayed_bytes.clone(),
        );
        r.register(
            "hole_punches",
            "DCUtR hole punches on relayed connections, by result",
            self.hole_punches.clone(),
        );
        r.register(
            "circuits_served",
            "Relay circuits this node accepted between other peers",
            self.circuits_served.clone(),
        );
        r.register(
            "residual_norm",
            "L2 norm of x minus x_hat after the last update sent (what error feedback carries)",
            self.residual_norm.clone(),
        );
        r.register(
            "update_density",
            "Entries of the last update sent over the parameter count",
            self.update_density.clone(),
        );
        r.register(
            "resident_bytes",
            "Resident memory of the node's process (VmRSS)",
            self.resident_bytes.clone(),
        );
        r.register(
            "model_bytes",
            "The model's size as f32 (4 bytes per parameter)",
            self.model_bytes.clone(),
        );
        r.register(
            "link_bytes_sent",
            "Gossip bytes sent to each neighbour",
            self.link_bytes_sent.clone(),
        );
        r.register(
            "link_bytes_received",
            "Gossip bytes received from each neighbour",
            self.link_bytes_received.clone(),
        );
        r.register(
            "link_updates_sent",
            "Updates sent to each neighbour",
            self.link_updates_sent.clone(),
        );
        r.register(
            "link_updates_applied",
            "Each neighbour's updates applied to its copy",
            self.link_updates_applied.clone(),
        );
        r.register(
            "link_bytes_per_entry",
            "Bytes per entry of the updates sent to each neighbour (bits / 8)",
            self.link_bytes_per_entry.clone(),
        );
        r.register(
            "link_entropy_bound_bytes_per_entry",
            "Entropy bound (H_b(p)/p + 1) / 8 bytes per entry of the updates sent to each neighbour",
            self.link_entropy_bound_bytes_per_entry.clone(),
        );
        r.register(
            "link_staleness_rounds",
            "Rounds the newest contribution of each neighbour lagged the round that mixed it",
            self.link_staleness_rounds.clone(),
        );
        r.register(
            "link_stale_dropped",
            "Contributions of each neighbour dropped for staleness",
            self.link_stale_dropped.clone(),
        );
        r.register(
            "link_damped",
            "Contributions of each neighbour damped for staleness",
            self.link_damped.clone(),
        );
        r.register(
            "link_rejected",
            "Frames of each neighbour the gossip peer rejected",
            self.link_rejected.clone(),
        );
        r.register(
            "link_rtt_seconds",
            "Round-trip time to each neighbour (libp2p ping)",
            self.link_rtt_seconds.clone(),
        );
        self.set_reachability(Reachability::Unknown);
        for direction in ["received", "sent"] {
            drop(
                self.relayed_bytes
                    .get_or_create(&label("direction", direction)),
            );
        }
        for result in ["failure", "success"] {
            drop(self.hole_punches.get_or_create(&label("result", result)));
        }
        for reason in Self::reject_reasons() {
            drop(
                self.rejected
                    .get_or_create(&vec![("reason".to_string(), reason.to_string())]),
            );
        }
    }

    /// Sets `murmur_reachability`: 1 for `now`, 0 for the other states.
    pub fn set_reachability(&self, now: Reachability) {
        for state in Reachability::ALL {
            self.reachability
                .get_or_create(&label("state", state.label()))
                .set(i64::from(state == now));
        }
    }

    /// Counts gossip bytes over a relayed-only connection (`sent` or `received`).
    pub fn relayed(&self, direction: &str, bytes: usize) {
        self.relayed_bytes
            .get_or_create(&label("direction", direction))
            .inc_by(bytes as u64);
    }

    /// Counts one finished hole punch.
    pub fn hole_punch(&self, success: bool) {
        let result = if success { "success" } else { "failure" };
        self.hole_punches
            .get_or_create(&label("result", result))
            .inc();
    }

    /// Registers the privacy gauges (`murmur_privacy_epsilon`, `murmur_privacy_delta`); only
    /// for a node with privacy on.
    pub fn register_privacy(&self, registry: &mut Registry) {
        let r = registry.sub_registry_with_prefix("murmur");
        r.register(
            "privacy_epsilon",
            "Epsilon of the peer-level (epsilon, delta) differential privacy spent by this node's data",
            self.privacy_epsilon.clone(),
        );
        r.register(
            "privacy_delta",
            "Delta of the reported differential privacy guarantee",
            self.privacy_delta.clone(),
        );
    }

    /// Every reason a frame can be rejected for, so each `murmur_rejected_total` series exists
    /// (at 0) from the start: a dashboard or alert sees "no rejections", not "no data". The
    /// swarm loop's [`AccessReject`] labels, then the gossip peer's
    /// ([`RejectReason::LABELS`]); `not-neighbour` is one series for both layers.
    pub fn reject_reasons() -> Vec<&'static str> {
        let mut all: Vec<&'static str> = AccessReject::ALL.iter().map(|r| r.label()).collect();
        for l in RejectReason::LABELS {
            if !all.contains(&l) {
                all.push(l);
            }
        }
        all
    }

    /// Counts one rejection by the gossip peer.
    pub fn reject_gossip(&self, reason: &RejectReason) {
        self.reject(reason.label());
    }

    /// Counts one rejection by the swarm loop.
    pub fn reject_access(&self, reason: AccessReject) {
        self.reject(reason.label());
    }

    /// Counts one rejection under `reason` (one of [`Metrics::reject_reasons`]).
    fn reject(&self, reason: &str) {
        self.rejected
            .get_or_create(&vec![("reason".to_string(), reason.to_string())])
            .inc();
    }
}

/// The `murmur_link_*` series the training thread exports: which neighbours have them (at
/// most [`MAX_LINK_SERIES`], first come first served) and the counters last exported, so
/// each export adds the difference. An edge that came back counts from zero in the gossip
/// peer; its series are then recreated from zero, which Prometheus reads as a counter reset.
#[derive(Debug, Default)]
pub struct LinkExport {
    /// Exported neighbour → its counters at the last export.
    last: BTreeMap<String, LinkStats>,
}

impl LinkExport {
    /// Exports the current neighbours' figures; neighbours gone since the last call lose
    /// their series.
    pub fn export(&mut self, metrics: &Metrics, links: &[(String, &LinkStats)]) {
        let current: std::collections::BTreeSet<&str> =
            links.iter().map(|(p, _)| p.as_str()).collect();
        let gone: Vec<String> = self
            .last
            .keys()
            .filter(|p| !current.contains(p.as_str()))
            .cloned()
            .collect();
        for peer in gone {
            self.last.remove(&peer);
            metrics.remove_link(&peer);
        }
        for (peer, link) in links {
            if !self.last.contains_key(peer) && self.last.len() >= MAX_LINK_SERIES {
                continue;
            }
            let before = self.last.remove(peer).unwrap_or_default();
            let before = if link.bytes_sent < before.bytes_sent
                || link.bytes_received < before.bytes_received
            {
                // The edge came back since: its counters restarted.
                metrics.remove_link(peer);
                LinkStats::default()
            } else {
                before
            };
            let l = label("peer", peer);
            let add = |family: &Family<Vec<(String, String)>, Counter>, now: u64, was: u64| {
                family.get_or_create(&l).inc_by(now.saturating_sub(was));
            };
            add(&metrics.link_bytes_sent, link.bytes_sent, before.bytes_sent);
            add(
                &metrics.link_bytes_received,
                link.bytes_received,
                before.bytes_received,
            );
            add(
                &metrics.link_updates_sent,
                link.updates_sent,
                before.updates_sent,
            );
            add(
                &metrics.link_updates_applied,
                link.updates_applied,
                before.updates_applied,
            );
            add(
                &metrics.link_stale_dropped,
                link.stale_dropped,
                before.stale_dropped,
            );
            add(
                &metrics.link_damped,
                link.damped_contributions,
                before.damped_contributions,
            );
            add(
                &metrics.link_rejected,
                link.rejected.total(),
                before.rejected.total(),
            );
            if let Some(b) = link.bits_per_entry() {
                metrics.link_bytes_per_entry.get_or_create(&l).set(b / 8.0);
            }
            if let Some(b) = link.entropy_bound_bits_per_entry() {
                metrics
                    .link_entropy_bound_bytes_per_entry
                    .get_or_create(&l)
                    .set(b / 8.0);
            }
            if let Some(st) = link.last_staleness {
                metrics
                    .link_staleness_rounds
                    .get_or_create(&l)
                    .set(st.min(i64::MAX as u64) as i64);
            }
            self.last.insert(peer.clone(), (*link).clone());
        }
    }

    /// Neighbours that have series now.
    pub fn exported(&self) -> impl Iterator<Item = &str> {
        self.last.keys().map(String::as_str)
    }
}

impl Metrics {
    /// Removes every training-side `murmur_link_*` series of `peer`.
    fn remove_link(&self, peer: &str) {
        let l = label("peer", peer);
        for family in [
            &self.link_bytes_sent,
            &self.link_bytes_received,
            &self.link_updates_sent,
            &self.link_updates_applied,
            &self.link_stale_dropped,
            &self.link_damped,
            &self.link_rejected,
        ] {
            family.remove(&l);
        }
        self.link_bytes_per_entry.remove(&l);
        self.link_entropy_bound_bytes_per_entry.remove(&l);
        self.link_staleness_rounds.remove(&l);
    }

    /// Sets the round-trip time to `peer` (at most [`MAX_LINK_SERIES`] peers have one).
    pub fn set_link_rtt(&self, peer: &str, rtt: std::time::Duration, exported: usize) {
        let l = label("peer", peer);
        if exported < MAX_LINK_SERIES || self.link_rtt_seconds.get(&l).is_some() {
            self.link_rtt_seconds
                .get_or_create(&l)
                .set(rtt.as_secs_f64());
        }
    }

    /// Drops the round-trip time series of a neighbour that went down.
    pub fn remove_link_rtt(&self, peer: &str) {
        self.link_rtt_seconds.remove(&label("peer", peer));
    }
}

/// One label pair.
fn label(key: &str, value: &str) -> Vec<(String, String)> {
    vec![(key.to_string(), value.to_string())]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_encode_with_the_murmur_prefix_and_reasons() {
        let mut registry = Registry::default();
        let metrics = Metrics::default();
        metrics.register(&mut registry);
        metrics.round.set(12);
        metrics.reject_access(AccessReject::RateLimit);
        metrics.reject_gossip(&RejectReason::RateLimited);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        assert!(text.contains("murmur_round 12"), "{text}");
        assert!(
            text.contains("murmur_rejected_total{reason=\"rate-limit\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("murmur_rejected_total{reason=\"wrong-dimension\"} 0"),
            "every reason is there from the start: {text}"
        );
    }

    #[test]
    fn nat_series_exist_from_the_start_and_one_reachability_state_is_set() {
        let mut registry = Registry::default();
        let metrics = Metrics::default();
        metrics.register(&mut registry);
        let encode = |registry: &Registry| {
            let mut text = String::new();
            prometheus_client::encoding::text::encode(&mut text, registry).unwrap();
            text
        };
        let text = encode(&registry);
        for series in [
            "murmur_reachability{state=\"unknown\"} 1",
            "murmur_reachability{state=\"private\"} 0",
            "murmur_relayed_bytes_total{direction=\"sent\"} 0",
            "murmur_hole_punches_total{result=\"failure\"} 0",
            "murmur_rejected_total{reason=\"download-over-relay\"} 0",
            "murmur_relay_reservations 0",
        ] {
            assert!(text.contains(series), "{series} missing:\n{text}");
        }
        metrics.set_reachability(Reachability::Private);
        metrics.hole_punch(false);
        metrics.relayed("sent", 300);
        let text = encode(&registry);
        assert!(
            text.contains("murmur_reachability{state=\"private\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("murmur_reachability{state=\"unknown\"} 0"),
            "{text}"
        );
        assert!(
            text.contains("murmur_hole_punches_total{result=\"failure\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("murmur_relayed_bytes_total{direction=\"sent\"} 300"),
            "{text}"
        );
    }

    #[test]
    fn privacy_gauges_exist_only_when_registered() {
        let mut registry = Registry::default();
        let metrics = Metrics::default();
        metrics.register(&mut registry);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        assert!(!text.contains("privacy"), "{text}");
        metrics.register_privacy(&mut registry);
        metrics.privacy_epsilon.set(3.25);
        metrics.privacy_delta.set(1e-5);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        assert!(text.contains("murmur_privacy_epsilon 3.25"), "{text}");
        assert!(text.contains("# TYPE murmur_privacy_delta gauge"), "{text}");
    }

    #[test]
    fn history_stays_bounded_evenly_spaced_and_spans_the_whole_run() {
        let mut h = History::default();
        for n in [1u64, 7, 511, 512, 513, 1000, 5000, 70_000] {
            let mut h2 = History::default();
            for round in 1..=n {
                h2.push(Sample {
                    round,
                    ..Sample::default()
                });
            }
            let rounds: Vec<u64> = h2.points.iter().map(|p| p.round).collect();
            assert!(
                rounds.len() < HISTORY_POINTS,
                "{n}: {} points",
                rounds.len()
            );
            assert_eq!(rounds[0], 1, "{n}: starts at the first round");
            assert!(
                rounds.windows(2).all(|w| w[1] - w[0] == h2.stride),
                "{n}: spaced by the stride {}: {rounds:?}",
                h2.stride
            );
            assert!(
                n - rounds.last().unwrap() < h2.stride,
                "{n}: reaches the newest"
            );
            if n >= HISTORY_POINTS as u64 {
                assert!(rounds.len() >= HISTORY_POINTS / 2 - 1, "{n}: keeps detail");
            }
            h = h2;
        }
        assert!(h.stride.is_power_of_two());
    }

    #[test]
    fn link_series_follow_the_counters_restart_with_the_edge_and_stay_bounded() {
        let mut registry = Registry::default();
        let metrics = Metrics::default();
        metrics.register(&mut registry);
        let encode = |registry: &Registry| {
            let mut text = String::new();
            prometheus_client::encoding::text::encode(&mut text, registry).unwrap();
            text
        };
        let mut export = LinkExport::default();
        let mut a = LinkStats {
            bytes_sent: 100,
            update_entries_sent: 10,
            update_bytes_sent: 20,
            update_entropy_bits: 120.0,
            last_staleness: Some(2),
            ..LinkStats::default()
        };
        export.export(&metrics, &[("a".to_string(), &a)]);
        a.bytes_sent = 250;
        export.export(&metrics, &[("a".to_string(), &a)]);
        let text = encode(&registry);
        for series in [
            "murmur_link_bytes_sent_total{peer=\"a\"} 250",
            "murmur_link_bytes_per_entry{peer=\"a\"} 2.0",
            "murmur_link_entropy_bound_bytes_per_entry{peer=\"a\"} 1.5",
            "murmur_link_staleness_rounds{peer=\"a\"} 2",
        ] {
            assert!(text.contains(series), "{series} missing:\n{text}");
        }
        // The edge came back: the peer's counters restarted below what was exported.
        let again = LinkStats {
            bytes_sent: 30,
            ..LinkStats::default()
        };
        export.export(&metrics, &[("a".to_string(), &again)]);
        assert!(
            encode(&registry).contains("murmur_link_bytes_sent_total{peer=\"a\"} 30"),
            "{}",
            encode(&registry)
        );
        // A neighbour gone loses its series.
        export.export(&metrics, &[]);
        assert!(!encode(&registry).contains("peer=\"a\""));
        // At most MAX_LINK_SERIES neighbours get series, however many there are.
        let many: Vec<(String, LinkStats)> = (0..MAX_LINK_SERIES + 8)
            .map(|i| {
                (
                    format!("p{i:03}"),
                    LinkStats {
                        bytes_sent: 1,
                        ..LinkStats::default()
                    },
                )
            })
            .collect();
        let refs: Vec<(String, &LinkStats)> = many.iter().map(|(p, l)| (p.clone(), l)).collect();
        export.export(&metrics, &refs);
        assert_eq!(export.exported().count(), MAX_LINK_SERIES);
        let text = encode(&registry);
        assert_eq!(
            text.lines()
                .filter(|l| l.starts_with("murmur_link_bytes_sent_total{"))
                .count(),
            MAX_LINK_SERIES
        );
    }

    #[test]
    fn resident_memory_is_read_in_bytes_from_vm_rss() {
        let text = "Name:\tmurmur\nVmPeak:\t  9000 kB\nVmRSS:\t   2048 kB\nThreads:\t4\n";
        assert_eq!(parse_vm_rss(text), Some(2048 * 1024));
        assert_eq!(parse_vm_rss("VmRSS:\t12 MB\n"), None, "unknown unit");
        assert_eq!(parse_vm_rss("Name: x\n"), None);
        if cfg!(target_os = "linux") {
            // A test process holds at least its own code and this test's buffers.
            let rss = resident_bytes().expect("Linux reports VmRSS");
            let buffer = vec![1u8; 64 << 20];
            let after = resident_bytes().unwrap();
            // Other tests of this binary may free memory meanwhile: a margin of 16 MiB.
            assert!(after >= rss + (48 << 20), "{rss} -> {after}");
            drop(buffer);
        }
    }

    #[test]
    fn cpu_time_is_read_from_proc_stat_after_the_command_name() {
        // A command name with spaces and a parenthesis does not shift the fields.
        let stat =
            "4242 (murmur (x) y) S 1 4242 4242 0 -1 4194560 812 0 0 0 173 41 0 0 20 0 9 0 77 0";
        assert_eq!(parse_cpu_ticks(stat), Some(173 + 41));
        assert_eq!(parse_cpu_ticks("4242 (murmur) S 1 2"), None, "truncated");
        if cfg!(target_os = "linux") {
            let cpu = || process_cpu_secs(std::process::id()).expect("Linux has /proc/<pid>/stat");
            let before = cpu();
            // Spin until the kernel has charged this process 50 ms more (10 s at most).
            let spin = std::time::Instant::now();
            let mut x = 0u64;
            while cpu() < before + 0.05 && spin.elapsed() < std::time::Duration::from_secs(10) {
                for _ in 0..10_000 {
                    x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(1));
                }
            }
            let (used, wall) = (cpu() - before, spin.elapsed().as_secs_f64());
            let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
            // Seconds, not ticks: no more than every core for the whole time (plus a tick).
            assert!(
                used >= 0.05 && used <= cores * wall + 0.02,
                "{used} s in {wall} s"
            );
        }
    }

    #[test]
    fn shares_split_the_round_time() {
        let t = Timing {
            compute_secs: 1.0,
            gossip_secs: 1.0,
            wait_secs: 2.0,
            rounds: 3,
        };
        assert_eq!(t.wait_share(), 0.5);
        assert_eq!(t.compute_share(), 0.25);
        assert_eq!(Timing::default().wait_share(), 0.0);
    }
}
