//! Hostile bytes against every decoder murmur runs on untrusted input, in the normal suite.
//!
//! More than a million random and mutated frames (see `murmur_tests::mutate`) go to:
//! - `Compressed::decode`, for every codec's wire format;
//! - `murmur_gossip::message::Message::decode`;
//! - `PeerCheckpoint::decode` (and `Peer::restore` for what decodes);
//! - a live `Peer::handle(Input::Message)`, which also gets structurally valid but hostile
//!   messages (huge, non-finite, wrong-dimension, replayed, flooding).
//!
//! Properties: nothing panics; an accepted frame is a valid message (right dimension, finite,
//! re-encodes to itself); no single allocation made while decoding exceeds the decoder's cap
//! (measured by a counting global allocator); the live peer reports every rejection and its
//! counters add up to exactly those reports; its model stays finite.
//!
//! The figures printed at the end are quoted in docs/reliability.md.

// The counting allocator must implement the `unsafe` `GlobalAlloc` trait: it forwards every
// call to `System` unchanged and only records sizes. Besides the x86 encoder builds in
// murmur-compress (`compress/src/codecs/x86.rs`), this is the only unsafe code in the
// workspace, confined to this test binary.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::collections::BTreeMap;
use std::fmt::Debug;
use std::time::Instant;

use murmur_compress::{CodecSpec, Compressed, DecodeLimits, build};
use murmur_gossip::message::{
    AlgorithmKind, Hello, Message, PushShare, Snapshot, SnapshotRequest, Update, fingerprint,
};
use murmur_gossip::peer::testing::Quadratic;
use murmur_gossip::peer::{
    CHECKPOINT_FORMAT, Input, Output, Peer, PeerCheckpoint, PeerConfig, RejectReason, RngState,
    TimerToken,
};
use murmur_tests::mutate::Mutator;
use ndarray::Array1;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

// ---------------------------------------------------------------------------- allocations

/// Forwards to `System`, remembering per thread the largest single allocation (or
/// reallocation target) since the last [`largest_allocation`] call.
struct CountingAllocator;

thread_local! {
    // `const` and `Copy`-only: no lazy initialisation and no destructor, so touching it from
    // inside the allocator never allocates.
    static LARGEST: Cell<usize> = const { Cell::new(0) };
}

fn note(size: usize) {
    let _ = LARGEST.try_with(|l| {
        if size > l.get() {
            l.set(size);
        }
    });
}

unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        // SAFETY: same contract as the caller's, forwarded unchanged.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        // SAFETY: as above.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size);
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

/// Runs `f` and returns its value with the largest single allocation it made on this thread.
fn largest_allocation<T>(f: impl FnOnce() -> T) -> (T, usize) {
    LARGEST.with(|l| l.set(0));
    let value = f();
    (value, LARGEST.with(Cell::get))
}

// ---------------------------------------------------------------------------- set-up

/// The digits softmax model: 64 features × 10 classes + 10 biases.
const DIM: usize = 650;
const FINGERPRINT_TEXT: &[u8] = b"fuzz softmax 64 10";

/// Frames per decoder (the live peer gets the same number again).
const FRAMES_PER_DECODER: usize = 1_000_000;

fn codecs() -> Vec<CodecSpec> {
    [
        "dense",
        "f16",
        "threshold-tau:0.5",
        "threshold:0.01",
        "scaled-threshold:0.05",
        "topk:0.01",
        "randk:0.02",
        "randk-biased:0.1",
        "sign",
        "qsgd:16",
    ]
    .iter()
    .map(|s| s.parse().expect("codec spec parses"))
    .collect()
}

fn random_vector(rng: &mut ChaCha8Rng, dim: usize, scale: f32) -> Vec<f32> {
    (0..dim).map(|_| rng.random_range(-scale..scale)).collect()
}

/// Valid frames of one codec at `dim`.
fn codec_frames(spec: &CodecSpec, dim: usize, seed: u64) -> Vec<Vec<u8>> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut codec = build(spec, seed);
    let mut out = Vec::new();
    for scale in [1e-3f32, 1.0, 50.0] {
        let mut v = random_vector(&mut rng, dim, scale);
        out.push(codec.compress(&v).encode());
        // Mostly zeros: sparse codecs then carry few entries.
        for x in v.iter_mut().skip(3) {
            *x *= 1e-4;
        }
        out.push(codec.compress(&v).encode());
    }
    out
}

