//! `murmur run`: wires the pieces together — identity, task and shard, the peer (resumed from
//! the newest valid checkpoint), metrics, the HTTP endpoint, the training thread and the swarm
//! event loop — and runs until SIGINT/SIGTERM.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::{Context, Result};
use libp2p::PeerId;
use murmur_gossip::peer::Peer;
use prometheus_client::registry::Registry;
use tokio::sync::mpsc;

use crate::config::Config;
use crate::http::{self, Endpoint};
use crate::net::{Exit, Net};
use crate::status::{Metrics, Status};
use crate::{checkpoint, identity, task, trainer};
use murmur_topology::NeighbourRule;

/// Frames queued for the training thread before new ones are refused.
const INBOX_FRAMES: usize = 4096;

/// Runs a node until it is stopped by a signal (or its training thread ends).
pub fn run(config: Config) -> Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(run_async(config))
}

async fn run_async(config: Config) -> Result<()> {
    let started = Instant::now();
    std::fs::create_dir_all(&config.node.data_dir)
        .with_context(|| format!("creating {}", config.node.data_dir.display()))?;
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
    let mut resumed_from = None;
    if config.checkpoint.resume
        && let Some(loaded) = checkpoint::newest(&config.checkpoint_dir())
    {
        let round = loaded.meta.round;
        match peer.restore(loaded.peer) {
            Ok(()) => {
                tracing::info!(round, "resumed from checkpoint");
                println!("resumed round={round}");
                resumed_from = Some(round);
            }
            Err(e) => tracing::warn!(round, error = %e, "checkpoint does not fit this node"),
        }
    }

    // Metrics and status.
    let mut registry = Registry::default();
    let metrics = Metrics::default();
    metrics.register(&mut registry);
    let libp2p_metrics = libp2p::metrics::Metrics::new(registry.sub_registry_with_prefix("libp2p"));
    let status = Arc::new(Mutex::new(Status {
        peer_id: me.to_string(),
        shard: (config.shard.index, config.shard.count),
        resumed_from,
        round: peer.round(),
        phase: "idle".to_string(),
        ..Status::default()
    }));
    let swarm = crate::net::build_swarm(key, &config, psk, &mut registry)?;
    let model = Arc::new(Mutex::new(peer.model().to_vec()));

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
                model: model.clone(),
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
        pause_when_isolated: !config.node.bootstrap.is_empty() || config.node.min_peers > 1,
        adversary: config.testing.adversary.map(|kind| {
            tracing::warn!(?kind, "TESTING: this node is a hostile peer");
            crate::adversary::Adversary::new(
                kind,
                config.testing.scale,
                config.testing.copies,
                peer.model().len(),
            )
        }),
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
    let exit = net.run(sig_rx).await;
    uptime.abort();
    let _ = train_thread.join();
    match exit {
        Exit::Clean => {
            println!("stopped");
            Ok(())
        }
        Exit::TrainerGone => anyhow::bail!("the training thread stopped unexpectedly"),
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
