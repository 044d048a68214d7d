//! A tiny lock-step driver for tests, examples and quick experiments, and two learners that
//! need no data ([`Frozen`], [`Quadratic`]).
//!
//! [`LockStep`] owns peers with ids `0..n` and advances in ticks: every peer that asked for
//! compute gets it, then every frame is delivered (and every frame those deliveries produce)
//! until the network is quiet, then the clock moves by one tick and due timers fire. With no
//! faults and a round timeout longer than a tick, every round is fully synchronous, which is
//! what the exactness tests need. [`Faults`] injects seeded drops, duplicates and reordering
//! (a reordered frame is held back to the next tick, so it arrives after newer frames).

use std::collections::BTreeMap;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::{Input, Micros, Output, Peer, RejectReason, TimerToken};
use crate::learner::{Evaluation, LocalLearner};

/// Never moves the model: pure averaging.
#[derive(Debug, Clone)]
pub struct Frozen {
    /// Model dimension.
    pub dim: usize,
}

impl LocalLearner for Frozen {
    fn dim(&self) -> usize {
        self.dim
    }
    fn step(&mut self, _params: &mut [f32]) -> f32 {
        0.0
    }
    fn evaluate(&self, _params: &[f32]) -> Evaluation {
        Evaluation::default()
    }
    fn save_state(&self) -> Vec<u8> {
        Vec::new()
    }
    fn load_state(&mut self, bytes: &[u8]) -> Result<(), String> {
        if bytes.is_empty() {
            Ok(())
        } else {
            Err("frozen learner has no state".into())
        }
    }
}

/// f_i(x) = ½‖x − c_i‖²: gradient steps pull a peer towards its own centre c_i, so the
/// optimum of a swarm is the mean of the centres. Its state (the step count) makes checkpoint
/// round trips observable.
#[derive(Debug, Clone)]
pub struct Quadratic {
    /// This peer's centre c_i.
    pub centre: Vec<f32>,
    /// Step size.
    pub lr: f32,
    /// Steps taken (the learner's state).
    pub steps: u64,
}

impl LocalLearner for Quadratic {
    fn dim(&self) -> usize {
        self.centre.len()
    }
    fn step(&mut self, params: &mut [f32]) -> f32 {
        let mut loss = 0.0;
        for (p, c) in params.iter_mut().zip(&self.centre) {
            let g = *p - c;
            loss += 0.5 * g * g;
            *p -= self.lr * g;
        }
        self.steps += 1;
        loss
    }
    fn evaluate(&self, params: &[f32]) -> Evaluation {
        let loss = params
            .iter()
            .zip(&self.centre)
            .map(|(p, c)| 0.5 * (p - c) * (p - c))
            .sum();
        Evaluation {
            loss,
            accuracy: None,
        }
    }
    fn save_state(&self) -> Vec<u8> {
        self.steps.to_le_bytes().to_vec()
    }
    fn load_state(&mut self, bytes: &[u8]) -> Result<(), String> {
        let b: [u8; 8] = bytes
            .try_into()
            .map_err(|_| format!("expected 8 bytes, got {}", bytes.len()))?;
        self.steps = u64::from_le_bytes(b);
        Ok(())
    }
}

/// Seeded message faults, each a per-frame probability.
#[derive(Clone, Debug, PartialEq)]
pub struct Faults {
    /// Frame silently lost.
    pub drop: f64,
    /// Frame delivered twice.
    pub duplicate: f64,
    /// Frame held back until the next tick (arrives after newer frames).
    pub reorder: f64,
    /// Seed of the fault generator.
    pub seed: u64,
}

/// A frame rewriter for [`LockStep::rewrite`]: (from, to, bytes) -> deliver it.
pub type Rewrite = fn(u32, u32, &mut Vec<u8>) -> bool;

/// A frame on its way: (from, to, bytes).
type Frame = (u32, u32, Vec<u8>);

/// Lock-step driver over peers `0..n` (see the module docs).
#[derive(Debug)]
pub struct LockStep {
    /// The peers; peer `i` has id `i`.
    peers: Vec<Peer<u32>>,
    /// The driver's clock.
    now: Micros,
    /// How far the clock moves per tick.
    tick: Micros,
    /// Frames sent and not yet delivered.
    inflight: Vec<Frame>,
    /// Frames the fault injector reordered: delivered after the next tick's compute.
    held_back: Vec<Frame>,
    /// Scheduled timers by (due time, scheduling order): (peer, token).
    timers: BTreeMap<(Micros, u64), (u32, TimerToken)>,
    /// Scheduling order of the next timer (breaks ties between equal due times).
    timer_seq: u64,
    /// Per peer: a `WantCompute` is outstanding.
    wants_compute: Vec<bool>,
    /// Per peer: compute is granted only on every this-many-th tick (stragglers).
    compute_every: Vec<u64>,
    /// Ticks run so far.
    ticks: u64,
    /// Fault injection and its generator, when on.
    faults: Option<(Faults, ChaCha8Rng)>,
    /// Every rejection seen: (receiver, sender, reason).
    pub rejected: Vec<(u32, u32, RejectReason)>,
    /// Last reported local loss per peer.
    pub last_loss: Vec<f32>,
    /// Frames dropped, duplicated and held back by the fault injector.
    pub injected: [u64; 3],
    /// Every `CheckpointDue`: (peer, round).
    pub checkpoints_due: Vec<(u32, u64)>,
    /// Every `ModelAdopted`: (peer, from, round).
    pub adopted: Vec<(u32, u32, u64)>,
    /// Every `Misbehaving`: (peer, excluded neighbour, rejected frames counted).
    pub misbehaving: Vec<(u32, u32, u64)>,
    /// When `Some`, every frame sent is also appended here: (from, to, bytes).
    pub recorded: Option<Vec<(u32, u32, Vec<u8>)>>,
    /// When `Some`, called on every frame as it is delivered (from, to, bytes): it may
    /// rewrite the bytes, and returning false drops the frame (a donor that dies, a
    /// corrupting path).
    pub rewrite: Option<Rewrite>,
}

