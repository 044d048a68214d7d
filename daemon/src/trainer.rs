//! The training thread: owns the sans-IO [`Peer`], its timers and its compute, so local SGD
//! never runs on the networking thread. The swarm thread feeds it [`Event`]s (edges, frames,
//! start, shutdown) and it answers with [`Outbound`] frames.
//!
//! Local steps run inline here (`ComputeGranted`), so while they run, neighbours' frames queue
//! up in the inbox and the swarm keeps serving the network. With `overlap_compute` the peer
//! asks for round r + 1's compute right after sending round r's update, so that compute
//! overlaps the network round trip.
//!
//! The thread also measures where its time goes: local steps, gossip processing, and time
//! blocked while a round waits for its neighbours (the network's share).

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use libp2p::PeerId;
use murmur_gossip::peer::{
    CopyStorage, Input, Output, Peer, PeerCheckpoint, PeerPhase, PeerStats, TimerToken,
};
use tokio::sync::mpsc;

use crate::checkpoint;
use crate::status::{Metrics, SharedStatus};

/// What the swarm tells the training thread.
#[derive(Debug)]
pub enum Event {
    /// Begin training (discovery has settled).
    Start,
    /// An edge both ends agreed on is up.
    NeighbourUp(PeerId),
    /// The edge is gone.
    NeighbourDown(PeerId),
    /// Whether a peer is reached only through a relay, when that changed (its joiner's model
    /// download goes to a direct neighbour; see `crate::nat`).
    LinkClass {
        /// The peer.
        peer: PeerId,
        /// Every connection to it is relayed.
        relayed: bool,
    },
    /// A gossip frame from a neighbour.
    Message(PeerId, Vec<u8>),
    /// Save a final checkpoint, say goodbye and stop.
    Shutdown,
}

/// What the training thread asks the swarm to do.
#[derive(Debug)]
pub enum Outbound {
    /// Send a gossip frame.
    Send(PeerId, Vec<u8>),
    /// Disconnect a neighbour the peer found misbehaving and keep it out of the neighbours.
    Exclude(PeerId),
    /// The peer stopped (goodbyes, if any, were queued before this).
    Stopped,
}

/// Inbox of the training thread. Control events are never dropped; gossip frames are bounded
/// by `capacity` (past it they are refused and counted, and the protocol repairs the loss).
#[derive(Clone, Debug)]
pub struct Inbox {
    tx: mpsc::UnboundedSender<Event>,
    queued: Arc<AtomicUsize>,
    capacity: usize,
}

impl Inbox {
    /// Queues a control event (edges, start, shutdown).
    pub fn control(&self, event: Event) {
        let _ = self.tx.send(event);
    }

    /// Queues a frame; `false` when the inbox is full (the frame is dropped).
    pub fn frame(&self, from: PeerId, bytes: Vec<u8>) -> bool {
        if self.queued.load(Ordering::Relaxed) >= self.capacity {
            return false;
        }
        self.queued.fetch_add(1, Ordering::Relaxed);
        self.tx.send(Event::Message(from, bytes)).is_ok()
    }
}

/// Everything the training thread needs besides the peer.
#[derive(Debug)]
pub struct TrainerSetup {
    /// Stop computing at this round (keep serving).
    pub max_rounds: Option<u64>,
    /// Evaluate every this many rounds.
    pub eval_every: u64,
    /// Checkpoint directory.
    pub checkpoint_dir: PathBuf,
    /// Checkpoints kept.
    pub keep: usize,
    /// Status to update.
    pub status: SharedStatus,
    /// Metrics to update.
    pub metrics: Metrics,
    /// Where the current model is published for `/model`.
    pub model: Arc<Mutex<crate::http::PublishedModel>>,
    /// The history the dashboard charts.
    pub history: crate::status::SharedHistory,
    /// The model's spec and named tensors (what the checkpoint's safetensors file holds).
    pub model_info: Arc<checkpoint::ModelInfo>,
    /// A node meant to be part of a swarm does not train while it has no neighbour at all
    /// (cut off, it would race through rounds on its own shard and drift away).
    pub pause_when_isolated: bool,
    /// FOR ROBUSTNESS TESTS ONLY: rewrites every outgoing frame into an attack.
    pub adversary: Option<murmur_gossip::adversary::Adversary>,
    /// Privacy on: the data directory's privacy ledger, reserved ahead of every release.
    pub privacy: Option<crate::privacy::Ledger>,
}

