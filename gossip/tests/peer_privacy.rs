//! Peer-level differential privacy of the update (`PeerConfig::privacy`): the released update
//! is exactly x_before + clip(Δ) + N(0, (σC)²) from the peer's generator, no frame and no
//! model a driver can read is ever the unnoised x after the local steps (with overlapped
//! compute, losses, reordering, a joiner adopting a model mid-run), runs are reproducible bit
//! for bit and a checkpoint resumes the generator where it stopped, and the accountant's ε is
//! what the peer reports.

mod peer_support;

use std::sync::{Arc, Mutex};

use murmur_gossip::learner::{Evaluation, LocalLearner};
use murmur_gossip::message::AlgorithmKind;
use murmur_gossip::peer::testing::{Faults, LockStep};
use murmur_gossip::peer::{
    Algorithm, CheckpointError, CodecSpec, ConfigError, Input, Mode, Peer, PeerCheckpoint,
    PeerConfig, PrivacyConfig,
};
use murmur_gossip::privacy::{self, PrivacyError, clip_and_noise};
use ndarray::Array1;
use peer_support::*;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

const DIM: usize = 16;
const PRIVACY: PrivacyConfig = PrivacyConfig {
    clip: 0.5,
    noise_multiplier: 2.0,
    delta: 1e-5,
};

/// Each step adds a fixed, distinctive vector to the model and records the result, so a test
/// can look for the unnoised x' anywhere it must not be.
#[derive(Debug)]
struct Spy {
    shift: Vec<f32>,
    seen: Arc<Mutex<Vec<Vec<f32>>>>,
}

impl LocalLearner for Spy {
    fn dim(&self) -> usize {
        self.shift.len()
    }
    fn step(&mut self, params: &mut [f32]) -> f32 {
        for (p, s) in params.iter_mut().zip(&self.shift) {
            *p += s;
        }
        self.seen.lock().unwrap().push(params.to_vec());
        1.0
    }
    fn evaluate(&self, _: &[f32]) -> Evaluation {
        Evaluation::default()
    }
    fn save_state(&self) -> Vec<u8> {
        Vec::new()
    }
    fn load_state(&mut self, _: &[u8]) -> Result<(), String> {
        Ok(())
    }
}

fn shift(i: u32) -> Vec<f32> {
    (0..DIM)
        .map(|k| 0.37 + 0.011 * k as f32 + 0.1 * i as f32)
        .collect()
}

fn dpsgd(privacy: Option<PrivacyConfig>) -> PeerConfig {
    PeerConfig {
        algorithm: Algorithm::Dpsgd,
        local_steps: 2,
        mode: Mode::RoundTagged { timeout: 5_000 },
        overlap_compute: true,
        privacy,
        ..PeerConfig::default()
    }
}

/// Whether `needle`'s first four floats appear, as little-endian bytes, in `hay`.
fn contains_floats(hay: &[u8], needle: &[f32]) -> bool {
    let bytes: Vec<u8> = needle[..4].iter().flat_map(|x| x.to_le_bytes()).collect();
    hay.windows(bytes.len()).any(|w| w == bytes.as_slice())
}

/// What [`spy_run`] saw: every x' the learners produced, every frame sent, and every model
/// readable between two inputs and in every checkpoint.
struct Seen {
    steps: Vec<Vec<f32>>,
    frames: Vec<Vec<u8>>,
    readable: Vec<Vec<f32>>,
}