impl LockStep {
    /// A driver over `peers` (peer `i` must have id `i`); `tick` is the clock step.
    pub fn new(peers: Vec<Peer<u32>>, tick: Micros) -> Self {
        for (i, p) in peers.iter().enumerate() {
            assert_eq!(*p.id() as usize, i, "peer ids must be 0..n in order");
        }
        let n = peers.len();
        LockStep {
            peers,
            now: 0,
            tick,
            inflight: Vec::new(),
            held_back: Vec::new(),
            timers: BTreeMap::new(),
            timer_seq: 0,
            wants_compute: vec![false; n],
            compute_every: vec![1; n],
            ticks: 0,
            faults: None,
            rejected: Vec::new(),
            last_loss: vec![f32::NAN; n],
            injected: [0; 3],
            checkpoints_due: Vec::new(),
            adopted: Vec::new(),
            misbehaving: Vec::new(),
            recorded: None,
            rewrite: None,
        }
    }

    /// Adds a peer (its id must be the current peer count); returns its id.
    pub fn add_peer(&mut self, peer: Peer<u32>) -> u32 {
        let id = self.peers.len() as u32;
        assert_eq!(*peer.id(), id, "new peer must have id {id}");
        self.peers.push(peer);
        self.wants_compute.push(false);
        self.compute_every.push(1);
        self.last_loss.push(f32::NAN);
        id
    }

    /// Makes peer `i` a straggler: it is granted compute only on every `every`-th tick.
    pub fn set_compute_every(&mut self, i: u32, every: u64) {
        self.compute_every[i as usize] = every.max(1);
    }

    /// Replaces peer `i` (a crash and restart): its pending timers and compute request are
    /// forgotten. Take its edges down before and up after, as a real restart would.
    pub fn replace_peer(&mut self, i: u32, peer: Peer<u32>) {
        assert_eq!(*peer.id(), i, "replacement must keep id {i}");
        self.peers[i as usize] = peer;
        self.wants_compute[i as usize] = false;
        self.timers.retain(|_, (p, _)| *p != i);
    }

    /// Turns fault injection on or off.
    pub fn set_faults(&mut self, faults: Option<Faults>) {
        self.faults = faults.map(|f| {
            let rng = ChaCha8Rng::seed_from_u64(f.seed);
            (f, rng)
        });
    }

    /// The peers.
    pub fn peers(&self) -> &[Peer<u32>] {
        &self.peers
    }

    /// One peer.
    pub fn peer(&self, i: u32) -> &Peer<u32> {
        &self.peers[i as usize]
    }

    /// Mutable access (for restores and direct inspection).
    pub fn peer_mut(&mut self, i: u32) -> &mut Peer<u32> {
        &mut self.peers[i as usize]
    }

    /// The driver's clock.
    pub fn now(&self) -> Micros {
        self.now
    }

    /// Feeds one input to peer `i` and acts on its outputs (frames are queued, not delivered).
    pub fn input(&mut self, i: u32, input: Input<u32>) {
        let outputs = self.peers[i as usize].handle(self.now, input);
        self.process(i, outputs);
    }

    /// Brings the edge a–b up at both ends.
    pub fn connect(&mut self, a: u32, b: u32) {
        self.input(a, Input::NeighbourUp(b));
        self.input(b, Input::NeighbourUp(a));
    }

    /// Takes the edge a–b down at both ends.
    pub fn disconnect(&mut self, a: u32, b: u32) {
        self.input(a, Input::NeighbourDown(b));
        self.input(b, Input::NeighbourDown(a));
    }

    /// Connects every edge of an undirected edge list and starts every peer.
    pub fn start_with_edges(&mut self, edges: impl IntoIterator<Item = (u32, u32)>) {
        for (a, b) in edges {
            self.connect(a, b);
        }
        for i in 0..self.peers.len() as u32 {
            self.input(i, Input::Start);
        }
        self.deliver();
    }