/// The name of an enum value's variant (`Malformed("..")` → `Malformed`), for tallies.
fn variant(value: &impl Debug) -> String {
    let text = format!("{value:?}");
    let end = text.find(['(', ' ', '{']).unwrap_or(text.len());
    text[..end].to_string()
}

/// What one decoder did with its frames.
#[derive(Debug, Default)]
struct Tally {
    frames: u64,
    accepted: u64,
    rejected: BTreeMap<String, u64>,
    largest_allocation: usize,
    cap: usize,
}

impl Tally {
    fn rejections(&self) -> u64 {
        self.rejected.values().sum()
    }

    fn reject(&mut self, reason: String) {
        *self.rejected.entry(reason).or_default() += 1;
    }

    fn allocation(&mut self, name: &str, size: usize, cap: usize, frame_len: usize) {
        assert!(
            size <= cap,
            "{name}: a {frame_len}-byte frame made a {size}-byte allocation (cap {cap})"
        );
        self.largest_allocation = self.largest_allocation.max(size);
        self.cap = self.cap.max(cap);
    }

    fn print(&self, name: &str) {
        println!(
            "fuzz_frames: decoder={name} frames={} accepted={} rejected={} largest_alloc={}B cap={}B",
            self.frames,
            self.accepted,
            self.rejections(),
            self.largest_allocation,
            self.cap
        );
        println!("  rejections by reason: {:?}", self.rejected);
    }
}

// ---------------------------------------------------------------------------- codec payloads

fn fuzz_codecs(seed: u64, frames: usize) -> Tally {
    fuzz_codecs_at(seed, frames, DIM, &codecs())
}

/// Mutated frames of `specs` at dimension `dim` against `Compressed::decode` and `add_to`.
fn fuzz_codecs_at(seed: u64, frames: usize, dim: usize, specs: &[CodecSpec]) -> Tally {
    let limits = DecodeLimits::for_dim(dim);
    let corpora: Vec<Vec<Vec<u8>>> = specs
        .iter()
        .enumerate()
        .map(|(i, s)| codec_frames(s, dim, seed ^ i as u64))
        .collect();
    // Frames of a neighbouring dimension, so dimension checks see near-misses too.
    let mut mutator = Mutator::new(seed);
    let mut tally = Tally::default();
    let mut out = vec![0.0f32; dim];
    for n in 0..frames {
        let corpus = &corpora[n % corpora.len()];
        let (frame, _) = mutator.next(corpus);
        // The decoder's own cap: it copies at most the frame, never more than `max_bytes`.
        let (result, size) = largest_allocation(|| Compressed::decode(&frame, &limits));
        tally.allocation("Compressed::decode", size, limits.max_bytes, frame.len());
        tally.frames += 1;
        match result {
            Ok(c) => {
                tally.accepted += 1;
                assert_eq!(c.dim(), dim);
                assert!(c.is_finite(), "accepted a non-finite frame");
                let again = Compressed::decode(&c.encode(), &limits);
                assert_eq!(again.as_ref(), Ok(&c), "accepted frame does not round-trip");
                out.fill(0.0);
                c.add_to(&mut out, 1.0);
                assert!(out.iter().all(|x| x.is_finite()));
            }
            Err(e) => tally.reject(variant(&e)),
        }
    }
    tally
}

// ---------------------------------------------------------------------------- gossip messages

fn message_corpus(seed: u64, dim: usize) -> Vec<Vec<u8>> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let fp = fingerprint(FINGERPRINT_TEXT);
    let mut messages = vec![
        Message::Hello(Hello {
            dim: dim as u32,
            fingerprint: fp,
            algorithm: AlgorithmKind::Choco,
            degree: 2,
            round: 3,
            seq: 2,
            reply_wanted: true,
        }),
        Message::SnapshotRequest(SnapshotRequest {
            nonce: 1,
            want_model: true,
        }),
        Message::Snapshot(Snapshot {
            nonce: 0,
            seq: 4,
            round: 4,
            degree: 2,
            x_hat: random_vector(&mut rng, dim, 1.0),
            model: Some(random_vector(&mut rng, dim, 1.0)),
        }),
        Message::Snapshot(Snapshot {
            nonce: 0,
            seq: 4,
            round: 4,
            degree: 2,
            x_hat: random_vector(&mut rng, dim, 1.0),
            model: None,
        }),
        Message::PushShare(PushShare {
            round: 2,
            weight: 0.5,
            values: random_vector(&mut rng, dim, 1.0),
        }),
        Message::Goodbye,
    ];
    for (i, spec) in codecs().iter().enumerate() {
        for (k, frame) in codec_frames(spec, dim, seed ^ (100 + i as u64))
            .into_iter()
            .enumerate()
            .take(2)
        {
            messages.push(Message::Update(Update {
                seq: 1 + k as u64,
                round: k as u64,
                degree: 2,
                frame,
            }));
        }
    }
    messages.iter().map(Message::encode).collect()
}