/// 4 D-PSGD peers on a ring (dense models on the wire), overlapped compute, peer 3 a
/// straggler (so the others run their next steps while waiting for it), 5% loss and 5%
/// reordering (gaps, snapshots), and a fifth peer joining at round 8, adopting a neighbour's
/// model from a snapshot.
fn spy_run(privacy: Option<PrivacyConfig>) -> Seen {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let make = |i: u32, seen: &Arc<Mutex<Vec<Vec<f32>>>>| {
        let config = PeerConfig {
            seed: u64::from(i),
            ..dpsgd(privacy)
        };
        let spy = Spy {
            shift: shift(i),
            seen: seen.clone(),
        };
        Peer::new(i, config, Box::new(spy), Array1::zeros(DIM)).unwrap()
    };
    let mut net = LockStep::new((0..4).map(|i| make(i, &seen)).collect(), 1_000);
    net.recorded = Some(Vec::new());
    net.set_compute_every(3, 3);
    net.set_faults(Some(Faults {
        drop: 0.05,
        duplicate: 0.0,
        reorder: 0.05,
        seed: 9,
    }));
    net.start_with_edges(ring_edges(4));
    let mut readable = Vec::new();
    for tick in 0..400 {
        net.tick();
        for p in net.peers() {
            readable.push(p.model().to_vec());
            readable.push(p.checkpoint().model);
        }
        if tick == 30 {
            let joiner = make(4, &seen);
            net.add_peer(joiner);
            net.connect(4, 0);
            net.input(4, Input::Start);
        }
    }
    assert!(
        net.peers().iter().all(|p| p.round() >= 20),
        "the swarm trained"
    );
    assert!(
        net.peers().iter().any(|p| p.stats().snapshots_sent > 0),
        "the run answered snapshots"
    );
    let frames = net
        .recorded
        .take()
        .unwrap()
        .into_iter()
        .map(|(_, _, b)| b)
        .collect();
    let steps = seen.lock().unwrap().clone();
    Seen {
        steps,
        frames,
        readable,
    }
}

#[test]
fn no_frame_and_no_readable_model_is_ever_the_unnoised_model() {
    // Without privacy the unnoised x' is on the wire: the detector works.
    let Seen {
        steps: seen,
        frames,
        ..
    } = spy_run(None);
    let leaks = seen
        .iter()
        .filter(|x| frames.iter().any(|f| contains_floats(f, x)))
        .count();
    assert!(leaks > 0, "the detector never fired without privacy");

    let Seen {
        steps: seen,
        frames,
        readable,
    } = spy_run(Some(PRIVACY));
    assert!(seen.len() > 100, "{} steps", seen.len());
    for x in &seen {
        assert!(
            !frames.iter().any(|f| contains_floats(f, x)),
            "a frame carries an unnoised model"
        );
        assert!(
            !readable.iter().any(|m| m == x),
            "a model readable from the peer is unnoised"
        );
    }
    println!(
        "{} local steps, {} frames, {} readable models: none unnoised (without privacy {leaks} steps leaked)",
        seen.len(),
        frames.len(),
        readable.len()
    );
}

/// One peer with no neighbour: each round is its local steps and its (empty) mix, so its
/// model is exactly the sum of its released updates.
fn lone(config: PeerConfig, centre: Vec<f32>) -> LockStep {
    let learner = Quadratic {
        centre,
        lr: 0.5,
        steps: 0,
    };
    let peer = Peer::new(0u32, config, Box::new(learner), Array1::zeros(DIM)).unwrap();
    let mut net = LockStep::new(vec![peer], 1_000);
    net.start_with_edges([]);
    net
}

fn choco(privacy: Option<PrivacyConfig>) -> PeerConfig {
    PeerConfig {
        algorithm: Algorithm::Choco {
            codec: CodecSpec::DenseF32,
            gamma: 0.5,
        },
        local_steps: 1,
        mode: Mode::RoundTagged { timeout: 5_000 },
        privacy,
        seed: 11,
        // A lone peer starts at its startup deadline (no hello to wait for): the next tick.
        startup_timeout: 1,
        ..PeerConfig::default()
    }
}