    /// Queues a raw frame from `from` to `to` (for tests that forge messages).
    pub fn inject(&mut self, from: u32, to: u32, bytes: Vec<u8>) {
        self.inflight.push((from, to, bytes));
    }

    fn process(&mut self, i: u32, outputs: Vec<Output<u32>>) {
        for o in outputs {
            match o {
                Output::Send { to, bytes } => {
                    if let Some(log) = &mut self.recorded {
                        log.push((i, to, bytes.clone()));
                    }
                    self.inflight.push((i, to, bytes));
                }
                Output::ScheduleTimer { at, token } => {
                    self.timers.insert((at, self.timer_seq), (i, token));
                    self.timer_seq += 1;
                }
                Output::WantCompute => self.wants_compute[i as usize] = true,
                Output::RoundCompleted { loss, .. } => self.last_loss[i as usize] = loss,
                Output::Rejected { from, reason } => self.rejected.push((i, from, reason)),
                Output::CheckpointDue { round } => self.checkpoints_due.push((i, round)),
                Output::ModelAdopted { from, round, .. } => self.adopted.push((i, from, round)),
                Output::Misbehaving { peer, rejected } => {
                    self.misbehaving.push((i, peer, rejected))
                }
            }
        }
    }

    /// Delivers frames until the network is quiet (frames to unknown peers vanish).
    pub fn deliver(&mut self) {
        for _ in 0..10_000 {
            if self.inflight.is_empty() {
                return;
            }
            let batch = std::mem::take(&mut self.inflight);
            for (from, to, mut bytes) in batch {
                if to as usize >= self.peers.len() {
                    continue;
                }
                if let Some(rewrite) = self.rewrite
                    && !rewrite(from, to, &mut bytes)
                {
                    continue;
                }
                let mut copies = 1;
                if let Some((f, rng)) = &mut self.faults {
                    if rng.random_bool(f.drop) {
                        self.injected[0] += 1;
                        continue;
                    }
                    if rng.random_bool(f.reorder) {
                        self.injected[2] += 1;
                        self.held_back.push((from, to, bytes));
                        continue;
                    }
                    if rng.random_bool(f.duplicate) {
                        self.injected[1] += 1;
                        copies = 2;
                    }
                }
                for _ in 0..copies {
                    self.input(
                        to,
                        Input::Message {
                            from,
                            bytes: bytes.clone(),
                        },
                    );
                }
            }
        }
        panic!("network did not quiesce after 10000 delivery passes");
    }

    /// One tick: compute for every peer that asked, delivery until quiet, clock advance, due
    /// timers (and their frames). Frames held back by the fault injector go out after this
    /// tick's compute, i.e. behind newer frames.
    pub fn tick(&mut self) {
        self.ticks += 1;
        for i in 0..self.peers.len() {
            if self.ticks.is_multiple_of(self.compute_every[i])
                && std::mem::take(&mut self.wants_compute[i])
            {
                self.input(i as u32, Input::ComputeGranted);
            }
        }
        let held = std::mem::take(&mut self.held_back);
        self.inflight.extend(held);
        self.deliver();
        self.now += self.tick;
        while let Some(entry) = self.timers.first_entry() {
            if entry.key().0 > self.now {
                break;
            }
            let (i, token) = entry.remove();
            self.input(i, Input::Timer(token));
            self.deliver();
        }
    }

    /// Ticks until every listed peer has completed `rounds` rounds (or `max_ticks` passed);
    /// returns the ticks taken.
    pub fn run_until_round(&mut self, peers: &[u32], rounds: u64, max_ticks: usize) -> usize {
        for t in 0..max_ticks {
            if peers
                .iter()
                .all(|&i| self.peers[i as usize].round() >= rounds)
            {
                return t;
            }
            self.tick();
        }
        max_ticks
    }

    /// Ticks until all peers completed `rounds` rounds.
    pub fn run_rounds(&mut self, rounds: u64, max_ticks: usize) -> usize {
        let all: Vec<u32> = (0..self.peers.len() as u32).collect();
        let target = self.peers.iter().map(|p| p.round()).max().unwrap_or(0) + rounds;
        self.run_until_round(&all, target, max_ticks)
    }

    /// Mean of the peers' models.
    pub fn mean_model(&self) -> Vec<f64> {
        let dim = self.peers[0].dim();
        let mut mean = vec![0.0f64; dim];
        for p in &self.peers {
            for (m, x) in mean.iter_mut().zip(p.model().iter()) {
                *m += f64::from(*x);
            }
        }
        let n = self.peers.len() as f64;
        mean.iter_mut().for_each(|m| *m /= n);
        mean
    }

    /// Consensus distance Σ_i ‖x_i − x̄‖² over the given peers.
    pub fn consensus_distance(&self) -> f64 {
        let mean = self.mean_model();
        self.peers
            .iter()
            .map(|p| {
                p.model()
                    .iter()
                    .zip(&mean)
                    .map(|(x, m)| (f64::from(*x) - m).powi(2))
                    .sum::<f64>()
            })
            .sum()
    }
}