/// Starts the training thread; returns its inbox and join handle.
pub fn spawn(
    peer: Peer<PeerId>,
    setup: TrainerSetup,
    outbox: mpsc::Sender<Outbound>,
    inbox_capacity: usize,
) -> (Inbox, std::thread::JoinHandle<Option<String>>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let queued = Arc::new(AtomicUsize::new(0));
    let inbox = Inbox {
        tx,
        queued: queued.clone(),
        capacity: inbox_capacity,
    };
    let handle = std::thread::Builder::new()
        .name("murmur-train".into())
        .spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_time()
                .build()
                .expect("training runtime");
            let mut trainer = Trainer::new(peer, setup, outbox, queued);
            rt.block_on(trainer.run(rx));
            trainer.final_checkpoint_failed
        })
        .expect("spawning the training thread");
    (inbox, handle)
}

struct Trainer {
    peer: Peer<PeerId>,
    setup: TrainerSetup,
    outbox: mpsc::Sender<Outbound>,
    queued: Arc<AtomicUsize>,
    epoch: Instant,
    timers: BinaryHeap<Reverse<(u64, u64)>>,
    want_compute: bool,
    paused: bool,
    done: bool,
    stopped: bool,
    /// The peer's counters at the last status update (the metrics count the increase).
    last_stats: PeerStats,
    /// The per-link series exported so far.
    links: crate::status::LinkExport,
    /// The round of the newest history sample.
    sampled_round: Option<u64>,
    /// When resident memory was last read.
    memory_read_at: Option<Instant>,
    /// When the per-link rows and metrics were last refreshed.
    links_refreshed_at: Option<Instant>,
    /// The round the peer was in when this run began (0, or where a checkpoint left it).
    start_round: u64,
    timing: crate::status::Timing,
    writer: Option<std::thread::JoinHandle<()>>,
    /// The privacy ledger could not be written: no more releases (training stops).
    ledger_failed: bool,
    /// Why the checkpoint written at shutdown failed, if it did: the process then exits
    /// with an error (the previous checkpoints stay as they were).
    final_checkpoint_failed: Option<String>,
}

/// How often the per-link rows of `/status` and the per-link metrics are refreshed while
/// training (Prometheus scrapes every few seconds; the dashboard polls twice a second).
const LINK_REFRESH: Duration = Duration::from_millis(100);

fn phase_name(phase: PeerPhase) -> &'static str {
    match phase {
        PeerPhase::Idle => "idle",
        PeerPhase::Starting => "starting",
        PeerPhase::WantsCompute => "wants-compute",
        PeerPhase::Mixing => "mixing",
        PeerPhase::Stopped => "stopped",
    }
}

impl Trainer {
    fn new(
        peer: Peer<PeerId>,
        setup: TrainerSetup,
        outbox: mpsc::Sender<Outbound>,
        queued: Arc<AtomicUsize>,
    ) -> Self {
        Trainer {
            start_round: peer.round(),
            peer,
            setup,
            outbox,
            queued,
            epoch: Instant::now(),
            timers: BinaryHeap::new(),
            want_compute: false,
            paused: false,
            done: false,
            stopped: false,
            last_stats: PeerStats::default(),
            links: Default::default(),
            sampled_round: None,
            memory_read_at: None,
            links_refreshed_at: None,
            timing: Default::default(),
            writer: None,
            ledger_failed: false,
            final_checkpoint_failed: None,
        }
    }

    fn now(&self) -> u64 {
        self.epoch.elapsed().as_micros() as u64
    }

