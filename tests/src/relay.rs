//! A seeded TCP relay that makes loopback look like a WAN: delay with jitter, and lost frames.
//!
//! The kernels here have no `netem`, so a test puts a [`Relay`] between two daemons instead:
//! it listens on 127.0.0.1, and every connection it accepts is forwarded to the upstream
//! address, each direction read in chunks that are held back by `delay ± jitter` (uniform,
//! seeded) before they are written on.
//!
//! # Why loss is a connection cut, not a dropped chunk
//! murmur's daemons speak libp2p over TCP, encrypted by noise and multiplexed by yamux. Those
//! layers assume a reliable byte stream: dropping a chunk out of the middle does not lose one
//! gossip frame, it breaks the noise decryption and kills the whole connection, at a random and
//! unrepeatable point. So a "lost frame" is modelled as what it becomes on a real network under
//! TCP after retransmissions give up: with probability `cut` per forwarded chunk the relay
//! resets the connection (both directions, immediately, bytes in flight lost). The daemons must
//! then redial, and the gossip protocol must repair the updates lost with the connection
//! (sequence gaps → snapshots). That is harsher than 1% packet loss under TCP (which costs only
//! retransmission delay) and is reported as such.
//!
//! Order within a connection is preserved (a chunk never overtakes an earlier one): each
//! chunk leaves at `max(arrival + delay sample, previous departure)`.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

/// What the relay does to the traffic it forwards.
#[derive(Clone, Debug, PartialEq)]
pub struct RelayConfig {
    /// Mean one-way delay added to every chunk.
    pub delay: Duration,
    /// Delay is uniform in `delay ± jitter`.
    pub jitter: Duration,
    /// Probability, per forwarded chunk, that the connection is reset instead (see the module
    /// docs for why loss is modelled this way).
    pub cut: f64,
    /// Seed of every delay sample and cut decision (connection k uses `seed + k`).
    pub seed: u64,
}

impl RelayConfig {
    /// The WAN profile of the reliability scenarios: 50 ms ± 10 ms, 1% of chunks cut.
    pub fn wan(seed: u64) -> Self {
        RelayConfig {
            delay: Duration::from_millis(50),
            jitter: Duration::from_millis(10),
            cut: 0.01,
            seed,
        }
    }
}

/// Counters of a running relay.
#[derive(Debug, Default)]
pub struct RelayStats {
    /// Connections accepted.
    pub connections: AtomicU64,
    /// Chunks forwarded (both directions).
    pub chunks: AtomicU64,
    /// Bytes forwarded (both directions).
    pub bytes: AtomicU64,
    /// Connections reset on purpose.
    pub cuts: AtomicU64,
    /// Sum of the delays applied, microseconds (for the mean).
    pub delay_micros: AtomicU64,
}

impl RelayStats {
    /// Mean delay applied per chunk.
    pub fn mean_delay(&self) -> Duration {
        let chunks = self.chunks.load(Ordering::Relaxed).max(1);
        Duration::from_micros(self.delay_micros.load(Ordering::Relaxed) / chunks)
    }
}

/// A running relay; stops (and drops its connections) when dropped.
#[derive(Debug)]
pub struct Relay {
    addr: SocketAddr,
    stats: Arc<RelayStats>,
    stop: watch::Sender<bool>,
}

impl Relay {
    /// Starts a relay on 127.0.0.1 (a free port) forwarding to `upstream`. Must be called
    /// inside a tokio runtime.
    pub async fn start(upstream: SocketAddr, config: RelayConfig) -> io::Result<Relay> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let stats = Arc::new(RelayStats::default());
        let (stop, stopped) = watch::channel(false);
        let accept_stats = stats.clone();
        tokio::spawn(async move {
            let mut stopped_rx = stopped.clone();
            let mut k = 0u64;
            loop {
                let accepted = tokio::select! {
                    a = listener.accept() => a,
                    _ = stopped_rx.changed() => return,
                };
                let Ok((inbound, _)) = accepted else { continue };
                accept_stats.connections.fetch_add(1, Ordering::Relaxed);
                let rng = ChaCha8Rng::seed_from_u64(config.seed.wrapping_add(k));
                k += 1;
                tokio::spawn(forward(
                    inbound,
                    upstream,
                    config.clone(),
                    rng,
                    accept_stats.clone(),
                    stopped.clone(),
                ));
            }
        });
        Ok(Relay { addr, stats, stop })
    }

    /// The address to dial instead of the upstream one.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Live counters.
    pub fn stats(&self) -> &RelayStats {
        &self.stats
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}

