//! The networking side: one event loop owning the libp2p swarm (TCP + QUIC, noise, yamux,
//! identify, ping, Kademlia, optional mDNS, connection limits, optional allow-list and
//! pre-shared key) and murmur's `/murmur/gossip/1` protocol.
//!
//! # Live topology
//! Which peers are neighbours is decided by the topology crate's sans-IO
//! [`EdgeAgreement`]: it applies the neighbour rule to the murmur peers this node knows (found
//! through Kademlia walks, identify and, if enabled, mDNS), runs the versioned, acknowledged
//! `Select` handshake with each chosen peer, and reports an edge up to the training thread only
//! when both ends chose each other and a connection exists, so the peer never mixes with a
//! half-agreed edge. A lost `Select` (two peers dialling each other at once get two
//! connections, and the one closed may carry it) is repaired by the handshake's answers and
//! resends instead of leaving a one-sided edge. This loop only does the I/O: it feeds the
//! agreement what the swarm saw and carries out the actions it queues.
//!
//! # Access control
//! A pre-shared key (libp2p pnet) wraps every TCP connection before the noise handshake, so a
//! node without the key cannot complete a connection (QUIC is disabled under a key: pnet only
//! protects stream transports). An optional allow-list denies every other peer id at
//! connection time. Each peer's frames go through token buckets (frames/s and bytes/s); frames
//! over the size cap fail the stream before allocation. Every refusal is counted as a
//! rejection (`murmur_rejected_total{reason=..}` and `rejected_access` in the status).

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use libp2p::core::upgrade::Version;
use libp2p::futures::StreamExt;
use libp2p::identity::Keypair;
use libp2p::kad::{self, store::MemoryStore};
use libp2p::metrics::Recorder;
use libp2p::pnet::{PnetConfig, PreSharedKey};
use libp2p::swarm::behaviour::toggle::Toggle;
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{
    Multiaddr, PeerId, StreamProtocol, Swarm, SwarmBuilder, Transport, allow_block_list, autonat,
    connection_limits, dcutr, identify, mdns, noise, ping, relay, tcp, yamux,
};
use prometheus_client::registry::Registry;
use tokio::sync::mpsc;

use crate::config::Config;
use crate::nat::{self, Connections, Relays};
use crate::status::{AccessReject, LinkPath, Metrics, Reachability, SharedStatus};
use crate::trainer::{Event, Inbox, Outbound};
use crate::wire::{PROTOCOL, Wire, push_frame, read_frame, write_frames};
use murmur_topology::{
    AgreementAction, AgreementConfig, EdgeAgreement, GossipVerdict, NeighbourRule,
};

/// Kademlia protocol of murmur's own DHT (kept apart from the public IPFS DHT).
pub const KAD_PROTOCOL: StreamProtocol = StreamProtocol::new("/murmur/kad/1.0.0");

/// Gossip frames kept per peer while its edge is being agreed.
const EARLY_FRAMES: usize = 64;

/// How long a bootstrapped node that has one gossip edge up waits for the other neighbours
/// it chose before it starts training (see `maybe_start`).
const EDGE_GRACE: Duration = Duration::from_secs(1);

/// How long a peer that could not be dialled is ignored by discovery (it is taken back at
/// once if it connects to us).
const FAILED_BACKOFF: Duration = Duration::from_secs(10);
/// How long a neighbour the gossip peer reported as misbehaving stays out of the neighbour set.
const EXCLUDED_FOR: Duration = Duration::from_secs(600);

/// Frames queued per peer for its writer task (past it frames are dropped and counted).
const OUTBOUND_FRAMES: usize = 1024;

/// The discovery walk period grows to at most this many times `node.discovery_interval_secs`
/// while the view does not change (5 s → 80 s by default).
const MAX_WALK_BACKOFF: u32 = 16;

/// The period until the walk after this one: the base period while lonely or when the
/// number of known peers changed since the last walk, else twice the current one (at most
/// [`MAX_WALK_BACKOFF`] × the base).
fn walk_period(current: Duration, base: Duration, known: usize, known_before: usize) -> Duration {
    if known == 0 || known != known_before {
        base
    } else {
        (current * 2).min(base * MAX_WALK_BACKOFF)
    }
}

/// A writer stops adding queued frames to one write past this many bytes.
const COALESCE_BYTES: usize = 256 << 10;

/// Frames read from all streams and not yet handled (readers wait past it).
const INBOUND_FRAMES: usize = 4096;

/// Every behaviour of a murmur node (crate-private: nothing outside drives the swarm, and the
/// derive's generated `BehaviourEvent` has undocumented variants).
#[derive(NetworkBehaviour)]
#[allow(missing_debug_implementations)]
pub(crate) struct Behaviour {
    limits: connection_limits::Behaviour,
    allow: Toggle<allow_block_list::Behaviour<allow_block_list::AllowedPeers>>,
    identify: identify::Behaviour,
    ping: ping::Behaviour,
    kad: kad::Behaviour<MemoryStore>,
    mdns: Toggle<mdns::tokio::Behaviour>,
    /// Dials and listens through relays (`/p2p-circuit` addresses).
    relay_client: relay::client::Behaviour,
    /// Serving as a relay (`relay.serve`).
    relay: Toggle<relay::Behaviour>,
    /// Hole punching: upgrades a relayed connection to a direct one.
    dcutr: dcutr::Behaviour,
    /// Reachability from peers' dial-backs (v1: see `crate::nat`).
    autonat: autonat::v1::Behaviour,
    stream: libp2p_stream::Behaviour,
}