    async fn run(&mut self, mut rx: mpsc::UnboundedReceiver<Event>) {
        self.publish_model();
        self.update_status();
        while !self.stopped {
            if self.want_compute && !self.training_over() && !self.refresh_pause() {
                // Fold in whatever already arrived, then compute.
                while let Ok(event) = rx.try_recv() {
                    self.on_event(event).await;
                }
                if self.want_compute
                    && !self.stopped
                    && !self.training_over()
                    && !self.refresh_pause()
                    && self.reserve_privacy()
                {
                    self.want_compute = false;
                    let t0 = Instant::now();
                    let now = self.now();
                    let out = self.peer.handle(now, Input::ComputeGranted);
                    let spent = t0.elapsed().as_secs_f64();
                    self.timing.compute_secs += spent;
                    self.setup.metrics.compute_seconds.inc_by(spent);
                    self.act(out).await;
                }
                continue;
            }
            if self.want_compute
                && !self.done
                && self.training_over()
                && self.peer.phase() != PeerPhase::Mixing
            {
                self.finish_training().await;
            }
            let waiting_on_network = self.peer.phase() == PeerPhase::Mixing;
            let t0 = Instant::now();
            let deadline = self
                .timers
                .peek()
                .map(|Reverse((at, _))| self.epoch + Duration::from_micros(*at));
            let event = match deadline {
                Some(at) => {
                    tokio::select! {
                        e = rx.recv() => e,
                        _ = tokio::time::sleep_until(at.into()) => {
                            self.account_wait(waiting_on_network, t0);
                            self.fire_timers().await;
                            continue;
                        }
                    }
                }
                None => rx.recv().await,
            };
            self.account_wait(waiting_on_network, t0);
            match event {
                Some(event) => self.on_event(event).await,
                None => break,
            }
        }
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
    }

    /// Re-evaluates whether compute must pause because the node has no neighbour to gossip
    /// with while it should have some; logs and publishes a change of that state, and
    /// returns it.
    fn refresh_pause(&mut self) -> bool {
        // Edges whose hello never arrived do not count: the peer does not wait for them.
        let isolated = self.setup.pause_when_isolated
            && !self
                .peer
                .neighbours()
                .any(|j| self.peer.neighbour(j).is_some_and(|n| n.hello_seen));
        if isolated != self.paused {
            self.paused = isolated;
            if isolated {
                tracing::warn!(round = self.peer.round(), "no neighbours: training paused");
            } else {
                tracing::info!(
                    round = self.peer.round(),
                    "neighbours back: training resumed"
                );
            }
            if let Ok(mut s) = self.setup.status.lock() {
                s.phase = if isolated { "isolated" } else { "training" }.to_string();
            }
        }
        isolated
    }

    fn account_wait(&mut self, waiting: bool, since: Instant) {
        if waiting {
            let spent = since.elapsed().as_secs_f64();
            self.timing.wait_secs += spent;
            self.setup.metrics.wait_seconds.inc_by(spent);
        }
    }

    /// Whether the compute the peer asks for would be for a round at or past `max_rounds`
    /// (with overlap, a peer still mixing round r asks for round r + 1's steps), or no
    /// release can be accounted any more.
    fn training_over(&self) -> bool {
        let mixing = self.peer.phase() == PeerPhase::Mixing;
        let target = self.peer.round() + u64::from(mixing);
        self.ledger_failed || self.setup.max_rounds.is_some_and(|max| target >= max)
    }

    /// Privacy on: makes the ledger cover the release the next compute makes, before it is
    /// made. `false` (and training stops) when the ledger cannot be written.
    fn reserve_privacy(&mut self) -> bool {
        let next = self.peer.stats().private_rounds + 1;
        let Some(ledger) = self.setup.privacy.as_mut() else {
            return true;
        };
        match ledger.reserve(next) {
            Ok(()) => true,
            Err(e) => {
                tracing::error!(
                    error = %format!("{e:#}"),
                    "privacy ledger not writable: training stops (a release must be accounted before it is made)"
                );
                self.ledger_failed = true;
                false
            }
        }
    }

    /// Privacy on: records this run's exact releases in the ledger (a clean stop).
    fn settle_privacy(&mut self) {
        let rounds = self.peer.stats().private_rounds;
        if let Some(ledger) = self.setup.privacy.as_mut()
            && let Err(e) = ledger.settle(rounds)
        {
            tracing::error!(error = %format!("{e:#}"), "privacy ledger not settled");
        }
    }

    async fn fire_timers(&mut self) {
        let now = self.now();
        while let Some(&Reverse((at, token))) = self.timers.peek() {
            if at > now {
                break;
            }
            self.timers.pop();
            let out = self.peer.handle(now, Input::Timer(TimerToken(token)));
            self.act(out).await;
        }
    }

