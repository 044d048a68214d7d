//! The WAN relay of the fault harness: it delays by `delay ± jitter`, keeps order, and cuts
//! connections at the configured rate.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use murmur_tests::relay::{Relay, RelayConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// An echo server on 127.0.0.1; returns its address.
async fn echo_server() -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                loop {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => {
                            if s.write_all(&buf[..n]).await.is_err() {
                                return;
                            }
                        }
                    }
                }
            });
        }
    });
    addr
}

#[tokio::test]
async fn round_trips_take_twice_the_delay_and_keep_order() {
    let upstream = echo_server().await;
    let config = RelayConfig {
        cut: 0.0,
        ..RelayConfig::wan(7)
    };
    let relay = Relay::start(upstream, config).await.unwrap();
    let mut s = TcpStream::connect(relay.addr()).await.unwrap();
    s.set_nodelay(true).unwrap();
    let mut rtts = Vec::new();
    for i in 0u32..10 {
        let msg = i.to_le_bytes();
        let started = Instant::now();
        s.write_all(&msg).await.unwrap();
        let mut back = [0u8; 4];
        s.read_exact(&mut back).await.unwrap();
        rtts.push(started.elapsed());
        assert_eq!(back, msg);
    }
    // Each way 40..60 ms: a round trip is 80..120 ms plus scheduling slack.
    for rtt in &rtts {
        assert!(
            *rtt >= Duration::from_millis(80),
            "rtt {rtt:?} shorter than two delays"
        );
        assert!(
            *rtt < Duration::from_millis(400),
            "rtt {rtt:?} far beyond two delays"
        );
    }
    let mean = relay.stats().mean_delay();
    assert!(
        mean >= Duration::from_millis(40) && mean <= Duration::from_millis(60),
        "mean delay {mean:?}"
    );
    // A burst: 200 writes without waiting arrive complete and in order despite the jitter.
    let mut expected = Vec::new();
    for i in 0u32..200 {
        let msg = i.to_le_bytes();
        s.write_all(&msg).await.unwrap();
        expected.extend_from_slice(&msg);
    }
    let mut back = vec![0u8; expected.len()];
    s.read_exact(&mut back).await.unwrap();
    assert_eq!(back, expected);
    println!("relay: rtts {rtts:?}, mean one-way delay {mean:?}");
}

#[tokio::test]
async fn cuts_reset_connections_at_the_configured_rate() {
    let upstream = echo_server().await;
    let config = RelayConfig {
        delay: Duration::ZERO,
        jitter: Duration::ZERO,
        cut: 0.05,
        seed: 3,
    };
    let relay = Relay::start(upstream, config).await.unwrap();
    // Each connection carries round trips until the relay cuts it.
    let mut chunks_until_cut = Vec::new();
    for _ in 0..40 {
        let mut s = TcpStream::connect(relay.addr()).await.unwrap();
        s.set_nodelay(true).unwrap();
        let mut n = 0u32;
        loop {
            if s.write_all(b"ping").await.is_err() {
                break;
            }
            let mut back = [0u8; 4];
            match s.read_exact(&mut back).await {
                Ok(_) => n += 1,
                Err(_) => break,
            }
            assert!(n < 10_000, "the relay never cut");
        }
        chunks_until_cut.push(n);
    }
    let cuts = relay.stats().cuts.load(Ordering::Relaxed);
    assert_eq!(cuts, 40, "every connection must end by a cut");
    // Two chunks per round trip, each cut with p = 0.05: about 10 round trips per connection.
    let mean = f64::from(chunks_until_cut.iter().sum::<u32>()) / 40.0;
    assert!(
        (4.0..20.0).contains(&mean),
        "mean round trips before a cut {mean}"
    );
    println!("relay: {cuts} cuts, {mean:.1} round trips per connection on average");
}