fn fuzz_messages(seed: u64, frames: usize) -> Tally {
    // The peer's default cap: a snapshot carrying x̂ and x, plus headroom.
    let max_bytes = 8 * DIM + 4096;
    // postcard pre-allocates a vector for its claimed length once that length fits in the
    // bytes left, so a claimed f32 vector may reserve 4 bytes per remaining frame byte.
    let cap = 4 * max_bytes;
    let corpus = message_corpus(seed, DIM);
    let mut mutator = Mutator::new(seed);
    let mut tally = Tally::default();
    // The worst case on purpose: a snapshot whose x̂ claims exactly as many entries as there
    // are bytes left in a frame of the largest accepted size.
    let worst = {
        let mut f = postcard::to_stdvec(&murmur_gossip::message::PROTOCOL_VERSION).unwrap();
        f.extend([3, 0, 0, 0, 0]); // Snapshot; nonce, seq, round, degree
        let header = f.len();
        let claim = max_bytes - header - 3; // a 2-byte varint for the claim, 1 spare
        f.extend([(claim as u8) | 0x80, (claim >> 7) as u8]);
        f.resize(max_bytes, 0);
        f
    };
    let (result, worst_alloc) = largest_allocation(|| Message::decode(&worst, max_bytes));
    assert!(result.is_err());
    tally.allocation(
        "Message::decode (worst case)",
        worst_alloc,
        cap,
        worst.len(),
    );
    println!(
        "fuzz_frames: Message::decode worst case: a {}-byte frame reserved {worst_alloc} bytes",
        worst.len()
    );
    for _ in 0..frames {
        let (frame, _) = mutator.next(&corpus);
        let (result, size) = largest_allocation(|| Message::decode(&frame, max_bytes));
        tally.allocation("Message::decode", size, cap, frame.len());
        tally.frames += 1;
        match result {
            Ok(m) => {
                tally.accepted += 1;
                let bytes = m.encode();
                let again =
                    Message::decode(&bytes, usize::MAX).expect("re-encoded message decodes");
                assert_eq!(
                    again.encode(),
                    bytes,
                    "accepted message does not round-trip"
                );
            }
            Err(e) => tally.reject(variant(&e)),
        }
    }
    tally
}

// ---------------------------------------------------------------------------- checkpoints

fn peer_config(clip_radius: Option<f32>) -> PeerConfig {
    PeerConfig {
        fingerprint: fingerprint(FINGERPRINT_TEXT),
        clip_radius,
        seed: 11,
        // The misbehaviour policy would exclude the fuzzing neighbour after a few bad frames
        // and answer every later one `NotANeighbour`; off, every frame reaches the decoders.
        // (The policy itself is tested in gossip/tests/peer_hostile.rs.)
        misbehaviour_threshold: 0,
        ..PeerConfig::default()
    }
}

fn new_peer(id: u32, config: PeerConfig, seed: u64) -> Peer<u32> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let learner = Quadratic {
        centre: random_vector(&mut rng, DIM, 1.0),
        lr: 0.1,
        steps: 0,
    };
    Peer::new(id, config, Box::new(learner), Array1::zeros(DIM)).expect("valid peer config")
}