    async fn on_event(&mut self, event: Event) {
        let now = self.now();
        let input = match event {
            Event::Start => Input::Start,
            Event::NeighbourUp(p) => Input::NeighbourUp(p),
            Event::NeighbourDown(p) => Input::NeighbourDown(p),
            Event::LinkClass { peer, relayed } => Input::LinkClass { peer, relayed },
            Event::Message(from, bytes) => {
                self.queued.fetch_sub(1, Ordering::Relaxed);
                let t0 = Instant::now();
                let out = self.peer.handle(now, Input::Message { from, bytes });
                self.timing.gossip_secs += t0.elapsed().as_secs_f64();
                self.act(out).await;
                return;
            }
            Event::Shutdown => {
                self.shutdown().await;
                return;
            }
        };
        let out = self.peer.handle(now, input);
        self.act(out).await;
    }

    async fn act(&mut self, outputs: Vec<Output<PeerId>>) {
        // A round completed or a model was adopted: publish the status once, after all outputs.
        let mut status_due = false;
        for output in outputs {
            match output {
                Output::Send { to, bytes } => {
                    let frames = match self.setup.adversary.as_mut() {
                        Some(adversary) => adversary.rewrite(bytes),
                        None => vec![bytes],
                    };
                    for bytes in frames {
                        if self.outbox.send(Outbound::Send(to, bytes)).await.is_err() {
                            self.stopped = true;
                        }
                    }
                }
                Output::ScheduleTimer { at, token } => self.timers.push(Reverse((at, token.0))),
                Output::WantCompute => self.want_compute = true,
                Output::RoundCompleted { round, loss } => {
                    status_due = true;
                    self.timing.rounds += 1;
                    self.setup.metrics.loss.set(f64::from(loss));
                    if let Ok(mut s) = self.setup.status.lock() {
                        s.loss = loss.is_finite().then_some(loss);
                    }
                    if self.setup.eval_every > 0 && (round + 1) % self.setup.eval_every == 0 {
                        self.evaluate();
                    }
                }
                Output::CheckpointDue { .. } => {
                    let _ = self.checkpoint(false);
                }
                Output::ModelAdopted {
                    from,
                    donors,
                    round,
                } => {
                    let steps = self.peer.stats().local_steps;
                    let chunks = self.peer.stats().snapshot_chunks_received;
                    tracing::info!(%from, donors, round, steps, "adopted the neighbourhood's model");
                    println!(
                        "adopted from={from} donors={donors} round={round} local_steps={steps}"
                    );
                    if let Ok(mut s) = self.setup.status.lock() {
                        s.adopted = Some((from.to_string(), round));
                        s.adopted_donors = Some(donors);
                        s.steps_before_adoption = Some(steps);
                        // The chunks the model came in must show with the adoption: a reader
                        // polling between this and the next status update saw 0 (CI failure
                        // of daemon/tests/large_model.rs, 2026-12-03).
                        s.snapshot_chunks_received = chunks;
                    }
                    status_due = true;
                }
                Output::Rejected { from, reason } => {
                    tracing::debug!(%from, %reason, "rejected frame");
                    self.setup.metrics.reject_gossip(&reason);
                }
                // The peer already excluded it and refuses it from now on; the swarm also
                // disconnects it and keeps it out of the neighbour set.
                Output::Misbehaving { peer, rejected } => {
                    tracing::warn!(%peer, rejected, "excluded a misbehaving neighbour");
                    if self.outbox.send(Outbound::Exclude(peer)).await.is_err() {
                        self.stopped = true;
                    }
                }
            }
        }
        if status_due {
            self.update_status();
        }
    }

    fn evaluate(&mut self) {
        let eval = self.peer.evaluate();
        if let Some(acc) = eval.accuracy {
            self.setup.metrics.accuracy.set(f64::from(acc));
        }
        if let Ok(mut s) = self.setup.status.lock() {
            s.accuracy = eval.accuracy;
            s.test_loss = Some(eval.loss);
            s.evaluated_round = Some(self.peer.round());
        }
        self.publish_model();
    }

    fn publish_model(&self) {
        if let Ok(mut m) = self.setup.model.lock() {
            m.round = self.peer.round();
            m.values.clear();
            m.values.extend(self.peer.model().iter());
        }
    }

    /// The per-link rows, the last update's figures and their metrics (at most every
    /// [`LINK_REFRESH`], and always once training is over); a history sample when a round
    /// completed since the last one.
    fn update_links(&mut self, status: &mut crate::status::Status) {
        let over = self.done || matches!(self.peer.phase(), PeerPhase::Stopped);
        if over
            || self
                .links_refreshed_at
                .is_none_or(|at| at.elapsed() >= LINK_REFRESH)
        {
            self.links_refreshed_at = Some(Instant::now());
            self.refresh_links(status);
        }
        self.sample_history(status);
    }

