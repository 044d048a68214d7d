//! The connection layer under the gossip: nodes meeting through one bootstrap node, dialling
//! each other (simultaneous dials make duplicate connections, one of which the transport
//! closes with frames still on it), losing frames and connections for a turbulent while, then
//! a quiet network. Every node runs the topology crate's [`EdgeAgreement`], the very component
//! the daemon runs, so the daemon's races are reproduced here deterministically, at scale,
//! from a seed.
//!
//! What is modelled, after the daemon's libp2p behaviour:
//! - a node starts at a random time in `[0, start_spread)` and dials the bootstrap node;
//! - sending to a peer with no connection dials it (a dial takes one latency); frames wait
//!   for the connection and are lost if the dial fails;
//! - when two connections between the same pair exist, the older one is closed after a short
//!   random delay and every frame still in flight on it is lost (the daemon's race);
//! - discovery: every `discovery_every`, a node learns the peers its random neighbour knows
//!   (as a Kademlia walk does) and, if it lost the bootstrap node from its view, reaches it
//!   again (it stays in the routing table); a connection tells both ends the other is a murmur
//!   peer;
//! - during `[0, turbulent_for)` frames are dropped with probability `drop` and connections are
//!   reset at rate `resets_per_sec` (both ends forget the other until rediscovered);
//! - gossip: every `gossip_every`, a node sends one gossip frame on each edge it has up; the
//!   receiver asks its agreement what to do with it (deliver, hold, reject).
//!
//! [`run_links`] returns what a test or the `murmur-sim links` command needs: edges agreed by
//! one end only after the quiet period (must be zero), gossip frames rejected after it, and
//! how long the swarm took to settle.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap};
use std::time::Duration;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use murmur_topology::{
    AgreementAction, AgreementConfig, EdgeAgreement, GossipVerdict, NeighbourRule, Select,
};

/// The scenario of a links run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct LinksConfig {
    /// Nodes (node 0 is the bootstrap node).
    pub peers: usize,
    /// The neighbour rule.
    pub rule: NeighbourRule,
    /// Seed of every random choice.
    pub seed: u64,
    /// Nodes start uniformly in `[0, start_spread)`.
    pub start_spread: Duration,
    /// One-way latency range of a frame (and of a dial).
    pub latency: (Duration, Duration),
    /// Frame loss and connection resets happen only before this time.
    pub turbulent_for: Duration,
    /// Probability that a frame is lost while turbulent.
    pub drop: f64,
    /// Connection resets per second over the whole swarm while turbulent.
    pub resets_per_sec: f64,
    /// Period of the discovery walk.
    pub discovery_every: Duration,
    /// Period of a gossip frame on every up edge.
    pub gossip_every: Duration,
    /// The run ends here; the check happens then.
    pub end: Duration,
}

impl Default for LinksConfig {
    /// 64 nodes, exponential rule, everyone starting within 50 ms, 0.2–2 ms latency, 3 s of
    /// 5% loss with a reset every 2 s, 20 s in all.
    fn default() -> Self {
        LinksConfig {
            peers: 64,
            rule: NeighbourRule::Exponential,
            seed: 0,
            start_spread: Duration::from_millis(50),
            latency: (Duration::from_micros(200), Duration::from_millis(2)),
            turbulent_for: Duration::from_secs(3),
            drop: 0.05,
            resets_per_sec: 0.5,
            discovery_every: Duration::from_millis(500),
            gossip_every: Duration::from_millis(100),
            end: Duration::from_secs(20),
        }
    }
}

/// What a links run measured.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LinksReport {
    /// Edges up at one end only at the end of the run (must be 0).
    pub asymmetric: usize,
    /// Edges up at both ends at the end.
    pub agreed: usize,
    /// Edges of the rule's graph over all nodes that are not up at the end.
    pub missing: usize,
    /// The largest number of edges up at one node at the end.
    pub max_degree: usize,
    /// The rule's degree bound for this many nodes.
    pub degree_bound: usize,
    /// Connections opened.
    pub connections: u64,
    /// Duplicate connections (a second connection between the same pair).
    pub duplicate_connections: u64,
    /// Frames lost (dropped while turbulent, or in flight on a closed connection).
    pub frames_lost: u64,
    /// `Select` frames sent.
    pub selects: u64,
    /// Gossip frames refused as "not a neighbour" after the quiet period began.
    pub rejected_after_quiet: u64,
    /// Gossip frames refused over the whole run.
    pub rejected: u64,
    /// Seconds after the quiet period began until the last edge change.
    pub settle_secs: f64,
}

