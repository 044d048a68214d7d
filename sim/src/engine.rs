//! The discrete-event engine: a virtual clock, an event heap ordered by (time, insertion
//! sequence), and unmodified [`murmur_gossip::peer::Peer`]s driven through `handle`.
//!
//! # Events
//! Frame deliveries, compute completions, peer timers, link changes (a neighbour noticed up or
//! down), scheduled churn and partitions, and time-based evaluation ticks. Each peer slot has an
//! incarnation number; events addressed to an earlier incarnation (a frame in flight to a
//! peer that crashed since, a timer of the process that died) are dropped, as they would be.
//!
//! # Determinism with several threads
//! The expensive input is `ComputeGranted` (it runs H minibatch steps). When the heap holds a
//! run of compute completions at the same virtual time for different peers, they are handled in
//! parallel with rayon: each touches only its own peer, so the result is the same as handling
//! them one by one, and their outputs are then applied in heap order. Evaluation (models on
//! the test set, consensus distance) is also parallel, with per-peer results reduced in peer
//! order. Every random draw of the network and the churn comes from seeded generators used only
//! in that fixed order, so one seed gives the same bits on 1 or 2 threads.

use std::cmp::Ordering;
use std::collections::{BTreeSet, BinaryHeap};

use crate::error::{EngineError, InvalidSetting};
use murmur_gossip::learner::{Evaluation, LocalLearner};
use murmur_gossip::peer::{
    ConfigError, Input, Micros, Output, Peer, PeerCheckpoint, PeerConfig, PeerStats, TimerToken,
};
use ndarray::Array1;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;
use rayon::prelude::*;

use murmur_topology::schedule::Schedule;

use crate::adversary::{Adversary, AdversaryConfig};
use crate::compute::ComputeConfig;
use crate::faults::{ChurnKind, FaultsConfig};
use crate::metrics::EvalRow;
use crate::network::{Fate, Network, NetworkConfig};

/// Builds peer `i`'s learner (called again when a peer restarts or joins).
pub type LearnerFactory = Box<dyn Fn(usize) -> Box<dyn LocalLearner> + Send + Sync>;

/// Called after every evaluation tick.
type EvalHook = Box<dyn FnMut(&EvalRow) + Send>;

/// Everything the engine needs besides the learners.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Number of peer slots (joiners included).
    pub peers: usize,
    /// Stop granting compute to a peer once it completed this many rounds; the run ends when
    /// every running honest peer got there. 0: no round limit (use `duration`).
    pub rounds: u64,
    /// Stop at this virtual time.
    pub duration: Option<Micros>,
    /// Evaluate every this many rounds (of the slowest running honest peer); 0: off.
    pub eval_every_rounds: u64,
    /// Evaluate every this much virtual time.
    pub eval_every: Option<Micros>,
    /// Evaluate at most this many peers' own models per tick (evenly spaced ids); 0: all.
    pub eval_peers: usize,
    /// Base peer configuration (its `seed` is replaced per peer).
    pub peer: PeerConfig,
    /// Links.
    pub network: NetworkConfig,
    /// Compute speeds.
    pub compute: ComputeConfig,
    /// Churn and partitions.
    pub faults: FaultsConfig,
    /// Hostile peers.
    pub adversary: Option<AdversaryConfig>,
    /// Undirected edges of the communication graph.
    pub edges: Vec<(u32, u32)>,
    /// Push-sum out-neighbours per round (directed or time-varying graphs), if any.
    pub push_schedule: Option<Schedule>,
    /// Standard deviation of per-peer noise added to the initial model (0: all equal), for
    /// measuring consensus from distinct starting points.
    pub init_noise: f32,
    /// Seed of everything the engine draws.
    pub seed: u64,
}

#[derive(Debug)]
enum Event {
    Deliver {
        from: u32,
        to: u32,
        incarnation: u32,
        bytes: Vec<u8>,
    },
    Compute {
        peer: u32,
        incarnation: u32,
    },
    /// A compute completion whose `handle` already ran (in a parallel batch): its outputs
    /// are applied at this event's place in the order.
    Computed {
        peer: u32,
        incarnation: u32,
        outputs: Vec<Output<u32>>,
    },
    Timer {
        peer: u32,
        incarnation: u32,
        token: TimerToken,
    },
    /// Re-check the edge a–b at a's end and tell a if its view is out of date.
    LinkCheck {
        peer: u32,
        other: u32,
    },
    Churn {
        kind: ChurnKind,
        peers: Vec<u32>,
    },
    Partition {
        split: u32,
        heal: bool,
    },
    Eval,
}

