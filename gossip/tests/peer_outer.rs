//! The DiLoCo outer step in the peer: the swarm's average model follows DiLoCo's recursion on
//! the average pseudo-gradient whatever the codec, the velocity survives checkpoints (and
//! older checkpoint formats still read), and settings it cannot run with are refused.

mod peer_support;

use murmur_gossip::peer::testing::LockStep;
use murmur_gossip::peer::{
    Algorithm, CodecSpec, ConfigError, Mode, OuterConfig, OuterError, Peer, PeerCheckpoint,
    PeerConfig,
};
use ndarray::Array1;
use peer_support::*;

const N: u32 = 8;
const DIM: usize = 24;
const H: u32 = 4;
const LR: f32 = 0.05;
const OUTER: OuterConfig = OuterConfig {
    lr: 0.7,
    momentum: 0.9,
};

fn config(seed: u64, algorithm: Algorithm, outer: Option<OuterConfig>) -> PeerConfig {
    PeerConfig {
        algorithm,
        local_steps: H,
        outer,
        mode: Mode::RoundTagged { timeout: 5_000 },
        checkpoint_every: 5,
        seed,
        ..PeerConfig::default()
    }
}

fn choco() -> Algorithm {
    Algorithm::Choco {
        codec: CodecSpec::AdaptiveThreshold { density: 0.1 },
        gamma: 0.3,
    }
}

fn peer(i: u32, centres: &[Vec<f32>], outer: Option<OuterConfig>) -> Peer<u32> {
    let learner = Quadratic {
        centre: centres[i as usize].clone(),
        lr: LR,
        steps: 0,
    };
    let c = config(i.into(), choco(), outer);
    Peer::new(i, c, Box::new(learner), Array1::zeros(DIM)).unwrap()
}

fn swarm(centres: &[Vec<f32>], outer: Option<OuterConfig>) -> LockStep {
    let mut net = LockStep::new((0..N).map(|i| peer(i, centres, outer)).collect(), 1_000);
    net.start_with_edges(exponential_edges(N));
    net
}

/// On f_i(x) = ½‖x − c_i‖², H steps of size α from θ_i leave x_i = c_i + (1 − α)^H (θ_i − c_i),
/// so the pseudo-gradient g_i = a (θ_i − c_i), a = 1 − (1 − α)^H, is linear in θ_i and the
/// average one is a (θ̄ − c̄) whatever the peers disagree on. CHOCO's mix preserves the
/// average (symmetric weights), so θ̄ must follow v̄ ← μ v̄ + ḡ, θ̄ ← θ̄ − η (ḡ + μ v̄) exactly,
/// even with a 10%-density threshold codec in between. Without the outer step (or with it
/// applied to anything but the local movement) the average would follow θ̄ ← θ̄ − ḡ instead;
/// both end at c̄, so the trajectories are told apart along the way, not at the end.
#[test]
fn swarm_average_follows_diloco_on_the_average_pseudo_gradient() {
    let centres = random_vectors(N as usize, DIM, 11);
    let mean_centre: Vec<f64> = (0..DIM)
        .map(|k| centres.iter().map(|c| f64::from(c[k])).sum::<f64>() / f64::from(N))
        .collect();
    let a = 1.0 - (1.0 - f64::from(LR)).powi(H as i32);
    let (eta, mu) = (f64::from(OUTER.lr), f64::from(OUTER.momentum));
    let mut theta = [0.0f64; DIM];
    let mut v = [0.0f64; DIM];
    let mut plain = [0.0f64; DIM];
    let mut net = swarm(&centres, Some(OUTER));
    let mut worst = 0.0f64;
    let mut off_by = 0.0f64;
    for round in 1..=30u64 {
        net.run_until_round(&(0..N).collect::<Vec<_>>(), round, 200);
        assert!(
            net.peers().iter().all(|p| p.round() == round),
            "lock-step peers stay in the same round"
        );
        for k in 0..DIM {
            let g = a * (theta[k] - mean_centre[k]);
            v[k] = mu * v[k] + g;
            theta[k] -= eta * (g + mu * v[k]);
            plain[k] -= a * (plain[k] - mean_centre[k]);
            off_by = off_by.max((theta[k] - plain[k]).abs());
        }
        let mean = net.mean_model();
        for k in 0..DIM {
            worst = worst.max((mean[k] - theta[k]).abs());
        }
    }
    println!(
        "worst |mean model - DiLoCo recursion| over 30 rounds: {worst:e}; plain differs by up to {off_by:e}"
    );
    assert!(worst < 1e-4, "{worst}");
    assert!(
        off_by > 1e-2,
        "the recursion must be told apart from plain rounds"
    );
    let stats = net.peer(0).stats();
    assert_eq!(stats.outer_steps, 30);
    assert_eq!(stats.local_steps, 30 * u64::from(H));
}