#[derive(Debug, Clone)]
enum Ev {
    Start(usize),
    DialDone {
        from: usize,
        to: usize,
    },
    Frame {
        conn: u64,
        from: usize,
        to: usize,
        frame: FrameKind,
    },
    CloseDuplicate {
        a: usize,
        b: usize,
        conn: u64,
    },
    Tick(usize),
    Walk(usize),
    Gossip(usize),
    Reset,
}

#[derive(Debug, Clone)]
enum FrameKind {
    Select(Select),
    Gossip,
}

/// An event on the heap, ordered by (time, insertion sequence) only: the sequence is unique,
/// so the event itself never takes part in the order.
#[derive(Debug)]
struct Scheduled {
    at: Duration,
    seq: u64,
    ev: Ev,
}

impl PartialEq for Scheduled {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}

impl Eq for Scheduled {}

impl PartialOrd for Scheduled {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Scheduled {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

/// The whole simulated connection layer.
struct Links {
    config: LinksConfig,
    rng: ChaCha8Rng,
    now: Duration,
    seq: u64,
    events: BinaryHeap<Reverse<Scheduled>>,
    ids: Vec<u64>,
    /// Node index of each id.
    index_of: BTreeMap<u64, usize>,
    started: Vec<bool>,
    nodes: Vec<EdgeAgreement<u64>>,
    /// Ids of the open connections per unordered pair, oldest first (a closed one is removed).
    conns: BTreeMap<(usize, usize), Vec<u64>>,
    next_conn: u64,
    /// Dials under way, with the frames waiting for them.
    dialling: BTreeMap<(usize, usize), Vec<FrameKind>>,
    report: LinksReport,
    last_change: Duration,
}

fn pair(a: usize, b: usize) -> (usize, usize) {
    (a.min(b), a.max(b))
}

impl Links {
    fn new(config: LinksConfig) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
        let ids: Vec<u64> = (0..config.peers).map(|_| rng.random()).collect();
        let nodes = ids
            .iter()
            .map(|&id| {
                EdgeAgreement::new(id, config.rule, rng.random(), AgreementConfig::default())
            })
            .collect();
        Links {
            started: vec![false; config.peers],
            rng,
            now: Duration::ZERO,
            seq: 0,
            events: BinaryHeap::new(),
            index_of: ids.iter().enumerate().map(|(i, &id)| (id, i)).collect(),
            ids,
            nodes,
            conns: BTreeMap::new(),
            next_conn: 0,
            dialling: BTreeMap::new(),
            report: LinksReport::default(),
            last_change: Duration::ZERO,
            config,
        }
    }

    fn at(&mut self, delay: Duration, ev: Ev) {
        self.seq += 1;
        self.events.push(Reverse(Scheduled {
            at: self.now + delay,
            seq: self.seq,
            ev,
        }));
    }

    fn latency(&mut self) -> Duration {
        let (lo, hi) = self.config.latency;
        if hi <= lo {
            return lo;
        }
        Duration::from_nanos(
            self.rng
                .random_range(lo.as_nanos() as u64..hi.as_nanos() as u64),
        )
    }

    fn turbulent(&self) -> bool {
        self.now < self.config.turbulent_for
    }

    fn index(&self, id: u64) -> usize {
        self.index_of[&id]
    }

    fn connected(&self, a: usize, b: usize) -> bool {
        self.conns.get(&pair(a, b)).is_some_and(|c| !c.is_empty())
    }

    /// Carries out node `i`'s queued actions.
    fn apply(&mut self, i: usize) {
        while let Some(action) = self.nodes[i].poll() {
            match action {
                AgreementAction::Send(to, select) => {
                    self.report.selects += 1;
                    let j = self.index(to);
                    self.send(i, j, FrameKind::Select(select));
                }
                AgreementAction::Up(_) | AgreementAction::Down(_) => self.last_change = self.now,
                AgreementAction::Disconnect(to) => {
                    let j = self.index(to);
                    self.close_all(i, j, false);
                }
            }
        }
    }