/// Delay sample in microseconds, uniform in delay ± jitter.
fn sample_delay(config: &RelayConfig, rng: &mut ChaCha8Rng) -> u64 {
    let mean = config.delay.as_micros() as i64;
    let jitter = config.jitter.as_micros() as i64;
    let d = if jitter > 0 {
        mean + rng.random_range(-jitter..=jitter)
    } else {
        mean
    };
    d.max(0) as u64
}

/// One relayed connection: two pumps (one per direction) sharing a cut decision.
async fn forward(
    inbound: TcpStream,
    upstream: SocketAddr,
    config: RelayConfig,
    mut rng: ChaCha8Rng,
    stats: Arc<RelayStats>,
    mut stopped: watch::Receiver<bool>,
) {
    let Ok(outbound) = TcpStream::connect(upstream).await else {
        return;
    };
    let _ = inbound.set_nodelay(true);
    let _ = outbound.set_nodelay(true);
    let (in_read, in_write) = inbound.into_split();
    let (out_read, out_write) = outbound.into_split();
    // Each direction gets its own stream of random choices derived from the connection's.
    let up_rng = ChaCha8Rng::seed_from_u64(rng.random());
    let down_rng = ChaCha8Rng::seed_from_u64(rng.random());
    let (cut_tx, mut cut_rx) = watch::channel(false);
    let up = pump(
        in_read,
        out_write,
        config.clone(),
        up_rng,
        stats.clone(),
        cut_tx.clone(),
    );
    let down = pump(out_read, in_write, config, down_rng, stats.clone(), cut_tx);
    tokio::select! {
        _ = async { tokio::join!(up, down) } => {}
        // An error here only means both pumps ended (and dropped the sender): not a cut.
        cut = cut_rx.wait_for(|c| *c) => {
            if cut.is_ok() {
                stats.cuts.fetch_add(1, Ordering::Relaxed);
            }
        }
        _ = stopped.changed() => {}
    }
    // Dropping the halves closes both sockets; a cut loses whatever was still queued.
}

/// Reads chunks from `from`, holds each back by its delay, writes it to `to`; on a cut decision
/// signals `cut` and stops.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    config: RelayConfig,
    mut rng: ChaCha8Rng,
    stats: Arc<RelayStats>,
    cut: watch::Sender<bool>,
) {
    let (tx, mut rx) = mpsc::unbounded_channel::<(Instant, Vec<u8>)>();
    let writer = async move {
        while let Some((due, chunk)) = rx.recv().await {
            tokio::time::sleep_until(due).await;
            if to.write_all(&chunk).await.is_err() {
                return;
            }
        }
        let _ = to.shutdown().await;
    };
    let reader = async move {
        let mut buf = vec![0u8; 16 * 1024];
        let mut last_due = Instant::now();
        loop {
            let n = match from.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            if config.cut > 0.0 && rng.random_bool(config.cut.min(1.0)) {
                let _ = cut.send(true);
                break;
            }
            let delay = sample_delay(&config, &mut rng);
            let due = (Instant::now() + Duration::from_micros(delay)).max(last_due);
            last_due = due;
            stats.chunks.fetch_add(1, Ordering::Relaxed);
            stats.bytes.fetch_add(n as u64, Ordering::Relaxed);
            stats.delay_micros.fetch_add(delay, Ordering::Relaxed);
            if tx.send((due, buf[..n].to_vec())).is_err() {
                break;
            }
        }
        // Dropping `tx` lets the writer drain what is queued, then shut down its side.
    };
    tokio::join!(reader, writer);
}