#[derive(Debug)]
struct Entry {
    at: Micros,
    seq: u64,
    ev: Event,
}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl Eq for Entry {}
impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Entry {
    // Reversed: BinaryHeap is a max-heap and we want the earliest (time, seq) first.
    fn cmp(&self, other: &Self) -> Ordering {
        (other.at, other.seq).cmp(&(self.at, self.seq))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Status {
    /// Not started yet (a later joiner).
    Absent,
    Live,
    Crashed,
    Left,
}

#[derive(Debug)]
struct Slot {
    peer: Option<Peer<u32>>,
    status: Status,
    incarnation: u32,
    /// Neighbours this peer was told are up.
    view: BTreeSet<u32>,
    speed: f64,
    straggler: bool,
    attacker: Option<Adversary>,
    checkpoint: Option<PeerCheckpoint>,
    last_loss: f32,
    /// Traffic of earlier incarnations.
    retired: PeerStats,
    /// Frames rejected by earlier incarnations.
    retired_rejected: u64,
    /// Reached the round limit: no more compute.
    parked: bool,
    /// A late joiner that has not adopted a model yet: when it joined.
    joined_at: Option<Micros>,
    /// While a compute that ran early (in a parallel batch) waits for its place in the
    /// order: what the peer looked like before it, which is what metrics must see until then.
    ahead: Option<Ahead>,
}

#[derive(Debug)]
struct Ahead {
    model: Vec<f32>,
    round: u64,
    stats: PeerStats,
}

impl Slot {
    fn honest_live(&self) -> bool {
        self.status == Status::Live && self.attacker.is_none() && self.peer.is_some()
    }

    /// The peer's round as of the engine's clock.
    fn round(&self) -> u64 {
        match (&self.ahead, &self.peer) {
            (Some(a), _) => a.round,
            (None, Some(p)) => p.round(),
            (None, None) => 0,
        }
    }

    /// The peer's model as of the engine's clock.
    fn model(&self) -> Option<&[f32]> {
        match (&self.ahead, &self.peer) {
            (Some(a), _) => Some(&a.model),
            (None, Some(p)) => p.model().as_slice(),
            (None, None) => None,
        }
    }

    /// The peer's counters as of the engine's clock.
    fn stats(&self) -> Option<&PeerStats> {
        match (&self.ahead, &self.peer) {
            (Some(a), _) => Some(&a.stats),
            (None, Some(p)) => Some(p.stats()),
            (None, None) => None,
        }
    }
}

/// What a finished run reports.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct RunReport {
    /// Final evaluation.
    pub last: EvalRow,
    /// Every tick.
    pub rows: Vec<EvalRow>,
    /// Events processed.
    pub events: u64,
    /// Compute slots run in parallel batches (of the total).
    pub parallel_computes: u64,
    /// Compute slots run.
    pub computes: u64,
    /// Bytes the honest peers' updates would have taken as dense f32 frames, plus their
    /// other traffic (what D-PSGD-sized updates would cost).
    pub dense_equivalent_bytes: u64,
    /// Frames lost, cut, reordered by the network.
    pub network: crate::network::NetworkStats,
    /// Frames rejected by honest peers, total.
    pub rejected: u64,
    /// Attacker ids.
    pub attackers: Vec<u32>,
    /// Straggler ids.
    pub stragglers: Vec<u32>,
    /// Model dimension.
    pub dim: usize,
    /// Parameter vectors a peer holds (model, public copy, neighbour copies), mean.
    pub vectors_per_peer: f64,
    /// Every late joiner that adopted a model, in the order they did.
    pub joins: Vec<JoinRecord>,
    /// DiLoCo outer steps taken by the honest peers (`peer.outer`), total.
    pub outer_steps: u64,
}

/// One late joiner's download: from its `join` event to its adoption.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct JoinRecord {
    /// The joiner.
    pub peer: u32,
    /// Simulated seconds from the join event to the model adopted (the chunked downloads of
    /// its neighbours' copies, or of its donor's model, on the simulated links).
    pub join_s: f64,
    /// Neighbours whose vectors the model is made of.
    pub donors: u32,
}

/// The simulator state.
pub struct Engine {
    config: EngineConfig,
    factory: LearnerFactory,
    init: Array1<f32>,
    now: Micros,
    seq: u64,
    heap: BinaryHeap<Entry>,
    slots: Vec<Slot>,
    adjacency: Vec<Vec<u32>>,
    /// Active partition: peers below `split` are on one side.
    cut_split: Option<u32>,
    network: Network,
    churn_rng: ChaCha8Rng,
    next_eval_round: u64,
    rows: Vec<EvalRow>,
    events: u64,
    computes: u64,
    parallel_computes: u64,
    completions: u64,
    progress: Option<EvalHook>,
    /// Out-neighbours of recent rounds of the push schedule.
    push_cache: std::collections::BTreeMap<u64, Vec<Vec<u32>>>,
    /// Late joiners' downloads so far.
    joins: Vec<JoinRecord>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("now", &self.now)
            .field("peers", &self.slots.len())
            .field("pending_events", &self.heap.len())
            .finish()
    }
}