fn behaviour(
    key: &Keypair,
    relay_client: relay::client::Behaviour,
    config: &Config,
) -> Result<Behaviour> {
    let me = key.public().to_peer_id();
    let node = &config.node;
    let limits = connection_limits::ConnectionLimits::default()
        .with_max_established(Some(node.max_connections))
        .with_max_established_per_peer(Some(node.max_connections_per_peer))
        .with_max_pending_incoming(Some(node.max_pending))
        .with_max_pending_outgoing(Some(node.max_pending));
    let allow = if config.access.allow_peers.is_empty() {
        None
    } else {
        let mut allow = allow_block_list::Behaviour::<allow_block_list::AllowedPeers>::default();
        for id in &config.access.allow_peers {
            allow.allow_peer(id.parse().with_context(|| format!("allow_peers: {id:?}"))?);
        }
        Some(allow)
    };
    let mut kad_config = kad::Config::new(KAD_PROTOCOL);
    kad_config.set_query_timeout(Duration::from_secs(10));
    // Discovery walks are driven by the event loop (`discovery_interval_secs`).
    kad_config.set_periodic_bootstrap_interval(None);
    let mut kad = kad::Behaviour::with_config(me, MemoryStore::new(me), kad_config);
    // Loopback and LAN addresses are never "confirmed external", so pin server mode.
    kad.set_mode(Some(kad::Mode::Server));
    let mdns = if node.mdns {
        Some(mdns::tokio::Behaviour::new(mdns::Config::default(), me)?)
    } else {
        None
    };
    let relay = config.relay.serve.then(|| {
        relay::Behaviour::new(
            me,
            relay::Config {
                max_circuit_duration: Duration::from_secs(config.relay.max_circuit_secs),
                max_circuit_bytes: config.relay.max_circuit_bytes,
                ..relay::Config::default()
            },
        )
    });
    let autonat = autonat::v1::Behaviour::new(
        me,
        autonat::v1::Config {
            // libp2p waits 15 s and retries every 90 s; a node joining a swarm should know
            // within seconds whether it needs a relay.
            boot_delay: Duration::from_secs(5),
            retry_interval: Duration::from_secs(30),
            throttle_server_period: Duration::from_secs(15),
            only_global_ips: node.autonat_global_only,
            ..autonat::v1::Config::default()
        },
    );
    Ok(Behaviour {
        limits: connection_limits::Behaviour::new(limits),
        allow: allow.into(),
        identify: identify::Behaviour::new(
            identify::Config::new("/murmur/id/1.0.0".into(), key.public())
                .with_agent_version(format!("murmur/{}", env!("CARGO_PKG_VERSION")))
                // With announced addresses, identify sends only the swarm's external
                // addresses (the announced ones), never the real listen addresses.
                .with_hide_listen_addrs(!node.announce.is_empty())
                // A relay reservation adds a listen address: peers must learn it now, not at
                // the next periodic identify (minutes later).
                .with_push_listen_addr_updates(true),
        ),
        ping: ping::Behaviour::new(
            ping::Config::new()
                .with_interval(Duration::from_secs(node.ping_interval_secs.max(1)))
                .with_timeout(Duration::from_secs(2 * node.ping_interval_secs.max(1))),
        ),
        kad,
        mdns: mdns.into(),
        relay_client,
        relay: relay.into(),
        dcutr: dcutr::Behaviour::new(me),
        autonat,
        stream: libp2p_stream::Behaviour::new(),
    })
}

/// Builds the swarm: TCP + QUIC, or TCP under a pre-shared key; either with `/dns4`, `/dns6`
/// and `/dnsaddr` resolution (the system resolver) and the relay client transport.
pub(crate) fn build_swarm(
    key: Keypair,
    config: &Config,
    psk: Option<PreSharedKey>,
    registry: &mut Registry,
) -> Result<Swarm<Behaviour>> {
    let tcp_config = tcp::Config::default().nodelay(true);
    let idle = Duration::from_secs(config.node.idle_timeout_secs);
    let make = |key: &Keypair, relay_client| {
        behaviour(key, relay_client, config).map_err(|e| e.into_boxed_dyn_error())
    };
    let dns = "reading the system's DNS configuration (/etc/resolv.conf), needed for /dns bootstrap addresses";
    let swarm = match psk {
        Some(psk) => SwarmBuilder::with_existing_identity(key)
            .with_tokio()
            .with_other_transport(
                |key| -> Result<_, Box<dyn std::error::Error + Send + Sync>> {
                    let noise = noise::Config::new(key)?;
                    Ok(tcp::tokio::Transport::new(tcp_config)
                        .and_then(move |socket, _| PnetConfig::new(psk).handshake(socket))
                        .upgrade(Version::V1Lazy)
                        .authenticate(noise)
                        .multiplex(yamux::Config::default()))
                },
            )?
            .with_dns()
            .context(dns)?
            .with_relay_client(noise::Config::new, yamux::Config::default)?
            .with_bandwidth_metrics(registry)
            .with_behaviour(make)
            .map_err(|e| anyhow::anyhow!("{e}"))?
            .with_swarm_config(|c| c.with_idle_connection_timeout(idle))
            .build(),
        None => SwarmBuilder::with_existing_identity(key)
            .with_tokio()
            .with_tcp(tcp_config, noise::Config::new, yamux::Config::default)?
            .with_quic()
            .with_dns()
            .context(dns)?
            .with_relay_client(noise::Config::new, yamux::Config::default)?
            .with_bandwidth_metrics(registry)
            .with_behaviour(make)
            .map_err(|e| anyhow::anyhow!("{e}"))?
            .with_swarm_config(|c| c.with_idle_connection_timeout(idle))
            .build(),
    };
    Ok(swarm)
}

/// A token bucket: `rate` per second, `cap` deep.
#[derive(Debug, Clone)]
struct Bucket {
    tokens: f64,
    rate: f64,
    cap: f64,
    last: Instant,
}

impl Bucket {
    fn new(rate: f64, burst_secs: f64) -> Self {
        let cap = (rate * burst_secs).max(1.0);
        Bucket {
            tokens: cap,
            rate,
            cap,
            last: Instant::now(),
        }
    }

    fn take(&mut self, amount: f64, now: Instant) -> bool {
        self.tokens =
            (self.tokens + now.duration_since(self.last).as_secs_f64() * self.rate).min(self.cap);
        self.last = now;
        if self.tokens >= amount {
            self.tokens -= amount;
            true
        } else {
            false
        }
    }
}