fn checkpoint_corpus(seed: u64) -> Vec<Vec<u8>> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let fp = fingerprint(FINGERPRINT_TEXT);
    let mut out = vec![new_peer(0, peer_config(None), seed).checkpoint().encode()];
    for algorithm in [AlgorithmKind::Choco, AlgorithmKind::PushSum] {
        out.push(
            PeerCheckpoint {
                format: CHECKPOINT_FORMAT,
                dim: DIM as u64,
                fingerprint: fp,
                algorithm,
                round: 40,
                seq: 39,
                last_update_round: 39,
                local_steps: 40,
                model: random_vector(&mut rng, DIM, 1.0),
                x_hat: random_vector(&mut rng, DIM, 1.0),
                push_weight: 0.75,
                learner_state: 40u64.to_le_bytes().to_vec(),
                rng: RngState {
                    seed: rng.random(),
                    stream: 3,
                    word_pos: 1 << 20,
                },
                privacy: None,
                outer_velocity: Vec::new(),
            }
            .encode(),
        );
    }
    out
}

fn fuzz_checkpoints(seed: u64, frames: usize) -> (Tally, Tally) {
    let corpus = checkpoint_corpus(seed);
    let config = peer_config(None);
    let learner = Quadratic {
        centre: vec![0.5; DIM],
        lr: 0.1,
        steps: 0,
    };
    let mut mutator = Mutator::new(seed);
    let mut decode = Tally::default();
    let mut restore = Tally::default();
    for _ in 0..frames {
        let (bytes, _) = mutator.next(&corpus);
        // No size cap of its own (the caller reads a file it wrote), so the bound is the
        // postcard one: a claimed vector reserves at most 4 bytes per byte left in the input
        // (plus the text of the error message).
        let cap = 4 * bytes.len() + 256;
        let (result, size) = largest_allocation(|| PeerCheckpoint::decode(&bytes));
        decode.allocation("PeerCheckpoint::decode", size, cap, bytes.len());
        decode.frames += 1;
        match result {
            Ok(cp) => {
                decode.accepted += 1;
                assert_eq!(
                    PeerCheckpoint::decode(&cp.encode()).map(|c| c.encode()),
                    Ok(cp.encode())
                );
                // What decodes is then offered to a fresh peer, which must check it all.
                let mut peer = Peer::new(
                    0u32,
                    config.clone(),
                    Box::new(learner.clone()),
                    Array1::zeros(DIM),
                )
                .expect("valid peer config");
                restore.frames += 1;
                let (result, size) = largest_allocation(|| peer.restore(cp));
                restore.allocation("Peer::restore", size, cap, bytes.len());
                match result {
                    Ok(()) => {
                        restore.accepted += 1;
                        assert!(peer.model().iter().all(|x| x.is_finite()));
                        assert!(peer.public_copy().iter().all(|x| x.is_finite()));
                        assert_eq!(peer.model().len(), DIM);
                    }
                    Err(e) => restore.reject(variant(&e)),
                }
            }
            Err(e) => decode.reject(variant(&e)),
        }
    }
    (decode, restore)
}

// ---------------------------------------------------------------------------- a live peer

/// Drives one peer (id 0, neighbours 1 and 2) with a virtual clock, granting compute and
/// firing timers, and keeps its own count of every rejection the peer reports.
struct LivePeer {
    peer: Peer<u32>,
    now: u64,
    timers: BTreeMap<(u64, u64), TimerToken>,
    timer_seq: u64,
    reported: BTreeMap<String, u64>,
    reported_total: u64,
    fed: u64,
    wants_compute: bool,
}

impl LivePeer {
    fn new(peer: Peer<u32>) -> Self {
        let mut live = LivePeer {
            peer,
            now: 0,
            timers: BTreeMap::new(),
            timer_seq: 0,
            reported: BTreeMap::new(),
            reported_total: 0,
            fed: 0,
            wants_compute: false,
        };
        for j in [1, 2] {
            live.input(Input::NeighbourUp(j));
        }
        live.input(Input::Start);
        for j in [1, 2] {
            live.hello_from(j);
        }
        live
    }

    fn hello_from(&mut self, j: u32) {
        let seq = self.peer.neighbour(&j).map_or(0, |n| n.applied_seq);
        let hello = Message::Hello(Hello {
            dim: DIM as u32,
            fingerprint: fingerprint(FINGERPRINT_TEXT),
            algorithm: AlgorithmKind::Choco,
            degree: 2,
            round: self.peer.round(),
            seq,
            reply_wanted: false,
        });
        self.feed(j, hello.encode());
    }