/// The run's named random streams (the labels live in [`murmur_gossip::seed::stream`] with
/// every other stream's). The all-reduce clock (`crate::ring`) draws from the speed, network
/// and link streams too, so its peers and links are the swarm's own.
pub(crate) use murmur_gossip::seed::{derive, derive_indexed, stream};

fn secs(s: f64) -> Micros {
    (s * 1e6).round() as Micros
}

impl Engine {
    /// Builds the swarm: learners, speed factors, attackers; nothing runs until [`Engine::run`].
    pub fn new(
        config: EngineConfig,
        factory: LearnerFactory,
        init: Array1<f32>,
    ) -> Result<Self, EngineError> {
        config.peer.validate()?;
        config.network.validate()?;
        config.compute.validate()?;
        config.faults.validate(config.peers)?;
        let n = config.peers;
        if n == 0 {
            return Err(InvalidSetting::new("peers", "= 0: need at least one peer").into());
        }
        let mut adjacency = vec![Vec::new(); n];
        for &(a, b) in &config.edges {
            if a as usize >= n || b as usize >= n || a == b {
                return Err(InvalidSetting::new(
                    "topology",
                    format!("gives the edge ({a}, {b}), outside {n} peers"),
                )
                .into());
            }
            adjacency[a as usize].push(b);
            adjacency[b as usize].push(a);
        }
        for adj in &mut adjacency {
            adj.sort_unstable();
            adj.dedup();
        }
        let mut speed_rng = ChaCha8Rng::seed_from_u64(derive(config.seed, stream::SPEEDS));
        let (speeds, slow) = config.compute.factors(n, &mut speed_rng);
        let mut adv_rng = ChaCha8Rng::seed_from_u64(derive(config.seed, stream::ADVERSARY));
        let attackers: BTreeSet<u32> = config
            .adversary
            .as_ref()
            .map(|a| a.choose(n, &mut adv_rng).into_iter().collect())
            .unwrap_or_default();
        let late: BTreeSet<u32> = config.faults.late_joiners().into_iter().collect();
        let dim = init.len();
        let slots = (0..n)
            .map(|i| Slot {
                peer: None,
                status: if late.contains(&(i as u32)) {
                    Status::Absent
                } else {
                    Status::Live
                },
                incarnation: 0,
                view: BTreeSet::new(),
                speed: speeds[i],
                straggler: slow[i],
                attacker: attackers.contains(&(i as u32)).then(|| {
                    config
                        .adversary
                        .as_ref()
                        .expect("attackers imply a config")
                        .attacker(dim)
                }),
                checkpoint: None,
                last_loss: f32::NAN,
                retired: PeerStats::default(),
                retired_rejected: 0,
                parked: false,
                joined_at: None,
                ahead: None,
            })
            .collect();
        let network = Network::new(
            config.network.clone(),
            n,
            ChaCha8Rng::seed_from_u64(derive(config.seed, stream::NETWORK)),
            derive(config.seed, stream::LINKS),
        );
        let mut engine = Engine {
            churn_rng: ChaCha8Rng::seed_from_u64(derive(config.seed, stream::CHURN)),
            next_eval_round: config.eval_every_rounds,
            config,
            factory,
            init,
            now: 0,
            seq: 0,
            heap: BinaryHeap::new(),
            slots,
            adjacency,
            cut_split: None,
            network,
            rows: Vec::new(),
            events: 0,
            computes: 0,
            parallel_computes: 0,
            completions: 0,
            progress: None,
            push_cache: std::collections::BTreeMap::new(),
            joins: Vec::new(),
        };
        for i in 0..n {
            if engine.slots[i].status == Status::Live {
                let peer = engine.make_peer(i, 0)?;
                engine.slots[i].peer = Some(peer);
            }
        }
        Ok(engine)
    }

    /// Called after every evaluation tick (progress bars, logs).
    pub fn on_eval(&mut self, f: impl FnMut(&EvalRow) + Send + 'static) {
        self.progress = Some(Box::new(f));
    }

    fn make_peer(&self, i: usize, incarnation: u32) -> Result<Peer<u32>, ConfigError> {
        let learner = (self.factory)(i);
        let mut init = self.init.clone();
        if self.config.init_noise > 0.0 {
            let mut rng = ChaCha8Rng::seed_from_u64(derive_indexed(
                self.config.seed,
                stream::INIT_NOISE,
                i as u64,
            ));
            for x in init.iter_mut() {
                *x += self.config.init_noise * rng.sample::<f32, _>(StandardNormal);
            }
        }
        let config = PeerConfig {
            seed: derive_indexed(
                self.config.seed ^ self.config.peer.seed,
                stream::PEER,
                i as u64,
            )
            .wrapping_add(u64::from(incarnation)),
            ..self.config.peer.clone()
        };
        Peer::new(i as u32, config, learner, init)
    }