    /// Rebuilds the per-link rows and exports their metrics. It formats every neighbour's
    /// id and looks up a dozen labelled series per link: at a round a millisecond, doing it
    /// every round cost more CPU than the round's learning (measured with `perf`).
    fn refresh_links(&mut self, status: &mut crate::status::Status) {
        let dense = self.peer.dense_update_bytes();
        let mut ids: Vec<&PeerId> = self.peer.neighbours().collect();
        ids.sort();
        let links: Vec<(String, &murmur_gossip::peer::LinkStats)> = ids
            .into_iter()
            .filter_map(|j| Some((j.to_string(), self.peer.link_stats(j)?)))
            .collect();
        self.links.export(&self.setup.metrics, &links);
        status.links = links
            .iter()
            .map(|(p, l)| crate::status::LinkStatus::new(p.clone(), l, dense))
            .collect();
        status.update = self.peer.last_update().map(Into::into);
        // Reading /proc costs a few microseconds: once a second is plenty.
        if self
            .memory_read_at
            .is_none_or(|at| at.elapsed() >= Duration::from_secs(1))
        {
            self.memory_read_at = Some(Instant::now());
            status.resident_bytes = crate::status::resident_bytes();
            if let Some(rss) = status.resident_bytes {
                self.setup.metrics.resident_bytes.set(rss as i64);
            }
        }
        if let Some(u) = &status.update {
            self.setup.metrics.residual_norm.set(u.residual_norm);
            self.setup.metrics.update_density.set(u.density);
        }
    }

    /// One point of the dashboard's history per completed round.
    fn sample_history(&mut self, status: &crate::status::Status) {
        let round = self.peer.round();
        if round > 0 && self.sampled_round != Some(round) {
            self.sampled_round = Some(round);
            let sample = crate::status::Sample {
                t: self.epoch.elapsed().as_secs_f64(),
                round,
                loss: status.loss,
                accuracy: status.accuracy,
                bytes_sent: status.bytes_sent,
                dense_update_bytes: status.dense_update_bytes,
                residual_norm: status.update.map(|u| u.residual_norm),
            };
            if let Ok(mut h) = self.setup.history.lock() {
                h.push(sample);
            }
        }
    }

    fn update_status(&mut self) {
        let stats = self.peer.stats();
        let m = &self.setup.metrics;
        m.round.set(self.peer.round() as i64);
        m.neighbours.set(self.peer.degree() as i64);
        let last = &self.last_stats;
        m.bytes_sent
            .inc_by(stats.bytes_sent.saturating_sub(last.bytes_sent));
        m.bytes_received
            .inc_by(stats.bytes_received.saturating_sub(last.bytes_received));
        m.dense_update_bytes.inc_by(
            stats
                .dense_update_bytes
                .saturating_sub(last.dense_update_bytes),
        );
        m.duplicates_dropped.inc_by(
            stats
                .duplicates_dropped
                .saturating_sub(last.duplicates_dropped),
        );
        self.last_stats = stats.clone();
        let privacy = self.setup.privacy.as_ref().map(|ledger| {
            let spent = ledger.spent(stats.private_rounds);
            let config = self
                .peer
                .config()
                .privacy
                .expect("a ledger only with privacy on");
            m.privacy_epsilon.set(spent.epsilon);
            m.privacy_delta.set(spent.delta);
            crate::status::PrivacyStatus {
                epsilon: spent.epsilon,
                delta: spent.delta,
                rounds: spent.rounds,
                rounds_this_run: stats.private_rounds,
                clipped_this_run: stats.privacy_clipped,
                clip: config.clip,
                noise_multiplier: config.noise_multiplier,
            }
        });
        let rejected = stats.rejected.total();
        let status = self.setup.status.clone();
        if let Ok(mut s) = status.lock() {
            s.round = self.peer.round();
            s.phase = phase_name(self.peer.phase()).to_string();
            s.done = self.done;
            s.bytes_sent = stats.bytes_sent;
            s.bytes_received = stats.bytes_received;
            s.updates_sent = stats.updates_sent;
            s.update_bytes_sent = stats.update_bytes_sent;
            s.dense_update_bytes = stats.dense_update_bytes;
            s.rejected_protocol = rejected;
            s.duplicates_dropped = stats.duplicates_dropped;
            s.snapshot_chunks_sent = stats.snapshot_chunks_sent;
            s.snapshot_chunks_received = stats.snapshot_chunks_received;
            s.outer_steps = stats.outer_steps;
            s.peak_degree = s.peak_degree.max(self.peer.degree());
            if s.first_round_secs.is_none() && self.peer.round() > self.start_round {
                s.first_round_secs = Some(self.epoch.elapsed().as_secs_f64());
            }
            s.copies = match CopyStorage::resolve(self.peer.config(), self.peer.dim()) {
                CopyStorage::Aggregate => "aggregate",
                _ => "per-neighbour",
            }
            .to_string();
            s.timing = self.timing.clone();
            s.privacy = privacy;
            self.update_links(&mut s);
        }
    }