    /// Feeds one input; notes compute requests and timers and returns the rejections
    /// reported.
    fn input(&mut self, input: Input<u32>) -> Vec<RejectReason> {
        let mut rejections = Vec::new();
        {
            for output in self.peer.handle(self.now, input) {
                match output {
                    // Compute takes time: granted at the next clock step, as a driver would.
                    Output::WantCompute => self.wants_compute = true,
                    Output::ScheduleTimer { at, token } => {
                        self.timer_seq += 1;
                        self.timers.insert((at, self.timer_seq), token);
                    }
                    Output::Rejected { reason, .. } => {
                        *self.reported.entry(variant(&reason)).or_default() += 1;
                        self.reported_total += 1;
                        rejections.push(reason);
                    }
                    _ => {}
                }
            }
        }
        rejections
    }

    fn feed(&mut self, from: u32, bytes: Vec<u8>) -> Vec<RejectReason> {
        self.fed += 1;
        self.input(Input::Message { from, bytes })
    }

    /// Moves the clock, grants a pending compute request and fires due timers.
    fn advance(&mut self, micros: u64) {
        self.now += micros;
        if std::mem::take(&mut self.wants_compute) {
            self.input(Input::ComputeGranted);
        }
        while let Some((&(at, seq), _)) = self.timers.first_key_value() {
            if at > self.now {
                break;
            }
            let token = self.timers.remove(&(at, seq)).expect("present");
            self.input(Input::Timer(token));
        }
    }

    /// Brings a neighbour back after a goodbye (a reconnect, as the daemon would see it).
    fn keep_neighbours(&mut self) {
        for j in [1, 2] {
            if self.peer.neighbour(&j).is_none() {
                self.input(Input::NeighbourUp(j));
                self.hello_from(j);
            }
        }
    }

    fn assert_finite(&self) {
        assert!(
            self.peer.model().iter().all(|x| x.is_finite()),
            "model went non-finite at round {}",
            self.peer.round()
        );
        assert!(self.peer.public_copy().iter().all(|x| x.is_finite()));
    }
}

/// Structurally valid messages that lie: huge, non-finite, wrong-dimension, replayed, flooding.
fn hostile_message(live: &LivePeer, rng: &mut ChaCha8Rng, sender: u32) -> Vec<u8> {
    let fp = fingerprint(FINGERPRINT_TEXT);
    let next_seq = live
        .peer
        .neighbour(&sender)
        .map_or(1, |n| n.applied_seq + 1);
    let round = live.peer.round();
    let dense = |v: &[f32]| build(&CodecSpec::DenseF32, 0).compress(v).encode();
    let mut v = random_vector(rng, DIM, 1.0);
    let message = match rng.random_range(0..12) {
        // An honest, in-sequence update: keeps the copy moving so later lies hit live state.
        0 | 1 => {
            let spec = &codecs()[rng.random_range(0..10)];
            let frame = build(spec, rng.random()).compress(&v).encode();
            Message::Update(Update {
                seq: next_seq,
                round,
                degree: 2,
                frame,
            })
        }
        // Huge but finite values (the clipping radius is what bounds their effect).
        2 => {
            v.iter_mut().for_each(|x| *x *= 1e37);
            Message::Update(Update {
                seq: next_seq,
                round,
                degree: 2,
                frame: dense(&v),
            })
        }
        // Non-finite values: the codec refuses them.
        3 => {
            v[rng.random_range(0..DIM)] =
                [f32::NAN, f32::INFINITY, f32::NEG_INFINITY][rng.random_range(0..3)];
            Message::Update(Update {
                seq: next_seq,
                round,
                degree: 2,
                frame: dense(&v),
            })
        }
        // Wrong dimension.
        4 => {
            let wrong = DIM + rng.random_range(1..5);
            Message::Update(Update {
                seq: next_seq,
                round,
                degree: 2,
                frame: dense(&random_vector(rng, wrong, 1.0)),
            })
        }
        // Replayed sequence numbers.
        5 => Message::Update(Update {
            seq: next_seq.saturating_sub(rng.random_range(1..4)),
            round,
            degree: 2,
            frame: dense(&v),
        }),
        // Sequence numbers from far in the future, or an absurd degree.
        6 => Message::Update(Update {
            seq: next_seq + rng.random_range(1..u64::MAX / 2),
            round: rng.random(),
            degree: if rng.random_bool(0.5) {
                rng.random()
            } else {
                2
            },
            frame: dense(&v),
        }),
        // Snapshots nobody asked for, some of them poisoned.
        7 => {
            if rng.random_bool(0.5) {
                v[0] = f32::NAN;
            }
            Message::Snapshot(Snapshot {
                nonce: rng.random_range(0..4),
                seq: next_seq,
                round,
                degree: 2,
                x_hat: v,
                model: None,
            })
        }
        // Snapshot request floods.
        8 => Message::SnapshotRequest(SnapshotRequest {
            nonce: rng.random(),
            want_model: true,
        }),
        // Hellos that lie about the model.
        9 => Message::Hello(Hello {
            dim: if rng.random_bool(0.5) {
                DIM as u32 + 1
            } else {
                DIM as u32
            },
            fingerprint: if rng.random_bool(0.5) { fp ^ 1 } else { fp },
            algorithm: [
                AlgorithmKind::Choco,
                AlgorithmKind::Dpsgd,
                AlgorithmKind::PushSum,
            ][rng.random_range(0..3)],
            degree: if rng.random_bool(0.3) { u32::MAX } else { 2 },
            round: rng.random_range(0..round + 5),
            seq: next_seq.saturating_sub(1),
            reply_wanted: rng.random_bool(0.5),
        }),
        // A message this algorithm never uses.
        10 => Message::PushShare(PushShare {
            round,
            weight: [0.5, f64::NAN, -1.0, f64::INFINITY][rng.random_range(0..4)],
            values: v,
        }),
        _ => Message::Goodbye,
    };
    message.encode()
}