    /// Out-neighbours of peer `i` in round `t` of the push schedule (cached per round).
    fn push_targets(&mut self, i: u32, t: u64) -> Vec<u32> {
        let Some(schedule) = self.config.push_schedule.as_ref() else {
            return Vec::new();
        };
        let t = schedule.period().map_or(t, |p| t % p.max(1));
        if !self.push_cache.contains_key(&t) {
            let round = schedule.round(t);
            let n = self.slots.len();
            let targets = (0..n)
                .map(|j| {
                    round
                        .targets
                        .out_neighbours(j)
                        .iter()
                        .map(|&k| k as u32)
                        .collect()
                })
                .collect();
            if self.push_cache.len() >= 64 {
                self.push_cache.pop_first();
            }
            self.push_cache.insert(t, targets);
        }
        self.push_cache[&t][i as usize].clone()
    }

    fn push(&mut self, at: Micros, ev: Event) {
        self.seq += 1;
        self.heap.push(Entry {
            at,
            seq: self.seq,
            ev,
        });
    }

    fn connected(&self, a: u32, b: u32) -> bool {
        let live = |i: u32| self.slots[i as usize].status == Status::Live;
        let cut = self.cut_split.is_some_and(|s| (a < s) != (b < s));
        live(a) && live(b) && !cut
    }

    /// Brings a's view of the edge to b in line with the network (NeighbourUp/Down).
    fn sync_link(&mut self, a: u32, b: u32) {
        let slot = &self.slots[a as usize];
        if slot.status != Status::Live || slot.peer.is_none() {
            return;
        }
        let up = self.connected(a, b);
        let seen = slot.view.contains(&b);
        if up != seen {
            let input = if up {
                self.slots[a as usize].view.insert(b);
                Input::NeighbourUp(b)
            } else {
                self.slots[a as usize].view.remove(&b);
                Input::NeighbourDown(b)
            };
            self.input(a, input);
        }
    }

    fn input(&mut self, i: u32, input: Input<u32>) {
        let now = self.now;
        let Some(peer) = self.slots[i as usize].peer.as_mut() else {
            return;
        };
        let out = peer.handle(now, input);
        self.apply(i, out);
    }

    fn apply(&mut self, i: u32, outputs: Vec<Output<u32>>) {
        let now = self.now;
        for o in outputs {
            match o {
                Output::Send { to, bytes } => {
                    let frames = match self.slots[i as usize].attacker.as_mut() {
                        Some(a) => a.rewrite(bytes),
                        None => vec![bytes],
                    };
                    for bytes in frames {
                        if to as usize >= self.slots.len() {
                            continue;
                        }
                        if let Fate::Deliver(at) =
                            self.network
                                .transmit_to(i as usize, to as usize, bytes.len(), now)
                        {
                            let incarnation = self.slots[to as usize].incarnation;
                            self.push(
                                at,
                                Event::Deliver {
                                    from: i,
                                    to,
                                    incarnation,
                                    bytes,
                                },
                            );
                        }
                    }
                }
                Output::ScheduleTimer { at, token } => {
                    let incarnation = self.slots[i as usize].incarnation;
                    self.push(
                        at.max(now),
                        Event::Timer {
                            peer: i,
                            incarnation,
                            token,
                        },
                    );
                }
                Output::WantCompute => {
                    let slot = &mut self.slots[i as usize];
                    let Some(peer) = slot.peer.as_ref() else {
                        continue;
                    };
                    if self.config.rounds > 0 && peer.round() >= self.config.rounds {
                        slot.parked = true;
                        continue;
                    }
                    let steps = peer.config().local_steps;
                    let at = now + self.config.compute.duration(steps, slot.speed);
                    let incarnation = slot.incarnation;
                    self.push(
                        at,
                        Event::Compute {
                            peer: i,
                            incarnation,
                        },
                    );
                }
                Output::RoundCompleted { round, loss } => {
                    self.completions += 1;
                    if loss.is_finite() {
                        self.slots[i as usize].last_loss = loss;
                    }
                    if self.config.push_schedule.is_some() {
                        let targets = self.push_targets(i, round + 1);
                        self.input(i, Input::PushTargets(targets));
                    }
                }
                Output::CheckpointDue { .. } => {
                    let slot = &mut self.slots[i as usize];
                    slot.checkpoint = slot.peer.as_ref().map(|p| p.checkpoint());
                }
                // Misbehaving: the peer already dropped the edge; the simulated network keeps
                // delivering, and the peer refuses the sender's frames itself.
                Output::ModelAdopted { donors, .. } => {
                    if let Some(t) = self.slots[i as usize].joined_at.take() {
                        self.joins.push(JoinRecord {
                            peer: i,
                            join_s: (now - t) as f64 / 1e6,
                            donors,
                        });
                    }
                }
                Output::Rejected { .. } | Output::Misbehaving { .. } => {}
            }
        }
    }