    async fn finish_training(&mut self) {
        self.done = true;
        self.settle_privacy();
        self.evaluate();
        let _ = self.checkpoint(false);
        self.update_status();
        let acc = self.peer.evaluate().accuracy.unwrap_or(f32::NAN);
        tracing::info!(
            round = self.peer.round(),
            accuracy = acc,
            "training finished"
        );
        match self.setup.privacy.as_ref() {
            Some(ledger) => {
                let spent = ledger.spent(self.peer.stats().private_rounds);
                println!(
                    "done round={} accuracy={acc:.4} epsilon={:.4} delta={:e}",
                    self.peer.round(),
                    spent.epsilon,
                    spent.delta
                );
            }
            None => println!("done round={} accuracy={acc:.4}", self.peer.round()),
        }
    }

    /// Saves a checkpoint: on a writer thread normally, inline (and waited for) when `sync`,
    /// then returning the failure's cause, if any.
    fn checkpoint(&mut self, sync: bool) -> Result<(), String> {
        let cp: PeerCheckpoint = self.peer.checkpoint();
        let dir = self.setup.checkpoint_dir.clone();
        let keep = self.setup.keep;
        let status = self.setup.status.clone();
        let metrics = self.setup.metrics.clone();
        let id = self.peer.id().to_string();
        let info = self.setup.model_info.clone();
        // One write at a time, in order: wait for the previous one.
        if let Some(previous) = self.writer.take() {
            let _ = previous.join();
        }
        let job = move || match checkpoint::save(&dir, &id, &info, &cp, keep) {
            Ok(path) => {
                metrics.checkpoints.inc();
                if let Ok(mut s) = status.lock() {
                    s.checkpoints += 1;
                    s.last_checkpoint = Some(cp.round);
                }
                tracing::debug!(round = cp.round, path = %path.display(), "checkpoint written");
                Ok(())
            }
            Err(e) => {
                // The whole chain: "cannot write checkpoint ...: creating ...: <the OS error>".
                let cause = format!("{e:#}");
                tracing::error!(round = cp.round, error = %cause, "checkpoint failed");
                Err(cause)
            }
        };
        if sync {
            job()
        } else {
            self.writer = Some(std::thread::spawn(move || {
                let _ = job();
            }));
            Ok(())
        }
    }

    async fn shutdown(&mut self) {
        if let Some(previous) = self.writer.take() {
            let _ = previous.join();
        }
        let saved = self.checkpoint(true);
        self.evaluate();
        let round = self.peer.round();
        match saved {
            Ok(()) => println!("checkpoint round={round}"),
            Err(cause) => {
                println!("checkpoint FAILED round={round}: {cause}");
                self.final_checkpoint_failed = Some(format!("round {round}: {cause}"));
            }
        }
        let now = self.now();
        let out = self.peer.handle(now, Input::Shutdown);
        self.act(out).await;
        self.settle_privacy();
        self.update_status();
        let _ = self.outbox.send(Outbound::Stopped).await;
        self.stopped = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gossip_rejections_count_under_the_peers_typed_label() {
        use murmur_gossip::peer::RejectReason;
        let metrics = Metrics::default();
        let mut registry = prometheus_client::registry::Registry::default();
        metrics.register(&mut registry);
        metrics.reject_gossip(&RejectReason::NotANeighbour);
        metrics.reject_access(crate::status::AccessReject::NotNeighbour);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        // One series for "a frame from outside the neighbour set", whichever layer saw it.
        assert!(
            text.contains("murmur_rejected_total{reason=\"not-neighbour\"} 2"),
            "{text}"
        );
        assert!(!text.contains("not-a-neighbour"), "{text}");
    }
}