    fn send(&mut self, from: usize, to: usize, frame: FrameKind) {
        if !self.started[to] {
            return; // dialling a node that is not up yet fails at once
        }
        let newest = self
            .conns
            .get(&pair(from, to))
            .and_then(|c| c.last())
            .copied();
        match newest {
            Some(conn) => {
                if self.turbulent() && self.rng.random_bool(self.config.drop) {
                    self.report.frames_lost += 1;
                    return;
                }
                let delay = self.latency();
                self.at(
                    delay,
                    Ev::Frame {
                        conn,
                        from,
                        to,
                        frame,
                    },
                );
            }
            None => {
                let key = (from, to);
                let fresh = !self.dialling.contains_key(&key);
                self.dialling.entry(key).or_default().push(frame);
                if fresh {
                    let delay = self.latency();
                    self.at(delay, Ev::DialDone { from, to });
                }
            }
        }
    }

    fn open(&mut self, from: usize, to: usize) {
        self.report.connections += 1;
        self.next_conn += 1;
        let conn = self.next_conn;
        let key = pair(from, to);
        let list = self.conns.entry(key).or_default();
        let first = list.is_empty();
        list.push(conn);
        if !first {
            // Two connections to one peer: the transport closes the older one shortly.
            self.report.duplicate_connections += 1;
            let oldest = self.conns[&key][0];
            let delay = self.latency();
            self.at(
                delay,
                Ev::CloseDuplicate {
                    a: key.0,
                    b: key.1,
                    conn: oldest,
                },
            );
            return;
        }
        let now = self.now;
        for (x, y) in [(from, to), (to, from)] {
            let peer = self.ids[y];
            self.nodes[x].connected(peer, now);
            // The connection's identify exchange shows both are murmur peers.
            self.nodes[x].discovered(peer, now);
            self.apply(x);
        }
    }

    /// Closes every connection between `a` and `b`; `forget` as after a reset.
    fn close_all(&mut self, a: usize, b: usize, forget: bool) {
        if self.conns.remove(&pair(a, b)).is_none() {
            return;
        }
        let now = self.now;
        for (x, y) in [(a, b), (b, a)] {
            let peer = self.ids[y];
            self.nodes[x].disconnected(&peer, forget, now);
            self.apply(x);
        }
    }

    fn handle(&mut self, ev: Ev) {
        let now = self.now;
        match ev {
            Ev::Start(i) => {
                self.started[i] = true;
                if i != 0 {
                    self.send_dial(i, 0);
                }
                let (tick, walk, gossip) = (
                    Duration::from_millis(200),
                    self.config.discovery_every,
                    self.config.gossip_every,
                );
                self.at(tick, Ev::Tick(i));
                self.at(walk, Ev::Walk(i));
                self.at(gossip, Ev::Gossip(i));
            }
            Ev::DialDone { from, to } => {
                let frames = self.dialling.remove(&(from, to)).unwrap_or_default();
                self.open(from, to);
                for frame in frames {
                    self.send(from, to, frame);
                }
            }
            Ev::Frame {
                conn,
                from,
                to,
                frame,
            } => {
                let alive = self
                    .conns
                    .get(&pair(from, to))
                    .is_some_and(|c| c.contains(&conn));
                if !alive {
                    self.report.frames_lost += 1;
                    return;
                }
                let peer = self.ids[from];
                match frame {
                    FrameKind::Select(s) => self.nodes[to].on_select(peer, s, now),
                    FrameKind::Gossip => {
                        if self.nodes[to].on_gossip(&peer, now) == GossipVerdict::Reject {
                            self.report.rejected += 1;
                            if !self.turbulent() {
                                self.report.rejected_after_quiet += 1;
                            }
                        }
                    }
                }
                self.apply(to);
            }
            Ev::CloseDuplicate { a, b, conn } => {
                if let Some(list) = self.conns.get_mut(&(a, b)) {
                    list.retain(|&c| c != conn);
                    if list.is_empty() {
                        self.close_all(a, b, false);
                    }
                }
            }
            Ev::Tick(i) => {
                self.nodes[i].tick(now);
                self.apply(i);
                self.at(Duration::from_millis(200), Ev::Tick(i));
            }
            Ev::Walk(i) => {
                let neighbours: Vec<u64> = self.nodes[i]
                    .known()
                    .iter()
                    .copied()
                    .filter(|&k| self.connected(i, self.index(k)))
                    .collect();
                if !neighbours.is_empty() {
                    let via = neighbours[self.rng.random_range(0..neighbours.len())];
                    let j = self.index(via);
                    let found: Vec<u64> = self.nodes[j].known().iter().copied().collect();
                    for k in found {
                        self.nodes[i].discovered(k, now);
                    }
                    self.apply(i);
                }
                // The bootstrap node stays in the routing table (as in Kademlia): a node that
                // lost it from its view reaches it again on the next walk.
                if i != 0 && !self.nodes[i].known().contains(&self.ids[0]) {
                    if self.connected(i, 0) {
                        let boot = self.ids[0];
                        self.nodes[i].discovered(boot, now);
                        self.apply(i);
                    } else {
                        self.send_dial(i, 0);
                    }
                }
                let walk = self.config.discovery_every;
                self.at(walk, Ev::Walk(i));
            }
            Ev::Gossip(i) => {
                for peer in self.nodes[i].up() {
                    let j = self.index(peer);
                    self.send(i, j, FrameKind::Gossip);
                }
                let every = self.config.gossip_every;
                self.at(every, Ev::Gossip(i));
            }
            Ev::Reset => {
                let pairs: Vec<(usize, usize)> = self.conns.keys().copied().collect();
                if !pairs.is_empty() {
                    let (a, b) = pairs[self.rng.random_range(0..pairs.len())];
                    self.close_all(a, b, true);
                }
                self.schedule_reset();
            }
        }
    }