#[test]
fn the_update_is_clipped_then_noised_from_the_noise_key() {
    let centre: Vec<f32> = (0..DIM).map(|k| 1.0 + k as f32).collect();
    let mut net = lone(choco(Some(PRIVACY)), centre.clone());
    let key = [42u8; 32];
    // Before Start only: the harness has started the peer, so build another.
    assert_eq!(
        net.peer_mut(0).set_noise_key(key),
        Err(ConfigError::Started("set_noise_key"))
    );
    let learner = Quadratic {
        centre: centre.clone(),
        lr: 0.5,
        steps: 0,
    };
    let mut peer = Peer::new(
        0u32,
        choco(Some(PRIVACY)),
        Box::new(learner),
        Array1::zeros(DIM),
    )
    .unwrap();
    peer.set_noise_key(key).unwrap();
    let mut net = LockStep::new(vec![peer], 1_000);
    net.start_with_edges([]);
    net.run_rounds(1, 10);
    // One step of ½‖x − c‖² at lr 0.5 from 0: Δ = c / 2, far longer than the clip.
    let mut expected: Vec<f32> = centre.iter().map(|c| 0.5 * c).collect();
    let norm = clip_and_noise(
        &mut expected,
        PRIVACY.clip,
        PRIVACY.noise_multiplier,
        &mut ChaCha8Rng::from_seed(key),
    );
    assert!(norm > PRIVACY.clip);
    assert_eq!(net.peer(0).model().to_vec(), expected);
    let stats = net.peer(0).stats();
    assert_eq!((stats.private_rounds, stats.privacy_clipped), (1, 1));
    // The clip really bounds the signal: model − noise has norm C.
    let mut noise = vec![0.0f32; DIM];
    clip_and_noise(
        &mut noise,
        PRIVACY.clip,
        PRIVACY.noise_multiplier,
        &mut ChaCha8Rng::from_seed(key),
    );
    let signal: f64 = expected
        .iter()
        .zip(&noise)
        .map(|(m, z)| f64::from(m - z).powi(2))
        .sum::<f64>()
        .sqrt();
    assert!((signal - PRIVACY.clip).abs() < 1e-5, "{signal}");
}

#[test]
fn runs_are_reproducible_and_a_checkpoint_resumes_the_noise_where_it_stopped() {
    let centres = random_vectors(4, DIM, 5);
    let run = |rounds: u64| {
        let mut net = quadratic_swarm(&choco(Some(PRIVACY)), centres.clone(), 0.1);
        net.start_with_edges(ring_edges(4));
        net.run_rounds(rounds, 20 * rounds as usize);
        net
    };
    let a = run(30);
    let b = run(30);
    for (x, y) in a.peers().iter().zip(b.peers()) {
        assert_eq!(x.model(), y.model());
        assert_eq!(x.stats().private_rounds, 30);
    }
    assert_copies_exact(&a);
    // The noise is there: without privacy the models differ.
    let mut quiet = quadratic_swarm(&choco(None), centres.clone(), 0.1);
    quiet.start_with_edges(ring_edges(4));
    quiet.run_rounds(30, 600);
    assert_ne!(quiet.peer(0).model(), a.peer(0).model());

    // A lone peer: 20 rounds straight equal 10 rounds, checkpoint, restore, 10 rounds.
    let centre = centres[0].clone();
    let mut straight = lone(choco(Some(PRIVACY)), centre.clone());
    straight.run_rounds(20, 100);
    let mut first = lone(choco(Some(PRIVACY)), centre.clone());
    first.run_rounds(10, 100);
    let cp = first.peer(0).checkpoint();
    assert_eq!(cp.privacy, Some(PRIVACY));
    let learner = Quadratic {
        centre,
        lr: 0.5,
        steps: 0,
    };
    let mut resumed = Peer::new(
        0u32,
        choco(Some(PRIVACY)),
        Box::new(learner),
        Array1::zeros(DIM),
    )
    .unwrap();
    resumed.restore(cp).unwrap();
    let mut second = LockStep::new(vec![resumed], 1_000);
    second.start_with_edges([]);
    second.run_rounds(10, 100);
    assert_eq!(second.peer(0).round(), 20);
    assert_eq!(second.peer(0).model(), straight.peer(0).model());
}