fn fuzz_live_peer(seed: u64, frames: usize, clip_radius: Option<f32>) -> (Tally, u64) {
    let peer = new_peer(0, peer_config(clip_radius), seed);
    let max_bytes = peer.max_message_bytes();
    // The decode bound (see `fuzz_messages`) dominates everything else a message can make the
    // peer allocate (dense copies are 4 × dim bytes, snapshots 8 × dim).
    let cap = 4 * max_bytes;
    let mut live = LivePeer::new(peer);
    let corpus = message_corpus(seed, DIM);
    let mut mutator = Mutator::new(seed);
    let mut hostile_rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5eed);
    let mut tally = Tally::default();
    for n in 0..frames {
        let sender = 1 + (n % 2) as u32;
        let bytes = if n % 4 == 0 {
            hostile_message(&live, &mut hostile_rng, sender)
        } else {
            mutator.next(&corpus).0
        };
        // Sometimes from a stranger: every frame from a non-neighbour must be refused.
        let sender = if n % 97 == 0 { 9 } else { sender };
        let expected = Message::decode(&bytes, max_bytes);
        let len = bytes.len();
        let (rejections, size) = largest_allocation(|| live.feed(sender, bytes));
        tally.allocation("Peer::handle", size, cap, len);
        tally.frames += 1;
        if sender == 9 {
            assert_eq!(rejections, vec![RejectReason::NotANeighbour]);
        } else if let Err(e) = expected {
            assert_eq!(
                rejections,
                vec![RejectReason::Message(e)],
                "an undecodable frame must be rejected once, for the decoder's reason"
            );
        }
        if rejections.is_empty() {
            tally.accepted += 1;
        }
        for r in &rejections {
            tally.reject(variant(r));
        }
        live.keep_neighbours();
        if std::env::var_os("MURMUR_FUZZ_TRACE").is_some() && n % 5000 == 0 {
            let st = live.peer.stats();
            eprintln!(
                "trace n={n} round={} timers={} outstanding_round_snapshots={} buffered={:?} sent={} bytes_sent={} rejected={}",
                live.peer.round(),
                live.timers.len(),
                st.snapshot_requests_sent,
                live.peer.neighbour(&1).map(|x| x.buffered),
                st.messages_sent,
                st.bytes_sent,
                st.rejected.total()
            );
        }
        if n % 64 == 63 {
            live.advance(50_000);
            live.assert_finite();
        }
    }
    live.assert_finite();
    let stats = live.peer.stats();
    assert_eq!(
        stats.rejected.total(),
        live.reported_total,
        "the peer's counters must add up to the rejections it reported"
    );
    assert_eq!(stats.messages_received, live.fed);
    // The structured tally only counts fuzzed frames; the driver's also counts hellos it sent
    // on reconnects (never rejected), so the two agree exactly.
    assert_eq!(tally.rejections(), live.reported_total);
    (tally, live.peer.round())
}