/// A checkpoint carries the velocity: restoring it into a fresh peer reproduces the whole
/// state, and the encoding round-trips.
#[test]
fn velocity_survives_checkpoint_and_restore() {
    let centres = random_vectors(N as usize, DIM, 3);
    let mut net = swarm(&centres, Some(OUTER));
    net.run_rounds(10, 100);
    let cp = net.peer(3).checkpoint();
    assert_eq!(cp.outer_velocity.len(), DIM);
    assert_eq!(cp.outer_velocity, net.peer(3).outer_velocity());
    assert!(cp.outer_velocity.iter().any(|v| *v != 0.0));
    assert_eq!(PeerCheckpoint::decode(&cp.encode()), Ok(cp.clone()));
    let mut fresh = peer(3, &centres, Some(OUTER));
    fresh.restore(cp.clone()).unwrap();
    assert_eq!(fresh.checkpoint(), cp);
    // Resumed with the outer step turned off, the velocity is dropped, not misapplied.
    let mut off = peer(3, &centres, None);
    off.restore(cp.clone()).unwrap();
    assert!(off.outer_velocity().is_empty());
    // A velocity of the wrong length or with a NaN is refused.
    for bad in [vec![0.0; DIM - 1], {
        let mut v = cp.outer_velocity.clone();
        v[2] = f32::NAN;
        v
    }] {
        let mut fresh = peer(3, &centres, Some(OUTER));
        let e = fresh
            .restore(PeerCheckpoint {
                outer_velocity: bad,
                ..cp.clone()
            })
            .unwrap_err();
        assert!(e.to_string().contains("outer_velocity"), "{e}");
    }
}

/// Format 2 (before the velocity) is format 3 without its last field: a format-2 file
/// decodes as a checkpoint with no velocity.
#[test]
fn format_two_checkpoints_still_decode() {
    let centres = random_vectors(N as usize, DIM, 5);
    let mut net = swarm(&centres, None);
    net.run_rounds(6, 100);
    let cp = net.peer(1).checkpoint();
    assert!(cp.outer_velocity.is_empty());
    let mut bytes = cp.encode();
    assert_eq!(bytes[0], 3, "the format leads the encoding");
    assert_eq!(bytes.pop(), Some(0), "an empty velocity ends the encoding");
    bytes[0] = 2;
    assert_eq!(PeerCheckpoint::decode(&bytes), Ok(cp));
}

#[test]
fn settings_the_outer_step_cannot_run_with_are_refused() {
    let centres = random_vectors(1, DIM, 1);
    let build = |c: PeerConfig| {
        let learner = Quadratic {
            centre: centres[0].clone(),
            lr: LR,
            steps: 0,
        };
        Peer::new(0u32, c, Box::new(learner), Array1::zeros(DIM)).map(|_| ())
    };
    let push = config(0, Algorithm::PushSum, Some(OUTER));
    assert_eq!(build(push), Err(ConfigError::Outer(OuterError::PushSum)));
    let no_steps = PeerConfig {
        local_steps: 0,
        ..config(0, choco(), Some(OUTER))
    };
    assert_eq!(
        build(no_steps),
        Err(ConfigError::Outer(OuterError::NoLocalSteps))
    );
    let bad_lr = config(
        0,
        choco(),
        Some(OuterConfig {
            lr: f32::NAN,
            ..OUTER
        }),
    );
    assert!(matches!(
        build(bad_lr),
        Err(ConfigError::Outer(OuterError::Lr(_)))
    ));
    assert_eq!(build(config(0, Algorithm::Dpsgd, Some(OUTER))), Ok(()));
}