    fn schedule_faults(&mut self) {
        let n = self.slots.len();
        let churn = self.config.faults.churn.clone();
        for c in churn {
            let peers = if c.peers.is_empty() {
                let count = (c.fraction.unwrap_or(0.0) * n as f64).round() as usize;
                let mut ids: Vec<u32> = (0..n as u32).collect();
                ids.shuffle(&mut self.churn_rng);
                ids.truncate(count);
                ids.sort_unstable();
                ids
            } else {
                c.peers.clone()
            };
            if let Some(after) = c.restart_after_s {
                // A restart never precedes the neighbours noticing the crash.
                let at = secs(c.at_s + after)
                    .max(secs(c.at_s) + self.network.config().detect_micros() + 1);
                self.push(
                    at,
                    Event::Churn {
                        kind: ChurnKind::Restart,
                        peers: peers.clone(),
                    },
                );
            }
            self.push(
                secs(c.at_s),
                Event::Churn {
                    kind: c.kind,
                    peers,
                },
            );
        }
        let partitions = self.config.faults.partitions.clone();
        for p in partitions {
            let split = p.split.unwrap_or(n as u32 / 2);
            self.push(secs(p.at_s), Event::Partition { split, heal: false });
            self.push(secs(p.heal_s), Event::Partition { split, heal: true });
        }
    }

    fn start_peer(&mut self, i: u32) {
        let neighbours = self.adjacency[i as usize].clone();
        for j in neighbours {
            self.sync_link(i, j);
            self.sync_link(j, i);
        }
        if self.config.push_schedule.is_some() {
            let round = self.slots[i as usize]
                .peer
                .as_ref()
                .map_or(0, |p| p.round());
            let targets = self.push_targets(i, round);
            self.input(i, Input::PushTargets(targets));
        }
        self.input(i, Input::Start);
    }

    fn churn(&mut self, kind: ChurnKind, peers: &[u32]) {
        let detect = self.network.config().detect_micros();
        for &p in peers {
            let pi = p as usize;
            match kind {
                ChurnKind::Crash | ChurnKind::Leave => {
                    if self.slots[pi].status != Status::Live {
                        continue;
                    }
                    if kind == ChurnKind::Leave {
                        self.input(p, Input::Shutdown);
                    }
                    let slot = &mut self.slots[pi];
                    slot.status = if kind == ChurnKind::Leave {
                        Status::Left
                    } else {
                        Status::Crashed
                    };
                    if let Some(peer) = slot.peer.take() {
                        slot.retired += peer.stats();
                        slot.retired_rejected += peer.stats().rejected.total();
                    }
                    slot.view.clear();
                    slot.incarnation += 1;
                    slot.parked = false;
                    self.network.reset_uplink(pi, self.now);
                    for j in self.adjacency[pi].clone() {
                        self.push(self.now + detect, Event::LinkCheck { peer: j, other: p });
                    }
                }
                ChurnKind::Restart | ChurnKind::Join => {
                    let ok = match kind {
                        ChurnKind::Restart => self.slots[pi].status == Status::Crashed,
                        _ => self.slots[pi].status == Status::Absent,
                    };
                    if !ok {
                        continue;
                    }
                    let incarnation = self.slots[pi].incarnation;
                    let Ok(mut peer) = self.make_peer(pi, incarnation) else {
                        continue;
                    };
                    if kind == ChurnKind::Restart
                        && let Some(cp) = self.slots[pi].checkpoint.clone()
                    {
                        // A checkpoint that does not fit leaves a fresh peer (it adopts).
                        let _ = peer.restore(cp);
                        if self.config.peer.privacy.is_some() {
                            // The restored generator would replay the noise already spent on
                            // the updates sent since that checkpoint: a new key per
                            // incarnation, from the seed (the daemon draws it from the OS).
                            let key =
                                noise_key(self.config.seed, pi as u64, u64::from(incarnation));
                            peer.set_noise_key(key)
                                .expect("the restarted peer has not started yet");
                        }
                    }
                    let slot = &mut self.slots[pi];
                    slot.peer = Some(peer);
                    slot.status = Status::Live;
                    if kind == ChurnKind::Join {
                        slot.joined_at = Some(self.now);
                    }
                    // Neighbours that still think the old process is up see it go and come
                    // back (a new connection replaces the dead one).
                    for j in self.adjacency[pi].clone() {
                        if self.slots[j as usize].view.contains(&p) {
                            self.slots[j as usize].view.remove(&p);
                            self.input(j, Input::NeighbourDown(p));
                        }
                    }
                    self.start_peer(p);
                }
            }
        }
    }

    fn partition(&mut self, split: u32, heal: bool) {
        let detect = self.network.config().detect_micros();
        self.cut_split = if heal { None } else { Some(split) };
        let cross: Vec<(u32, u32)> = self
            .config
            .edges
            .iter()
            .copied()
            .filter(|&(a, b)| (a < split) != (b < split))
            .collect();
        for (a, b) in cross {
            let at = if heal { self.now } else { self.now + detect };
            self.push(at, Event::LinkCheck { peer: a, other: b });
            self.push(at, Event::LinkCheck { peer: b, other: a });
        }
    }