    /// The bootstrap dial: a connection to `to` with nothing to send yet.
    fn send_dial(&mut self, from: usize, to: usize) {
        let key = (from, to);
        if !self.dialling.contains_key(&key) && !self.connected(from, to) {
            self.dialling.insert(key, Vec::new());
            let delay = self.latency();
            self.at(delay, Ev::DialDone { from, to });
        }
    }

    fn schedule_reset(&mut self) {
        if self.config.resets_per_sec <= 0.0 {
            return;
        }
        let gap = -self.rng.random::<f64>().max(1e-12).ln() / self.config.resets_per_sec;
        if self.now.as_secs_f64() + gap < self.config.turbulent_for.as_secs_f64() {
            self.at(Duration::from_secs_f64(gap), Ev::Reset);
        }
    }

    fn run(mut self) -> LinksReport {
        for i in 0..self.config.peers {
            let start = if i == 0 || self.config.start_spread.is_zero() {
                Duration::ZERO
            } else {
                Duration::from_nanos(
                    self.rng
                        .random_range(0..self.config.start_spread.as_nanos() as u64),
                )
            };
            self.at(start, Ev::Start(i));
        }
        self.schedule_reset();
        while let Some(Reverse(Scheduled { at, ev, .. })) = self.events.pop() {
            if at > self.config.end {
                break;
            }
            self.now = at;
            self.handle(ev);
        }
        self.finish()
    }

    fn finish(mut self) -> LinksReport {
        let view: BTreeSet<u64> = self.ids.iter().copied().collect();
        let graph = self.config.rule.graph(&view);
        let mut report = std::mem::take(&mut self.report);
        for (i, node) in self.nodes.iter().enumerate() {
            let up = node.up();
            report.max_degree = report.max_degree.max(up.len());
            for peer in &up {
                let j = self.index(*peer);
                if self.nodes[j].is_up(&self.ids[i]) {
                    if i < j {
                        report.agreed += 1;
                    }
                } else {
                    report.asymmetric += 1;
                }
            }
            let should: BTreeSet<u64> = graph.neighbours_of(&self.ids[i]);
            report.missing += should.difference(&up).count();
        }
        report.missing /= 2;
        report.degree_bound = self.config.rule.max_degree(self.config.peers);
        report.settle_secs = self
            .last_change
            .saturating_sub(self.config.turbulent_for)
            .as_secs_f64();
        report
    }
}

/// Runs the scenario and reports whether every edge ended agreed by both ends or by neither.
pub fn run_links(config: &LinksConfig) -> LinksReport {
    Links::new(config.clone()).run()
}