#[test]
fn restore_refuses_another_privacy_and_reads_format_1_as_none() {
    let centre = random_vectors(1, DIM, 6).remove(0);
    let mut net = lone(choco(Some(PRIVACY)), centre.clone());
    net.run_rounds(3, 20);
    let private = net.peer(0).checkpoint();
    let fresh = |privacy| {
        let learner = Quadratic {
            centre: centre.clone(),
            lr: 0.5,
            steps: 0,
        };
        Peer::new(0u32, choco(privacy), Box::new(learner), Array1::zeros(DIM)).unwrap()
    };
    let louder = PrivacyConfig {
        noise_multiplier: 4.0,
        ..PRIVACY
    };
    for other in [None, Some(louder)] {
        let err = fresh(other).restore(private.clone()).unwrap_err();
        assert!(
            matches!(&err, CheckpointError::Mismatch(m) if m.contains("privacy")),
            "{err}"
        );
    }
    // Another δ is only another report of the same mechanism: it resumes.
    let other_delta = PrivacyConfig {
        delta: 1e-7,
        ..PRIVACY
    };
    fresh(Some(other_delta)).restore(private.clone()).unwrap();

    // Format 1 (before privacy existed) has the same fields minus the last: postcard writes a
    // struct as its fields in order, so a tuple of them is the old layout.
    let v1 = postcard::to_stdvec(&(
        1u16,
        private.dim,
        private.fingerprint,
        AlgorithmKind::Choco,
        private.round,
        private.seq,
        private.last_update_round,
        private.local_steps,
        private.model.clone(),
        private.x_hat.clone(),
        private.push_weight,
        private.learner_state.clone(),
        private.rng.clone(),
    ))
    .unwrap();
    let old = PeerCheckpoint::decode(&v1).unwrap();
    assert_eq!(old.privacy, None);
    assert_eq!(old.model, private.model);
    fresh(None).restore(old.clone()).unwrap();
    assert!(matches!(
        fresh(Some(PRIVACY)).restore(old),
        Err(CheckpointError::Mismatch(_))
    ));
    // A format from the future (one past the current) is refused, naming the number.
    let mut future = private.encode();
    future[0] += 1;
    let got = u16::from(future[0]);
    assert!(matches!(
        PeerCheckpoint::decode(&future),
        Err(CheckpointError::Format { got: g, .. }) if g == got
    ));
}

#[test]
fn the_peer_reports_the_accountants_epsilon_and_nonsense_is_refused() {
    let centre = random_vectors(1, DIM, 7).remove(0);
    let mut net = lone(choco(Some(PRIVACY)), centre.clone());
    assert_eq!(net.peer(0).privacy_spent().unwrap().epsilon, 0.0);
    net.run_rounds(25, 100);
    let spent = net.peer(0).privacy_spent().unwrap();
    assert_eq!(spent, privacy::epsilon(2.0, 25, 1e-5));
    assert_eq!(spent.rounds, 25);
    assert!(
        spent.epsilon > 1.0 && spent.epsilon.is_finite(),
        "{spent:?}"
    );
    // Off: no ε.
    let quiet = lone(choco(None), centre);
    assert_eq!(quiet.peer(0).privacy_spent(), None);

    let bad = |privacy: PrivacyConfig, local_steps| {
        PeerConfig {
            local_steps,
            ..choco(Some(privacy))
        }
        .validate()
    };
    assert_eq!(bad(PRIVACY, 0), Err(ConfigError::PrivacyWithoutSteps));
    assert_eq!(
        bad(
            PrivacyConfig {
                clip: -1.0,
                ..PRIVACY
            },
            1
        ),
        Err(ConfigError::Privacy(PrivacyError::Clip(-1.0)))
    );
    assert_eq!(
        bad(
            PrivacyConfig {
                noise_multiplier: 0.01,
                ..PRIVACY
            },
            1
        ),
        Err(ConfigError::Privacy(PrivacyError::NoiseMultiplier(0.01)))
    );
    // The removed key is named with its replacement.
    let hint = murmur_gossip::peer::removed_key("noise_std").unwrap();
    assert!(
        hint.contains("privacy") && hint.contains("noise_multiplier"),
        "{hint}"
    );
    assert!(toml::from_str::<PeerConfig>("noise_std = 0.1").is_err());
}