    fn min_round(&self) -> Option<u64> {
        self.slots
            .iter()
            .filter(|s| s.honest_live())
            .map(Slot::round)
            .min()
    }

    fn all_parked(&self) -> bool {
        self.config.rounds > 0
            && self
                .slots
                .iter()
                .filter(|s| s.honest_live())
                .all(|s| s.round() >= self.config.rounds)
    }

    /// Runs to the end (round limit, duration or an empty event queue); returns the report.
    pub fn run(mut self) -> RunReport {
        let n = self.slots.len();
        for i in 0..n {
            for &j in &self.adjacency[i].clone() {
                if self.connected(i as u32, j) {
                    self.slots[i].view.insert(j);
                    self.input(i as u32, Input::NeighbourUp(j));
                }
            }
        }
        for i in 0..n as u32 {
            if self.slots[i as usize].status == Status::Live {
                if self.config.push_schedule.is_some() {
                    let targets = self.push_targets(i, 0);
                    self.input(i, Input::PushTargets(targets));
                }
                self.input(i, Input::Start);
            }
        }
        self.schedule_faults();
        if let Some(every) = self.config.eval_every {
            self.push(every.max(1), Event::Eval);
        }
        self.evaluate();
        let mut last_round_checked = 0;
        while let Some(entry) = self.heap.pop() {
            if let Some(d) = self.config.duration
                && entry.at > d
            {
                self.now = d;
                break;
            }
            self.now = entry.at;
            self.events += 1;
            match entry.ev {
                Event::Compute { peer, incarnation } => {
                    self.compute_batch(peer, incarnation, entry.seq)
                }
                Event::Computed {
                    peer,
                    incarnation,
                    outputs,
                } => {
                    let s = &mut self.slots[peer as usize];
                    s.ahead = None;
                    if s.incarnation == incarnation && s.status == Status::Live {
                        self.apply(peer, outputs);
                    }
                }
                Event::Deliver {
                    from,
                    to,
                    incarnation,
                    bytes,
                } => {
                    if self.slots[to as usize].incarnation != incarnation
                        || self.slots[to as usize].status != Status::Live
                    {
                        self.network.stats.undeliverable += 1;
                    } else if self.cut_split.is_some() && !self.connected(from, to) {
                        self.network.stats.cut += 1;
                    } else {
                        self.input(to, Input::Message { from, bytes });
                    }
                }
                Event::Timer {
                    peer,
                    incarnation,
                    token,
                } => {
                    if self.slots[peer as usize].incarnation == incarnation {
                        self.input(peer, Input::Timer(token));
                    }
                }
                Event::LinkCheck { peer, other } => self.sync_link(peer, other),
                Event::Churn { kind, peers } => self.churn(kind, &peers),
                Event::Partition { split, heal } => self.partition(split, heal),
                Event::Eval => {
                    self.evaluate();
                    if let Some(every) = self.config.eval_every {
                        self.push(self.now + every.max(1), Event::Eval);
                    }
                }
            }
            if self.config.eval_every_rounds > 0 {
                // Only scan when some round completed since the last look.
                if self.completions != last_round_checked {
                    last_round_checked = self.completions;
                    while self.min_round().is_some_and(|r| r >= self.next_eval_round) {
                        self.evaluate();
                        self.next_eval_round += self.config.eval_every_rounds;
                    }
                }
            }
            if self.all_parked() && self.config.duration.is_none() {
                break;
            }
        }
        if self
            .rows
            .last()
            .is_none_or(|r| r.time_s != self.now as f64 / 1e6)
        {
            self.evaluate();
        }
        self.report()
    }

