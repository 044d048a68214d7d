//! `murmur run`: wires the pieces together — identity, task and shard, the peer (resumed from
//! the newest valid checkpoint), metrics, the HTTP endpoint, the training thread and the swarm
//! event loop — and runs until SIGINT/SIGTERM.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use libp2p::PeerId;
use murmur_gossip::peer::Peer;
use prometheus_client::registry::Registry;
use tokio::sync::mpsc;

use crate::config::Config;
use crate::http::{self, Endpoint};
use crate::net::{Exit, Net};
use crate::preflight::DataDirLock;
use crate::status::{Metrics, SharedStatus, Status};
use crate::{checkpoint, identity, privacy, task, trainer};
use murmur_topology::NeighbourRule;

/// Frames queued for the training thread before new ones are refused.
const INBOX_FRAMES: usize = 4096;

/// How a node treats the checkpoints it finds at start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Start {
    /// Resume from the newest valid checkpoint; refuse to start if it does not fit.
    #[default]
    Resume,
    /// Start from round 0 in a new checkpoint generation (the old one is moved aside).
    Fresh,
}

/// Runs a node until it is stopped by a signal (or its training thread ends).
pub fn run(config: Config, start: Start) -> Result<()> {
    config.validate()?;
    // Before anything touches the directory: one node per data dir.
    let _lock = DataDirLock::acquire(&config.node.data_dir)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(run_async(config, start))
}

/// Restores the peer from the newest valid checkpoint (Some(round)), or starts fresh (None).
/// A checkpoint this configuration cannot resume from is never overwritten: the node refuses
/// to start, or with [`Start::Fresh`] (or `checkpoint.resume = false`) moves it into a new
/// generation first.
fn resume_or_refuse(peer: &mut Peer<PeerId>, config: &Config, start: Start) -> Result<Option<u64>> {
    let dir = config.checkpoint_dir();
    let Some(loaded) = checkpoint::recover(&dir) else {
        return Ok(None);
    };
    let round = loaded.meta.round;
    if start == Start::Fresh || !config.checkpoint.resume {
        if let Some(kept) = checkpoint::start_new_generation(&dir)? {
            tracing::info!(round, kept = %kept.display(), "fresh start: previous checkpoints moved");
            println!(
                "fresh start: the previous checkpoints (newest round {round}) are kept in {}",
                kept.display()
            );
        }
        return Ok(None);
    }
    let theirs = loaded.peer.fingerprint;
    let ours = peer.config().fingerprint;
    match peer.restore(loaded.peer) {
        Ok(()) => Ok(Some(round)),
        Err(e) => {
            let why = if theirs != ours {
                format!(
                    "it was written for model fingerprint {theirs:#018x} and this configuration's \
                     model has fingerprint {ours:#018x} (another --model, data set or shape)"
                )
            } else {
                format!("it does not fit this configuration ({e})")
            };
            anyhow::bail!(
                "cannot resume from the checkpoint at round {round} in {}: {why}. Start with \
                 the settings that wrote it to resume, or pass --fresh to start from round 0 in \
                 a new checkpoint generation (the old checkpoints are moved to {}{}N, not deleted)",
                dir.display(),
                dir.join("").display(),
                checkpoint::GENERATION_PREFIX
            )
        }
    }
}