/// Everything the event loop owns.
#[allow(missing_debug_implementations)]
pub struct Net {
    swarm: Swarm<Behaviour>,
    me: PeerId,
    /// Known, chosen, connected, agreed and excluded peers (the sans-IO handshake).
    edges: EdgeAgreement<PeerId>,
    /// The zero of the agreement's clock.
    epoch: Instant,
    /// Gossip frames from peers whose edge is pending, delivered when it comes up.
    early: HashMap<PeerId, Vec<Vec<u8>>>,
    /// Each current neighbour's own neighbours, as its last `Neighbours` frame listed them.
    reported: HashMap<PeerId, Vec<PeerId>>,
    /// Round-trip time to each current neighbour (the last ping).
    rtt: HashMap<PeerId, Duration>,
    buckets: HashMap<PeerId, (Bucket, Bucket)>,
    access: crate::config::AccessConfig,
    inbox: Inbox,
    outbox: mpsc::Receiver<Outbound>,
    started: bool,
    has_bootstrap: bool,
    /// Peer ids of the bootstrap addresses: a failed dial to one is an operator's problem.
    bootstrap_peers: std::collections::BTreeSet<PeerId>,
    start_by: Instant,
    /// When the first gossip edge came up (a bootstrapped node waits for the others it chose,
    /// at most [`EDGE_GRACE`] after this, so a joiner averages every neighbour's copy).
    first_edge_at: Option<Instant>,
    min_peers: usize,
    /// `node.discovery_interval_secs`: the walk period while the view changes.
    discovery_every: Duration,
    /// The current walk period: doubles after each walk that left the view as it was, up to
    /// [`MAX_WALK_BACKOFF`] × `discovery_every`, and is back to `discovery_every` as soon as
    /// a peer is discovered or lost.
    walk_every: Duration,
    /// When the next discovery walk starts.
    next_walk: Instant,
    /// How many peers were known at the last walk (a different count: the view changed).
    known_at_walk: usize,
    libp2p_metrics: libp2p::metrics::Metrics,
    metrics: Metrics,
    status: SharedStatus,
    control: libp2p_stream::Control,
    incoming: libp2p_stream::IncomingStreams,
    writers: HashMap<PeerId, mpsc::Sender<Vec<u8>>>,
    writer_tasks: tokio::task::JoinSet<()>,
    inbound_tx: mpsc::Sender<(PeerId, std::io::Result<Vec<u8>>)>,
    inbound_rx: mpsc::Receiver<(PeerId, std::io::Result<Vec<u8>>)>,
    listen: Vec<Multiaddr>,
    node_file: PathBuf,
    http: Option<String>,
    /// Which connections are relayed.
    conns: Connections,
    /// Relays known and reserved on.
    relays: Relays,
    /// AutoNAT's verdict.
    reachability: Reachability,
}

/// How the event loop ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// After a shutdown request: goodbyes sent, final checkpoint written.
    Clean,
    /// The training thread went away.
    TrainerGone,
}