    /// Runs the compute completion just popped together with every other compute completion
    /// that can safely run now: due before `now + min latency` (no frame sent from now on can
    /// reach its peer earlier), with no event for that peer queued before it, and no churn,
    /// partition, link or evaluation event in between. Their `handle` calls run in parallel
    /// (each touches only its own peer); their outputs go back into the heap at the original
    /// (time, sequence) slots and are applied when those come up, so the outcome does not
    /// depend on the number of threads. Until then metrics see the peer as it was before the
    /// compute (model, round and counters are kept aside), so they match a one-by-one run.
    fn compute_batch(&mut self, first: u32, first_inc: u32, first_seq: u64) {
        let lookahead = self.network.config().min_delay_micros();
        let horizon = self.now + lookahead;
        let mut batch = vec![(first, first_inc, self.now, first_seq)];
        let mut in_batch = BTreeSet::from([first]);
        let mut blocked = BTreeSet::new();
        let mut window = Vec::new();
        while let Some(top) = self.heap.peek() {
            if !(top.at == self.now || top.at < horizon) {
                break;
            }
            if matches!(
                top.ev,
                Event::Churn { .. }
                    | Event::Partition { .. }
                    | Event::Eval
                    | Event::LinkCheck { .. }
            ) {
                break;
            }
            let e = self.heap.pop().expect("peeked");
            match e.ev {
                Event::Compute { peer, incarnation }
                    if !blocked.contains(&peer) && !in_batch.contains(&peer) =>
                {
                    batch.push((peer, incarnation, e.at, e.seq));
                    in_batch.insert(peer);
                }
                Event::Deliver { to: p, .. }
                | Event::Timer { peer: p, .. }
                | Event::Compute { peer: p, .. }
                | Event::Computed { peer: p, .. } => {
                    blocked.insert(p);
                    window.push(e);
                }
                _ => window.push(e),
            }
        }
        self.heap.extend(window);
        let batch: Vec<(u32, u32, Micros, u64)> = batch
            .into_iter()
            .filter(|&(p, incarnation, _, _)| {
                let s = &self.slots[p as usize];
                s.incarnation == incarnation && s.status == Status::Live && s.peer.is_some()
            })
            .collect();
        self.computes += batch.len() as u64;
        if batch.len() == 1 && batch[0].2 == self.now {
            self.input(batch[0].0, Input::ComputeGranted);
            return;
        }
        if batch.len() > 1 {
            self.parallel_computes += batch.len() as u64;
        }
        let mut due: Vec<Option<Micros>> = vec![None; self.slots.len()];
        for &(p, _, at, _) in &batch {
            due[p as usize] = Some(at);
        }
        let outputs: Vec<(u32, Vec<Output<u32>>)> = self
            .slots
            .par_iter_mut()
            .enumerate()
            .filter_map(|(i, slot)| {
                let at = due[i]?;
                let peer = slot.peer.as_mut().expect("filtered on live peers");
                slot.ahead = Some(Ahead {
                    model: peer.model().to_vec(),
                    round: peer.round(),
                    stats: peer.stats().clone(),
                });
                Some((i as u32, peer.handle(at, Input::ComputeGranted)))
            })
            .collect();
        let mut outputs: std::collections::BTreeMap<u32, Vec<Output<u32>>> =
            outputs.into_iter().collect();
        for (p, incarnation, at, seq) in batch {
            let out = outputs.remove(&p).expect("one result per batched peer");
            self.heap.push(Entry {
                at,
                seq,
                ev: Event::Computed {
                    peer: p,
                    incarnation,
                    outputs: out,
                },
            });
        }
    }