/// Privacy on: gives the peer a secret noise key from the operating system (a known seed would
/// let an observer subtract the noise; a resumed generator would replay noise already spent)
/// and opens the data directory's privacy ledger. Off: warns if this data was released under
/// privacy before.
fn open_privacy(peer: &mut Peer<PeerId>, config: &Config) -> Result<Option<privacy::Ledger>> {
    let Some(settings) = peer.config().privacy else {
        privacy::warn_if_spent(&config.node.data_dir);
        return Ok(None);
    };
    let mut key = [0u8; 32];
    rand::RngCore::fill_bytes(&mut rand::rng(), &mut key);
    peer.set_noise_key(key)
        .context("keying the privacy noise")?;
    let ledger = privacy::Ledger::open(&config.node.data_dir, settings)?;
    let before = ledger.spent(0);
    tracing::info!(
        clip = settings.clip,
        noise_multiplier = settings.noise_multiplier,
        delta = settings.delta,
        rounds_before = before.rounds,
        epsilon_before = before.epsilon,
        ledger = %ledger.path().display(),
        "differential privacy on"
    );
    println!(
        "privacy clip={} noise_multiplier={} delta={:e} rounds_before={} epsilon_before={:.4}",
        settings.clip, settings.noise_multiplier, settings.delta, before.rounds, before.epsilon
    );
    Ok(Some(ledger))
}

async fn run_async(config: Config, start: Start) -> Result<()> {
    let started = Instant::now();
    // A second node on a fixed port would bind it too (SO_REUSEPORT) and split its traffic.
    for addr in &config.node.listen {
        if let Ok(ma) = addr.parse() {
            crate::preflight::check_tcp_port_free(&ma)?;
        }
    }
    let key = identity::load_or_create(&config.node.identity_path())?;
    let me = key.public().to_peer_id();
    let psk = config
        .access
        .psk_file
        .as_deref()
        .map(identity::load_psk)
        .transpose()?;
    let rule: NeighbourRule = config
        .topology
        .rule
        .parse()
        .map_err(|e| anyhow::anyhow!("topology.rule: {e}"))?;

    // The learning task, this node's shard, and the peer.
    let prepared = task::prepare(&config)?;
    let mut peer = Peer::new(me, prepared.peer_config, prepared.learner, prepared.init)
        .context("building the peer")?;
    let resumed_from = resume_or_refuse(&mut peer, &config, start)?;
    if let Some(round) = resumed_from {
        tracing::info!(round, "resumed from checkpoint");
        println!("resumed round={round}");
    }
    let ledger = open_privacy(&mut peer, &config)?;

    // Metrics and status.
    let mut registry = Registry::default();
    let metrics = Metrics::default();
    metrics.register(&mut registry);
    if let Some(ledger) = &ledger {
        metrics.register_privacy(&mut registry);
        let spent = ledger.spent(0);
        metrics.privacy_epsilon.set(spent.epsilon);
        metrics.privacy_delta.set(spent.delta);
    }
    // libp2p-metrics adds its own `libp2p` prefix (a sub-registry would double it).
    let libp2p_metrics = libp2p::metrics::Metrics::new(&mut registry);
    let model_bytes = 4 * peer.dim() as u64;
    metrics.model_bytes.set(model_bytes as i64);
    let status = Arc::new(Mutex::new(Status {
        peer_id: me.to_string(),
        shard: (config.shard.index, config.shard.count),
        resumed_from,
        round: peer.round(),
        phase: "idle".to_string(),
        model_bytes,
        ..Status::default()
    }));
    let swarm = crate::net::build_swarm(key, &config, psk, &mut registry)?;
    let model = Arc::new(Mutex::new(http::PublishedModel {
        round: peer.round(),
        values: peer.model().to_vec(),
    }));
    let history: crate::status::SharedHistory = Default::default();
    let model_info = Arc::new(prepared.model_info);

    let http_addr = match &config.http.listen {
        Some(addr) => {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("binding the HTTP endpoint {addr}"))?;
            let local = listener.local_addr()?.to_string();
            println!("http {local}");
            let endpoint = Endpoint {
                registry: Arc::new(registry),
                status: status.clone(),
                history: history.clone(),
                model: model.clone(),
                model_info: model_info.clone(),
                peer_id: me.to_string(),
                fingerprint: peer.config().fingerprint,
            };
            tokio::spawn(http::serve(listener, endpoint));
            Some(local)
        }
        None => None,
    };
    if let Ok(mut s) = status.lock() {
        s.http = http_addr.clone();
    }

    // The training thread and the swarm loop.
    let (out_tx, out_rx) = mpsc::channel(1024);
    let setup = trainer::TrainerSetup {
        max_rounds: config.run.max_rounds,
        eval_every: config.run.eval_every,
        checkpoint_dir: config.checkpoint_dir(),
        keep: config.checkpoint.keep,
        status: status.clone(),
        metrics: metrics.clone(),
        model,
        history,
        model_info,
        pause_when_isolated: !config.node.bootstrap.is_empty() || config.node.min_peers > 1,
        adversary: config.testing.adversary.map(|kind| {
            tracing::warn!(?kind, "TESTING: this node is a hostile peer");
            murmur_gossip::adversary::Adversary::new(
                kind,
                config.testing.scale,
                config.testing.copies,
                peer.model().len(),
            )
        }),
        privacy: ledger,
    };
    let (inbox, train_thread) = trainer::spawn(peer, setup, out_tx, INBOX_FRAMES);
    let mut net = Net::new(
        swarm,
        &config,
        rule,
        inbox,
        out_rx,
        libp2p_metrics,
        metrics,
        status.clone(),
        http_addr,
    );
    net.listen_and_bootstrap(&config, config.node.quic && psk.is_none())?;
    tracing::info!(peer = %me, "node up");

    let (sig_tx, sig_rx) = mpsc::channel(2);
    tokio::spawn(forward_signals(sig_tx));
    let uptime_status = status.clone();
    let uptime = tokio::spawn(async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_millis(500));
        loop {
            tick.tick().await;
            if let Ok(mut s) = uptime_status.lock() {
                s.uptime_secs = started.elapsed().as_secs_f64();
            }
        }
    });
    let progress = (config.log.progress_secs > 0).then(|| {
        tokio::spawn(log_progress(
            status.clone(),
            Duration::from_secs(config.log.progress_secs),
        ))
    });
    let exit = net.run(sig_rx).await;
    uptime.abort();
    if let Some(progress) = progress {
        progress.abort();
    }
    let final_checkpoint_failed = train_thread.join().ok().flatten();
    match exit {
        Exit::Clean => {
            println!("stopped");
            if let Some(cause) = final_checkpoint_failed {
                anyhow::bail!(
                    "the final checkpoint could not be written ({cause}); a restart resumes \
                     from the last checkpoint that was"
                );
            }
            Ok(())
        }
        Exit::TrainerGone => anyhow::bail!("the training thread stopped unexpectedly"),
    }
}