impl Net {
    /// Wraps a built swarm; call [`Net::listen_and_bootstrap`] then [`Net::run`].
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        swarm: Swarm<Behaviour>,
        config: &Config,
        rule: NeighbourRule,
        inbox: Inbox,
        outbox: mpsc::Receiver<Outbound>,
        libp2p_metrics: libp2p::metrics::Metrics,
        metrics: Metrics,
        status: SharedStatus,
        http: Option<String>,
    ) -> Self {
        let me = *swarm.local_peer_id();
        if let Ok(mut s) = status.lock() {
            s.nat.relay_serving = config.relay.serve;
            s.neighbour_rule = rule.to_string();
        }
        let mut control = swarm.behaviour().stream.new_control();
        let incoming = control
            .accept(PROTOCOL)
            .expect("the gossip protocol is registered once");
        let (inbound_tx, inbound_rx) = mpsc::channel(INBOUND_FRAMES);
        let agreement = AgreementConfig {
            failed_backoff: FAILED_BACKOFF,
            excluded_for: EXCLUDED_FOR,
            ..AgreementConfig::default()
        };
        Net {
            swarm,
            me,
            // A new incarnation per process life, so a restart's versions never look stale.
            edges: EdgeAgreement::new(me, rule, rand::random(), agreement),
            epoch: Instant::now(),
            early: HashMap::new(),
            reported: HashMap::new(),
            rtt: HashMap::new(),
            buckets: HashMap::new(),
            access: config.access.clone(),
            inbox,
            outbox,
            started: false,
            has_bootstrap: !config.node.bootstrap.is_empty(),
            bootstrap_peers: std::collections::BTreeSet::new(),
            start_by: Instant::now() + Duration::from_secs(config.node.start_timeout_secs),
            first_edge_at: None,
            min_peers: config.node.min_peers,
            discovery_every: Duration::from_secs(config.node.discovery_interval_secs.max(1)),
            walk_every: Duration::from_secs(config.node.discovery_interval_secs.max(1)),
            next_walk: Instant::now(),
            known_at_walk: 0,
            libp2p_metrics,
            metrics,
            status,
            control,
            incoming,
            writers: HashMap::new(),
            writer_tasks: tokio::task::JoinSet::new(),
            inbound_tx,
            inbound_rx,
            listen: Vec::new(),
            node_file: config.node.data_dir.join("node.json"),
            http,
            conns: Connections::default(),
            relays: Relays::new(config.relay.reserve_on),
            reachability: Reachability::Unknown,
        }
    }

    /// Starts the listeners and dials the bootstrap peers.
    pub fn listen_and_bootstrap(&mut self, config: &Config, quic: bool) -> Result<()> {
        for addr in &config.node.listen {
            let ma: Multiaddr = addr.parse().with_context(|| format!("listen {addr:?}"))?;
            let is_quic = ma
                .iter()
                .any(|p| matches!(p, libp2p::multiaddr::Protocol::QuicV1));
            if is_quic && !quic {
                tracing::warn!(%ma, "skipping QUIC listen address (disabled or pre-shared key set)");
                continue;
            }
            self.swarm.listen_on(ma)?;
        }
        for addr in &config.node.announce {
            let ma: Multiaddr = addr.parse().with_context(|| format!("announce {addr:?}"))?;
            self.swarm.add_external_address(ma);
        }
        for addr in &config.node.bootstrap {
            let ma: Multiaddr = addr
                .parse()
                .with_context(|| format!("bootstrap {addr:?}"))?;
            let Some(libp2p::multiaddr::Protocol::P2p(peer)) = ma.iter().last() else {
                anyhow::bail!("bootstrap address {addr} must end in /p2p/<peer id>");
            };
            self.swarm
                .behaviour_mut()
                .kad
                .add_address(&peer, ma.clone());
            self.bootstrap_peers.insert(peer);
            if let Err(e) = self.swarm.dial(ma.clone()) {
                tracing::warn!(%ma, error = %e, "bootstrap dial failed");
            }
        }
        Ok(())
    }

    /// Runs until the training thread stopped (after a shutdown request) and the last frames
    /// went out, or `shutdown` fires twice.
    pub async fn run(mut self, mut shutdown: mpsc::Receiver<()>) -> Exit {
        let mut edge_tick = tokio::time::interval(Duration::from_millis(200));
        let mut stopping = false;
        let mut flush_deadline: Option<Instant> = None;
        loop {
            if let Some(deadline) = flush_deadline
                && (self.writer_tasks.is_empty() || Instant::now() >= deadline)
            {
                return Exit::Clean;
            }
            tokio::select! {
                event = self.swarm.select_next_some() => self.on_swarm(event),
                Some((peer, stream)) = self.incoming.next() => self.spawn_reader(peer, stream),
                Some((peer, frame)) = self.inbound_rx.recv() => match frame {
                    Ok(frame) => self.on_frame(peer, frame),
                    Err(_) => self.reject(AccessReject::FrameTooLarge),
                },
                Some(_) = self.writer_tasks.join_next(), if !self.writer_tasks.is_empty() => {}
                _ = tokio::time::sleep(Duration::from_millis(50)), if flush_deadline.is_some() => {}
                out = self.outbox.recv() => match out {
                    Some(Outbound::Send(to, bytes)) => self.send_gossip(to, bytes),
                    Some(Outbound::Exclude(peer)) => self.exclude(peer),
                    Some(Outbound::Stopped) => {
                        // Writers drain their queues (goodbyes included), then finish.
                        self.writers.clear();
                        flush_deadline = Some(Instant::now() + Duration::from_secs(2));
                    }
                    None => return if stopping { Exit::Clean } else { Exit::TrainerGone },
                },
                _ = tokio::time::sleep_until(self.next_walk.into()) => self.walk(),
                _ = edge_tick.tick() => {
                    let now = self.now();
                    self.edges.tick(now);
                    self.apply_edges();
                    self.maybe_start();
                    self.reserve_relays();
                }
                signal = shutdown.recv() => {
                    if stopping || signal.is_none() {
                        if signal.is_some() {
                            tracing::warn!("second shutdown request: exiting now");
                            return Exit::Clean;
                        }
                        // The signal source is gone: wait for the trainer only.
                        std::future::pending::<()>().await;
                    }
                    stopping = true;
                    tracing::info!("shutting down: final checkpoint, goodbyes");
                    self.inbox.control(Event::Shutdown);
                }
            }
        }
    }

    /// Sends `Start` once the node may train; called on every edge tick (200 ms).
    fn maybe_start(&mut self) {
        if self.started {
            return;
        }
        let peers = self.edges.known().len() + 1;
        // A node given bootstrap addresses waits for its edges, so a joiner can adopt the
        // swarm's model instead of training from scratch: for every neighbour it chose, or
        // for EDGE_GRACE after the first came up (a chosen peer may never answer).
        let up = self.edges.up();
        if !up.is_empty() && self.first_edge_at.is_none() {
            self.first_edge_at = Some(Instant::now());
        }
        let all_chosen_up = self.edges.chosen().iter().all(|p| up.contains(p));
        let grace_over = self
            .first_edge_at
            .is_some_and(|t| t.elapsed() >= EDGE_GRACE);
        let edge_ready = !self.has_bootstrap || (!up.is_empty() && (all_chosen_up || grace_over));
        if (peers >= self.min_peers && edge_ready) || Instant::now() >= self.start_by {
            self.started = true;
            tracing::info!(peers, "starting training");
            self.inbox.control(Event::Start);
        }
    }

    /// One discovery walk, and when the next one starts. In a swarm whose membership does
    /// not change, walks every 5 s were the largest non-gossip traffic (at 64 daemons about
    /// 40% of the bytes libp2p wrote, against 33% for gossip): the period backs off while
    /// the view stays the same. A newcomer is still found at once by every node its own
    /// walks query (they add it to their routing tables), and each of those returns to the
    /// short period (see [`Net::add_known`]).
    fn walk(&mut self) {
        let known = self.edges.known().len();
        let lonely = known == 0;
        self.walk_every = walk_period(
            self.walk_every,
            self.discovery_every,
            known,
            self.known_at_walk,
        );
        self.known_at_walk = known;
        self.next_walk = Instant::now() + self.walk_every;
        let kad = &mut self.swarm.behaviour_mut().kad;
        // A full bootstrap refreshes every bucket (many queries); once there is a view, one
        // random walk per period finds newcomers at a fraction of the traffic.
        if lonely {
            let _ = kad.bootstrap();
        } else {
            kad.get_closest_peers(PeerId::random());
        }
    }

    fn reject(&mut self, reason: AccessReject) {
        self.metrics.reject_access(reason);
        if let Ok(mut s) = self.status.lock() {
            s.rejected_access += 1;
        }
    }

    fn send_wire(&mut self, to: PeerId, wire: &Wire) {
        let mut frame = wire.encode();
        // A writer whose stream died is replaced once (it reopens the stream, dialling if
        // needed); a full queue drops the frame, which the gossip protocol repairs.
        for _ in 0..2 {
            let writer = match self.writers.get(&to) {
                Some(w) => w.clone(),
                None => {
                    let w = self.spawn_writer(to);
                    self.writers.insert(to, w.clone());
                    w
                }
            };
            match writer.try_send(frame) {
                Ok(()) => return,
                Err(mpsc::error::TrySendError::Full(_)) => {
                    self.reject(AccessReject::OutboxFull);
                    return;
                }
                Err(mpsc::error::TrySendError::Closed(back)) => {
                    self.writers.remove(&to);
                    frame = back;
                }
            }
        }
    }

    /// A task owning the outbound stream to `peer`: opens it, then writes queued frames in
    /// order until the queue is dropped or the stream fails.
    fn spawn_writer(&mut self, peer: PeerId) -> mpsc::Sender<Vec<u8>> {
        let (tx, mut rx) = mpsc::channel::<Vec<u8>>(OUTBOUND_FRAMES);
        let mut control = self.control.clone();
        self.writer_tasks.spawn(async move {
            let mut stream = match control.open_stream(peer, PROTOCOL).await {
                Ok(stream) => stream,
                Err(e) => {
                    tracing::debug!(%peer, error = %e, "cannot open a gossip stream");
                    return;
                }
            };
            let mut batch = Vec::new();
            while let Some(frame) = rx.recv().await {
                // Everything queued meanwhile goes out in the same write and flush: one
                // wake-up of this task and of the connection per batch, not per frame.
                batch.clear();
                let mut pushed = push_frame(&mut batch, &frame);
                while pushed.is_ok() && batch.len() < COALESCE_BYTES {
                    let Ok(next) = rx.try_recv() else { break };
                    pushed = push_frame(&mut batch, &next);
                }
                let written = match pushed {
                    Ok(()) => write_frames(&mut stream, &batch).await,
                    Err(e) => Err(e),
                };
                if let Err(e) = written {
                    tracing::debug!(%peer, error = %e, "gossip stream closed");
                    return;
                }
                if batch.capacity() > 4 * COALESCE_BYTES {
                    // A large model's frame passed through: do not keep its buffer.
                    batch = Vec::new();
                }
            }
            let _ = libp2p::futures::AsyncWriteExt::close(&mut stream).await;
        });
        tx
    }

    /// A task reading frames from one inbound stream into the event loop.
    fn spawn_reader(&mut self, peer: PeerId, mut stream: libp2p::Stream) {
        let tx = self.inbound_tx.clone();
        let max = self.access.max_frame_bytes;
        tokio::spawn(async move {
            loop {
                match read_frame(&mut stream, max).await {
                    Ok(frame) => {
                        if tx.send((peer, Ok(frame))).await.is_err() {
                            return;
                        }
                    }
                    Err(e) => {
                        // Over the cap: counted; end of stream or reset: just gone.
                        if e.kind() == std::io::ErrorKind::InvalidData {
                            let _ = tx.send((peer, Err(e))).await;
                        }
                        return;
                    }
                }
            }
        });
    }

    fn send_gossip(&mut self, to: PeerId, bytes: Vec<u8>) {
        if !self.edges.is_up(&to) {
            return;
        }
        if self.conns.relayed_only(&to) {
            if nat::refused_over_relay(&bytes) {
                self.refuse_download(to);
                return;
            }
            self.metrics.relayed("sent", bytes.len());
            if let Ok(mut s) = self.status.lock() {
                s.nat.relayed_bytes_sent += bytes.len() as u64;
            }
        }
        self.send_wire(to, &Wire::Gossip(bytes));
    }

    /// A joiner's model download that would cross a relay: dropped and counted (the joiner
    /// asks again; see `crate::nat`).
    fn refuse_download(&mut self, peer: PeerId) {
        tracing::info!(%peer, "model download refused on a relayed connection (waiting for a direct one)");
        self.reject(AccessReject::DownloadOverRelay);
        if let Ok(mut s) = self.status.lock() {
            s.nat.downloads_refused += 1;
        }
    }

    /// Private: asks the relays this node knows for a reservation (a `/p2p-circuit` listener
    /// on each), up to `relay.reserve_on`.
    fn reserve_relays(&mut self) {
        if self.reachability != Reachability::Private {
            return;
        }
        for (relay, circuit) in self.relays.to_reserve(Instant::now()) {
            match self.swarm.listen_on(circuit.clone()) {
                Ok(listener) => {
                    tracing::info!(%relay, %circuit, "asking a relay for a reservation");
                    self.relays.asked(listener, relay);
                }
                Err(e) => tracing::warn!(%circuit, error = %e, "cannot listen through a relay"),
            }
        }
    }

    /// Tells the gossip peer when `peer` became, or stopped being, reachable only through a
    /// relay, so a joiner takes its model download from a direct neighbour (see `crate::nat`).
    /// Sent before the edge is up too: the class belongs to the connection, and the training
    /// thread sees events in order, so it knows the class before that peer's first hello.
    fn report_class(&mut self, peer: PeerId) {
        if let Some(relayed) = self.conns.class_change(&peer) {
            tracing::debug!(%peer, relayed, "path class changed");
            self.inbox.control(Event::LinkClass { peer, relayed });
        }
    }

    /// Publishes each neighbour's path (direct or relayed) to the status and metrics.
    fn publish_paths(&mut self) {
        let paths: std::collections::BTreeMap<String, LinkPath> = self
            .edges
            .up()
            .iter()
            .filter_map(|p| Some((p.to_string(), self.conns.path(p)?)))
            .collect();
        let relayed = paths.values().filter(|&&p| p == LinkPath::Relayed).count();
        self.metrics.relayed_neighbours.set(relayed as i64);
        if let Ok(mut s) = self.status.lock() {
            s.neighbour_paths = paths;
        }
    }

    /// The agreement's clock: time since this loop was built.
    fn now(&self) -> Duration {
        self.epoch.elapsed()
    }

    /// Drops a misbehaving neighbour: its edge goes down, it is disconnected and kept out of
    /// the neighbour set for [`EXCLUDED_FOR`] (rediscovery and its `Select` do not bring it
    /// back).
    fn exclude(&mut self, peer: PeerId) {
        tracing::warn!(%peer, "disconnecting a misbehaving neighbour");
        let now = self.now();
        self.edges.exclude(&peer, now);
        self.apply_edges();
    }

    fn add_known(&mut self, peer: PeerId) {
        let now = self.now();
        let before = self.edges.known().len();
        self.edges.discovered(peer, now);
        if self.edges.known().len() != before {
            // The view changed: others may be arriving too, walk at the short period again.
            self.walk_every = self.discovery_every;
            self.next_walk = self.next_walk.min(Instant::now() + self.discovery_every);
        }
        self.apply_edges();
    }

    /// Carries out what the edge agreement decided: sends its `Select`s, reports edges up
    /// (with the frames held for them) and down, closes excluded peers' connections.
    fn apply_edges(&mut self) {
        let mut changed = false;
        while let Some(action) = self.edges.poll() {
            match action {
                AgreementAction::Send(peer, select) => self.send_wire(peer, &Wire::Select(select)),
                AgreementAction::Up(peer) => {
                    changed = true;
                    tracing::info!(%peer, "neighbour up");
                    self.inbox.control(Event::NeighbourUp(peer));
                    for frame in self.early.remove(&peer).unwrap_or_default() {
                        if !self.inbox.frame(peer, frame) {
                            self.reject(AccessReject::InboxFull);
                        }
                    }
                }
                AgreementAction::Down(peer) => {
                    changed = true;
                    tracing::info!(%peer, "neighbour down");
                    self.early.remove(&peer);
                    self.reported.remove(&peer);
                    if self.rtt.remove(&peer).is_some() {
                        self.metrics.remove_link_rtt(&peer.to_string());
                    }
                    self.inbox.control(Event::NeighbourDown(peer));
                }
                AgreementAction::Disconnect(peer) => {
                    self.writers.remove(&peer);
                    let _ = self.swarm.disconnect_peer_id(peer);
                }
            }
        }
        let known = self.edges.known().len();
        self.metrics.known_peers.set(known as i64);
        if let Ok(mut s) = self.status.lock() {
            s.known_peers = known;
            s.connected_peers = self.edges.connected_count();
            if changed {
                s.neighbours = self.edges.up().iter().map(|p| p.to_string()).collect();
            }
        }
        if changed {
            self.publish_paths();
            self.announce_neighbours();
            self.publish_neighbourhood();
        }
    }

    /// Tells every neighbour which neighbours this node has now (their dashboards draw the
    /// swarm two hops out).
    fn announce_neighbours(&mut self) {
        let up: Vec<PeerId> = self.edges.up().iter().copied().collect();
        let wire = Wire::neighbours(&up);
        for peer in up {
            self.send_wire(peer, &wire);
        }
    }

    /// A neighbour's list of its neighbours: kept for the status if it parses, else counted
    /// as a malformed envelope. From a peer whose edge is still being agreed it is kept too
    /// (it may overtake the `Select` that brings the edge up; the status shows it only once
    /// the edge is up); from any other peer it is refused as gossip from a non-neighbour.
    fn on_neighbours(&mut self, peer: PeerId, list: &[Vec<u8>]) {
        let now = self.now();
        if self.edges.on_gossip(&peer, now) == GossipVerdict::Reject {
            self.reject(AccessReject::NotNeighbour);
            return;
        }
        match crate::wire::parse_neighbours(list) {
            Ok(peers) => {
                self.reported.insert(peer, peers);
                self.publish_neighbourhood();
            }
            Err(e) => {
                tracing::debug!(%peer, error = %e, "neighbour list refused");
                self.reject(AccessReject::MalformedEnvelope);
            }
        }
    }

    /// A ping answered: the neighbour's round-trip time.
    fn on_rtt(&mut self, peer: PeerId, rtt: Duration) {
        if !self.edges.is_up(&peer) {
            return;
        }
        self.rtt.insert(peer, rtt);
        self.metrics
            .set_link_rtt(&peer.to_string(), rtt, self.rtt.len() - 1);
        self.publish_neighbourhood();
    }

    /// Publishes the neighbours' reported neighbours and round-trip times to the status.
    fn publish_neighbourhood(&mut self) {
        let up = self.edges.up();
        let reported = self
            .reported
            .iter()
            .filter(|(p, _)| up.contains(p))
            .map(|(p, list)| (p.to_string(), list.iter().map(|q| q.to_string()).collect()))
            .collect();
        let rtt = self
            .rtt
            .iter()
            .filter(|(p, _)| up.contains(p))
            .map(|(p, d)| (p.to_string(), d.as_secs_f64() * 1e3))
            .collect();
        if let Ok(mut s) = self.status.lock() {
            s.reported_neighbours = reported;
            s.link_rtt_ms = rtt;
        }
    }

    fn within_limits(&mut self, peer: PeerId, len: usize) -> bool {
        let now = Instant::now();
        let access = &self.access;
        let (frames, bytes) = self.buckets.entry(peer).or_insert_with(|| {
            (
                Bucket::new(access.max_frames_per_sec, access.burst_secs),
                Bucket::new(access.max_bytes_per_sec, access.burst_secs),
            )
        });
        frames.take(1.0, now) && bytes.take(len as f64, now)
    }

    fn on_frame(&mut self, peer: PeerId, frame: Vec<u8>) {
        if !self.within_limits(peer, frame.len()) {
            self.reject(AccessReject::RateLimit);
            return;
        }
        if self.conns.relayed_only(&peer) {
            self.metrics.relayed("received", frame.len());
            if let Ok(mut s) = self.status.lock() {
                s.nat.relayed_bytes_received += frame.len() as u64;
            }
        }
        let now = self.now();
        match Wire::decode(&frame) {
            Ok(Wire::Select(select)) => self.edges.on_select(peer, select, now),
            Ok(Wire::Neighbours(list)) => self.on_neighbours(peer, &list),
            Ok(Wire::Gossip(bytes))
                if self.conns.relayed_only(&peer) && nat::refused_over_relay(&bytes) =>
            {
                self.refuse_download(peer);
            }
            Ok(Wire::Gossip(bytes)) => match self.edges.on_gossip(&peer, now) {
                GossipVerdict::Deliver => {
                    if !self.inbox.frame(peer, bytes) {
                        self.reject(AccessReject::InboxFull);
                    }
                }
                GossipVerdict::Hold => {
                    // The edge is being agreed: the frame may have overtaken the Select.
                    let early = self.early.entry(peer).or_default();
                    if early.len() < EARLY_FRAMES {
                        early.push(bytes);
                    } else {
                        self.reject(AccessReject::NotNeighbour);
                    }
                }
                GossipVerdict::Reject => self.reject(AccessReject::NotNeighbour),
            },
            Err(_) => self.reject(AccessReject::MalformedEnvelope),
        }
        self.apply_edges();
    }

    fn on_relay_client(&mut self, event: relay::client::Event) {
        match event {
            relay::client::Event::ReservationReqAccepted {
                relay_peer_id,
                renewal,
                ..
            } => {
                if !renewal {
                    tracing::info!(relay = %relay_peer_id, "relay reservation accepted: reachable through it");
                }
                self.relays.accepted(relay_peer_id);
                self.publish_relays();
            }
            relay::client::Event::OutboundCircuitEstablished { relay_peer_id, .. } => {
                tracing::debug!(relay = %relay_peer_id, "dialled a peer through a relay");
            }
            relay::client::Event::InboundCircuitEstablished { src_peer_id, .. } => {
                tracing::debug!(peer = %src_peer_id, "a peer dialled this node through a relay");
            }
        }
    }

    fn publish_relays(&mut self) {
        let relays = self.relays.reserved();
        self.metrics.relay_reservations.set(relays.len() as i64);
        if let Ok(mut s) = self.status.lock() {
            s.nat.relays = relays;
        }
    }

    fn write_node_file(&self) {
        let doc = serde_json::json!({
            "peer_id": self.me.to_string(),
            "listen": self.listen.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
            "http": self.http,
        });
        if let Err(e) = crate::checkpoint::write_atomic(&self.node_file, doc.to_string().as_bytes())
        {
            tracing::warn!(error = %e, "could not write node.json");
        }
    }

    fn on_swarm(&mut self, event: SwarmEvent<BehaviourEvent>) {
        self.libp2p_metrics.record(&event);
        if let SwarmEvent::ConnectionEstablished {
            endpoint: libp2p::core::ConnectedPoint::Dialer { address, .. },
            ..
        } = &event
            && let Ok(mut s) = self.status.lock()
        {
            let address = address.to_string();
            if s.dialed_addrs.len() < crate::status::MAX_DIALED_ADDRS
                && !s.dialed_addrs.contains(&address)
            {
                s.dialed_addrs.push(address);
            }
        }
        match &event {
            SwarmEvent::ConnectionEstablished {
                peer_id,
                connection_id,
                endpoint,
                ..
            } => {
                self.conns
                    .opened(*peer_id, *connection_id, endpoint.is_relayed());
                if let libp2p::core::ConnectedPoint::Dialer { address, .. } = endpoint
                    && !endpoint.is_relayed()
                {
                    self.relays.dialed(*peer_id, address);
                }
                self.report_class(*peer_id);
                self.publish_paths();
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                connection_id,
                ..
            } => {
                self.conns.closed(peer_id, *connection_id);
                self.report_class(*peer_id);
                self.publish_paths();
            }
            _ => {}
        }
        match event {
            SwarmEvent::ListenerClosed {
                listener_id,
                reason,
                ..
            } => {
                if let Some(relay) = self.relays.closed(listener_id, Instant::now()) {
                    match reason {
                        Ok(()) => tracing::info!(%relay, "relay reservation ended"),
                        Err(e) => {
                            tracing::warn!(%relay, error = %e, "relay reservation failed or ended")
                        }
                    }
                    self.publish_relays();
                }
            }
            SwarmEvent::NewListenAddr { address, .. } => {
                let full = address.with_p2p(self.me).expect("own peer id");
                println!("listening {full}");
                tracing::info!(%full, "listening");
                self.listen.push(full);
                if let Ok(mut s) = self.status.lock() {
                    s.listen = self.listen.iter().map(|a| a.to_string()).collect();
                }
                self.write_node_file();
            }
            SwarmEvent::ConnectionEstablished {
                peer_id,
                num_established,
                ..
            } if num_established.get() == 1 => {
                let now = self.now();
                self.edges.connected(peer_id, now);
                self.apply_edges();
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                num_established: 0,
                cause,
                ..
            } => {
                self.writers.remove(&peer_id);
                self.early.remove(&peer_id);
                self.buckets.remove(&peer_id);
                // An idle close (no cause) keeps the peer known; an error (crash, reset,
                // shutdown) forgets it until it is rediscovered.
                let now = self.now();
                self.edges.disconnected(&peer_id, cause.is_some(), now);
                self.apply_edges();
            }
            SwarmEvent::OutgoingConnectionError {
                peer_id: Some(peer),
                error,
                ..
            } if self.swarm.is_connected(&peer) => {
                // An extra dial (AutoNAT's dial-back, a hole punch, a second address) says
                // nothing about a peer that is connected.
                tracing::debug!(%peer, %error, "extra dial to a connected peer failed");
            }
            SwarmEvent::OutgoingConnectionError {
                peer_id: Some(peer),
                error,
                ..
            } => {
                if self.bootstrap_peers.contains(&peer) {
                    // Otherwise the only sign is "no neighbours: training paused" 20 s later.
                    tracing::warn!(%peer, %error, "cannot reach bootstrap peer: check the --bootstrap address and that the node there is running");
                } else {
                    tracing::debug!(%peer, %error, "dial failed");
                }
                let now = self.now();
                self.edges.dial_failed(&peer, now);
                self.apply_edges();
            }
            SwarmEvent::IncomingConnectionError { error, .. } => {
                // Wrong pre-shared key, failed handshake, over the limits, not allowed.
                tracing::debug!(%error, "incoming connection refused");
                self.reject(AccessReject::ConnectionRefused);
            }
            SwarmEvent::Behaviour(event) => self.on_behaviour(event),
            _ => {}
        }
    }

    fn on_behaviour(&mut self, event: BehaviourEvent) {
        match event {
            BehaviourEvent::Identify(event) => {
                self.libp2p_metrics.record(&event);
                if let identify::Event::Received { peer_id, info, .. } = &event
                    && info.protocols.contains(&relay::HOP_PROTOCOL_NAME)
                {
                    self.relays.serves(*peer_id);
                    self.reserve_relays();
                }
                if let identify::Event::Received { peer_id, info, .. } = event
                    && info.protocols.contains(&PROTOCOL)
                {
                    for addr in info.listen_addrs {
                        self.swarm.behaviour_mut().kad.add_address(&peer_id, addr);
                    }
                    self.add_known(peer_id);
                }
            }
            BehaviourEvent::Kad(event) => {
                self.libp2p_metrics.record(&event);
                match event {
                    kad::Event::RoutingUpdated { peer, .. } => self.add_known(peer),
                    kad::Event::OutboundQueryProgressed {
                        result: kad::QueryResult::GetClosestPeers(Ok(ok)),
                        ..
                    } => {
                        for info in ok.peers {
                            self.add_known(info.peer_id);
                        }
                    }
                    _ => {}
                }
            }
            BehaviourEvent::Ping(event) => {
                self.libp2p_metrics.record(&event);
                if let Ok(rtt) = &event.result {
                    self.on_rtt(event.peer, *rtt);
                }
                // A connection that stops answering pings (a cut link, a frozen peer) is
                // closed, so its edge goes down instead of costing a round timeout each round.
                if let Err(e) = &event.result {
                    tracing::info!(peer = %event.peer, error = %e, "ping failed: closing the connection");
                    let _ = self.swarm.close_connection(event.connection);
                    // Unreachable: let the neighbour rule pick someone else until it is back
                    // (it is taken back as soon as it connects or discovery finds it again).
                    let now = self.now();
                    self.edges.unreachable(&event.peer, now);
                    self.apply_edges();
                }
            }
            BehaviourEvent::RelayClient(event) => self.on_relay_client(event),
            BehaviourEvent::Relay(event) => {
                self.libp2p_metrics.record(&event);
                if let relay::Event::CircuitReqAccepted {
                    src_peer_id,
                    dst_peer_id,
                } = event
                {
                    tracing::info!(src = %src_peer_id, dst = %dst_peer_id, "relaying a circuit");
                    self.metrics.circuits_served.inc();
                    if let Ok(mut s) = self.status.lock() {
                        s.nat.circuits_served += 1;
                    }
                }
            }
            BehaviourEvent::Dcutr(event) => {
                self.libp2p_metrics.record(&event);
                let success = event.result.is_ok();
                match &event.result {
                    Ok(_) => {
                        tracing::info!(peer = %event.remote_peer_id, "hole punch succeeded: direct connection")
                    }
                    Err(e) => {
                        tracing::info!(peer = %event.remote_peer_id, error = %e, "hole punch failed: staying relayed")
                    }
                }
                self.metrics.hole_punch(success);
                if let Ok(mut s) = self.status.lock() {
                    s.nat.hole_punch_attempts += 1;
                    s.nat.hole_punch_successes += u64::from(success);
                }
            }
            BehaviourEvent::Autonat(autonat::v1::Event::StatusChanged { new, .. }) => {
                let now = match new {
                    autonat::v1::NatStatus::Public(addr) => {
                        tracing::info!(%addr, "reachability: public (peers dialled this node back)");
                        Reachability::Public
                    }
                    autonat::v1::NatStatus::Private => {
                        tracing::info!(
                            "reachability: private (peers could not dial back): reserving relay slots"
                        );
                        Reachability::Private
                    }
                    autonat::v1::NatStatus::Unknown => Reachability::Unknown,
                };
                self.reachability = now;
                self.metrics.set_reachability(now);
                if let Ok(mut s) = self.status.lock() {
                    s.nat.reachability = now;
                }
                self.reserve_relays();
            }
            BehaviourEvent::Mdns(mdns::Event::Discovered(found)) => {
                for (peer, addr) in found {
                    self.swarm
                        .behaviour_mut()
                        .kad
                        .add_address(&peer, addr.clone());
                    let _ = self.swarm.dial(addr);
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_walk_period_doubles_while_the_view_holds_and_resets_when_it_changes() {
        let base = Duration::from_secs(5);
        let mut period = base;
        let mut periods = Vec::new();
        for _ in 0..6 {
            period = walk_period(period, base, 63, 63);
            periods.push(period.as_secs());
        }
        assert_eq!(
            periods,
            [10, 20, 40, 80, 80, 80],
            "doubling up to 16 x the base"
        );
        assert_eq!(walk_period(period, base, 64, 63), base, "a newcomer");
        assert_eq!(walk_period(period, base, 62, 63), base, "a departure");
        assert_eq!(
            walk_period(period, base, 0, 0),
            base,
            "lonely: keep looking"
        );
    }

    #[test]
    fn token_bucket_allows_the_burst_then_the_rate() {
        let mut b = Bucket::new(10.0, 1.0);
        let t0 = b.last;
        let taken = (0..20).filter(|_| b.take(1.0, t0)).count();
        assert_eq!(taken, 10, "burst of rate x burst_secs");
        assert!(!b.take(1.0, t0));
        assert!(
            b.take(1.0, t0 + Duration::from_millis(150)),
            "refills at the rate"
        );
        assert!(!b.take(5.0, t0 + Duration::from_millis(160)));
    }
}