    fn evaluate(&mut self) {
        let honest: Vec<usize> = (0..self.slots.len())
            .filter(|&i| self.slots[i].honest_live())
            .collect();
        let dim = self.init.len();
        let mut row = EvalRow {
            time_s: self.now as f64 / 1e6,
            live_peers: honest.len(),
            epsilon: f64::NAN,
            ..EvalRow::default()
        };
        // Traffic over every slot, every incarnation.
        let mut per_peer_bytes = Vec::with_capacity(self.slots.len());
        let mut most_private_rounds = 0u64;
        for s in &self.slots {
            let mut st = s.retired.clone();
            let mut rejected = s.retired_rejected;
            if let Some(now_stats) = s.stats() {
                st += now_stats;
                rejected += now_stats.rejected.total();
            }
            per_peer_bytes.push(st.bytes_sent);
            row.bytes += st.bytes_sent;
            row.messages += st.messages_sent;
            if s.attacker.is_none() {
                row.rejected += rejected;
                // Every release of this slot's data, whichever incarnation made it (a restart
                // from an older checkpoint re-runs rounds: those releases count again).
                most_private_rounds = most_private_rounds.max(st.private_rounds);
            }
        }
        if let Some(privacy) = &self.config.peer.privacy {
            row.epsilon = privacy.spent(most_private_rounds).epsilon;
        }
        let slots_n = self.slots.len().max(1) as f64;
        row.bytes_per_peer = row.bytes as f64 / slots_n;
        row.bytes_per_peer_max = per_peer_bytes.iter().copied().max().unwrap_or(0);
        row.messages_per_peer = row.messages as f64 / slots_n;
        if honest.is_empty() {
            row.train_loss = f64::NAN;
            row.accuracy_avg = f64::NAN;
            row.accuracy_mean = f64::NAN;
            row.accuracy_worst = f64::NAN;
            row.test_loss_avg = f64::NAN;
            self.finish_row(row);
            return;
        }
        let mut mean = vec![0.0f64; dim];
        let (mut rounds, mut steps, mut loss, mut loss_n) = (0u64, 0u64, 0.0f64, 0usize);
        let mut min_round = u64::MAX;
        for &i in &honest {
            let s = &self.slots[i];
            let model = s.model().expect("honest_live");
            for (m, x) in mean.iter_mut().zip(model) {
                *m += f64::from(*x);
            }
            rounds += s.round();
            min_round = min_round.min(s.round());
            steps += s.stats().map_or(0, |st| st.local_steps) + s.retired.local_steps;
            if s.last_loss.is_finite() {
                loss += f64::from(s.last_loss);
                loss_n += 1;
            }
        }
        let h = honest.len() as f64;
        mean.iter_mut().for_each(|m| *m /= h);
        row.round = min_round;
        row.round_mean = rounds as f64 / h;
        row.steps_mean = steps as f64 / h;
        row.train_loss = if loss_n > 0 {
            loss / loss_n as f64
        } else {
            f64::NAN
        };
        let mean_f32: Vec<f32> = mean.iter().map(|&m| m as f32).collect();
        let avg_eval = self.slots[honest[0]]
            .peer
            .as_ref()
            .expect("honest_live")
            .learner()
            .evaluate(&mean_f32);
        row.test_loss_avg = f64::from(avg_eval.loss);
        row.accuracy_avg = avg_eval.accuracy.map_or(f64::NAN, f64::from);
        // Per-peer evaluation and consensus distance, in parallel, reduced in peer order.
        let sample: BTreeSet<usize> =
            if self.config.eval_peers == 0 || self.config.eval_peers >= honest.len() {
                honest.iter().copied().collect()
            } else {
                let k = self.config.eval_peers;
                (0..k).map(|j| honest[j * honest.len() / k]).collect()
            };
        let mean_ref = &mean;
        let per_peer: Vec<(f64, Option<Evaluation>)> = self
            .slots
            .par_iter_mut()
            .enumerate()
            .filter(|(_, s)| s.honest_live())
            .map(|(i, s)| {
                let model = s.model().expect("honest_live");
                let dist = murmur_gossip::consensus::squared_distance(model, mean_ref);
                let learner = s.peer.as_ref().expect("honest_live").learner();
                let eval = sample.contains(&i).then(|| learner.evaluate(model));
                (dist, eval)
            })
            .collect();
        let consensus = murmur_gossip::consensus::Consensus::from_parts(
            per_peer.iter().map(|(d, _)| d).sum::<f64>(),
            honest.len(),
            &mean,
        );
        row.consensus = consensus.distance;
        row.consensus_relative = consensus.relative();
        let accs: Vec<f64> = per_peer
            .iter()
            .filter_map(|(_, e)| e.and_then(|e| e.accuracy).map(f64::from))
            .collect();
        if accs.is_empty() {
            row.accuracy_mean = f64::NAN;
            row.accuracy_worst = f64::NAN;
        } else {
            row.accuracy_mean = accs.iter().sum::<f64>() / accs.len() as f64;
            row.accuracy_worst = accs.iter().copied().fold(f64::INFINITY, f64::min);
        }
        self.finish_row(row);
    }

    fn finish_row(&mut self, row: EvalRow) {
        if let Some(f) = self.progress.as_mut() {
            f(&row);
        }
        self.rows.push(row);
    }

    fn report(self) -> RunReport {
        let mut dense_equivalent = 0u64;
        let mut outer_steps = 0u64;
        let mut vectors = 0usize;
        let mut live = 0usize;
        for s in &self.slots {
            if s.attacker.is_some() {
                continue;
            }
            let mut st = s.retired.clone();
            if let Some(p) = &s.peer {
                st += p.stats();
                vectors += p.vectors_held();
                live += 1;
            }
            dense_equivalent += st.bytes_sent - st.update_bytes_sent + st.dense_update_bytes;
            outer_steps += st.outer_steps;
        }
        RunReport {
            last: self.rows.last().cloned().unwrap_or_default(),
            rejected: self.rows.last().map_or(0, |r| r.rejected),
            rows: self.rows,
            events: self.events,
            parallel_computes: self.parallel_computes,
            computes: self.computes,
            dense_equivalent_bytes: dense_equivalent,
            outer_steps,
            network: self.network.stats.clone(),
            attackers: self
                .slots
                .iter()
                .enumerate()
                .filter(|(_, s)| s.attacker.is_some())
                .map(|(i, _)| i as u32)
                .collect(),
            stragglers: self
                .slots
                .iter()
                .enumerate()
                .filter(|(_, s)| s.straggler)
                .map(|(i, _)| i as u32)
                .collect(),
            dim: self.init.len(),
            vectors_per_peer: vectors as f64 / live.max(1) as f64,
            joins: self.joins,
        }
    }
}

/// The privacy-noise key of incarnation `incarnation` of peer `i` after a restart.
fn noise_key(seed: u64, i: u64, incarnation: u64) -> [u8; 32] {
    let mut key = [0u8; 32];
    for (k, chunk) in key.chunks_exact_mut(8).enumerate() {
        let word = derive_indexed(
            seed,
            stream::PRIVACY_KEY,
            (i << 36) ^ (incarnation << 4) ^ k as u64,
        );
        chunk.copy_from_slice(&word.to_le_bytes());
    }
    key
}