/// Logs one line every `every`: where training is and how fast it goes, so an operator
/// tailing the log sees the node is alive without polling `murmur status`.
async fn log_progress(status: SharedStatus, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.tick().await;
    let mut last_round = None;
    loop {
        tick.tick().await;
        let Ok(s) = status.lock().map(|s| s.clone()) else {
            return;
        };
        let rate = last_round.map_or(0.0, |r: u64| {
            s.round.saturating_sub(r) as f64 / every.as_secs_f64()
        });
        last_round = Some(s.round);
        let accuracy = s
            .accuracy
            .map_or("not evaluated yet".to_string(), |a| format!("{a:.4}"));
        let phase = if s.done { "done" } else { s.phase.as_str() };
        tracing::info!(
            round = s.round,
            rounds_per_sec = %format!("{rate:.1}"),
            accuracy = %accuracy,
            neighbours = s.neighbours.len(),
            phase,
            sent_bytes = s.bytes_sent,
            "progress"
        );
    }
}

async fn forward_signals(tx: mpsc::Sender<()>) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot install signal handlers");
        return;
    };
    loop {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        if tx.send(()).await.is_err() {
            return;
        }
    }
}

/// The peer id stored in a data directory's identity key (creating it if needed).
pub fn peer_id_of(config: &Config) -> Result<PeerId> {
    Ok(identity::load_or_create(&config.node.identity_path())?
        .public()
        .to_peer_id())
}