// ---------------------------------------------------------------------------- the test

fn timed<T>(name: &str, f: impl FnOnce() -> T) -> T {
    let started = Instant::now();
    let value = f();
    println!(
        "fuzz_frames: {name} took {:.1}s",
        started.elapsed().as_secs_f64()
    );
    value
}

#[test]
fn a_million_hostile_frames_per_decoder() {
    let started = Instant::now();
    // MURMUR_FUZZ_FRAMES raises (or, for a quick look, lowers) the count per decoder.
    let n = std::env::var("MURMUR_FUZZ_FRAMES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(FRAMES_PER_DECODER);
    // Four independent, deterministic jobs; the OS spreads them over the cores.
    let (codec, message, (checkpoint, restore), (peer, rounds), (clipped, clipped_rounds)) =
        std::thread::scope(|s| {
            let codec = s.spawn(|| timed("fuzz_codecs", || fuzz_codecs(1, n)));
            let message = s.spawn(|| timed("fuzz_messages", || fuzz_messages(2, n)));
            let checkpoint = s.spawn(|| timed("fuzz_checkpoints", || fuzz_checkpoints(3, n / 2)));
            let peer = s.spawn(|| timed("fuzz_live_peer", || fuzz_live_peer(4, n / 2, None)));
            let clipped = s.spawn(|| {
                timed("fuzz_live_peer_clipped", || {
                    fuzz_live_peer(5, n / 2, Some(1.0))
                })
            });
            (
                codec.join().expect("codec fuzzing panicked"),
                message.join().expect("message fuzzing panicked"),
                checkpoint.join().expect("checkpoint fuzzing panicked"),
                peer.join().expect("live peer fuzzing panicked"),
                clipped.join().expect("clipped live peer fuzzing panicked"),
            )
        });
    codec.print("Compressed::decode (10 codecs)");
    message.print("Message::decode");
    checkpoint.print("PeerCheckpoint::decode");
    restore.print("Peer::restore (decoded checkpoints)");
    peer.print("Peer::handle (no clipping)");
    clipped.print("Peer::handle (clip radius 1)");
    let frames = codec.frames + message.frames + checkpoint.frames + peer.frames + clipped.frames;
    let rejections = codec.rejections()
        + message.rejections()
        + checkpoint.rejections()
        + peer.rejections()
        + clipped.rejections();
    println!(
        "summary: frames={frames} rejections={rejections} peer_rounds={rounds}+{clipped_rounds} seconds={:.1}",
        started.elapsed().as_secs_f64()
    );
    assert!(frames >= n as u64);
    // Most damage must be caught, and some frames must get through to the deep checks.
    for (name, t) in [
        ("codec", &codec),
        ("message", &message),
        ("checkpoint", &checkpoint),
    ] {
        assert!(t.rejections() * 2 > t.frames, "{name}: too few rejections");
        assert!(t.accepted > 0, "{name}: nothing got through");
    }
    assert!(
        rounds > 0 && clipped_rounds > 0,
        "the live peers never completed a round"
    );
}

/// Sparse frames with thousands of entries take the decoder's table path (several codes per
/// load, ≥ 2048 entries), which the 650-dimension frames above never reach: the same
/// properties under mutation.
#[test]
fn large_sparse_frames_under_mutation() {
    let started = Instant::now();
    let specs: Vec<CodecSpec> = [
        "threshold-tau:0.9",
        "threshold:0.06",
        "scaled-threshold:0.2",
        "topk:0.06",
        "randk:0.1",
    ]
    .iter()
    .map(|s| s.parse().expect("codec spec parses"))
    .collect();
    let n = std::env::var("MURMUR_FUZZ_FRAMES")
        .ok()
        .and_then(|v: String| v.parse::<usize>().ok())
        .map_or(200_000, |n| n / 5);
    let tally = fuzz_codecs_at(6, n, 40_000, &specs);
    tally.print("Compressed::decode (5 sparse codecs, dim 40000)");
    println!(
        "summary: frames={} accepted={} rejections={} seconds={:.1}",
        tally.frames,
        tally.accepted,
        tally.rejections(),
        started.elapsed().as_secs_f64()
    );
    assert!(tally.rejections() * 2 > tally.frames, "too few rejections");
    assert!(tally.accepted > 0, "nothing got through");
}
