//! Peer-level differential privacy: the clipped, noised local update, and its accountant.
//!
//! # The mechanism
//! With [`PrivacyConfig`] set in [`crate::peer::PeerConfig::privacy`], every round a peer runs
//! its H local steps from x to x', then replaces the update Δ = x' − x by
//!
//! ```text
//! Δ̃ = Δ · min(1, C / ‖Δ‖₂) + N(0, (σC)² I)        C = clip, σ = noise_multiplier
//! ```
//!
//! and sets x ← x + Δ̃ before anything else happens: in the same [`crate::peer::Peer::handle`]
//! call that ran the steps, so no output, snapshot, getter or checkpoint can ever see x'.
//! The noise comes from the peer's seeded generator (its position is checkpointed). Everything
//! the peer sends afterwards (CHOCO's compressed differences, D-PSGD models, push-sum shares,
//! snapshots of x and x̂) and everything a driver publishes from the model (the daemon's
//! `/model`, checkpoint models) is a function of the noised updates Δ̃₁, Δ̃₂, … and of
//! messages from other peers: post-processing, which cannot weaken the guarantee.
//!
//! # What is protected, and the unit
//! The unit is the **peer's whole local dataset** (peer-level, or "user-level", privacy: the
//! natural unit when one peer is one organisation or one device). Two neighbouring inputs are
//! two local datasets D and D' of the same peer, everything else equal; this is the
//! *replacement* relation. Whatever the data, ‖clip(Δ)‖ ≤ C, so replacing D changes the
//! clipped update by at most 2C: each round is a Gaussian mechanism with L2 sensitivity 2C and
//! noise std σC, whose Rényi DP at order α is α (2C)² / (2 (σC)²) = 2α / σ²
//! (Mironov 2017, "Rényi Differential Privacy", Prop. 7). The rounds compose adaptively (the
//! update of round r depends on everything released before it, and on private state such as
//! momentum, whose randomness does not depend on D), so T rounds are (α, 2Tα/σ²)-RDP for every
//! α > 1 (Mironov 2017, Prop. 1). The guarantee holds against any set of colluding observers,
//! including every neighbour and every peer of the swarm, and whatever they send back.
//!
//! RDP is turned into (ε, δ)-DP with the conversion of Balle, Barthe, Gaboardi, Hsu and Sato
//! 2020 ("Hypothesis testing interpretations and Rényi differential privacy", Thm. 21; also
//! Canonne, Kamath and Steinke 2020, "The Discrete Gaussian for Differential Privacy",
//! Prop. 12):
//!
//! ```text
//! ε = ε_RDP(α) + ln((α − 1)/α) − (ln δ + ln α)/(α − 1)
//! ```
//!
//! minimised over the grid of orders [`orders`] (α − 1 from 10⁻³ to 10⁴, 40 points a decade).
//! It is tighter than Mironov's ε_RDP(α) + ln(1/δ)/(α − 1) at every α.
//!
//! Why peer-level and replacement: a peer's neighbours see every one of its updates, so the
//! record-level guarantees of DP-SGD, which rest on subsampling amplification and on the
//! adversary seeing only the final model, do not apply; the peer's data is what a neighbour
//! could learn about. Replacement (not add/remove) because a peer's dataset cannot be "absent"
//! while the peer still runs: sensitivity 2C, so σ here buys what σ/2 buys in add/remove
//! accounting.
//!
//! # What is not protected
//! - The intermediate states of the local steps (x after each of the H minibatches), the
//!   gradients and the optimizer state (momentum, AdamW moments): never sent, but the
//!   learner's state is saved in checkpoints ([`crate::learner::LocalLearner::save_state`]), so
//!   a checkpoint's *learner state* is not private (its model is). Keep checkpoints as secret
//!   as the data.
//! - The local loss and accuracy a driver reports to its operator (`RoundCompleted`'s loss,
//!   the daemon's `/status` and `/metrics`): computed on the data without noise.
//! - Side channels: how long the local steps took, when messages leave, message sizes (with an
//!   adaptive codec the frame length depends on the noised model, which is fine, but timing
//!   depends on the hardware and the data's shapes).
//! - The noise must be secret. With a seed that an observer knows (the simulator's, or a
//!   configured seed), the observer can regenerate the noise and subtract it: a driver that
//!   protects real data draws the noise key from the operating system
//!   ([`crate::peer::Peer::set_noise_key`]; the daemon does, at every start). Resuming an older
//!   checkpoint rewinds the generator, and reusing noise on a new update cancels it in the
//!   difference: the same rule (a fresh key on every start) prevents that.
//! - Floating point: the noise is ziggurat-sampled f64 rounded into f32 sums, not an exact
//!   Gaussian (Mironov 2012 showed what naive floating-point Laplace loses); the bound is the
//!   textbook one for the ideal mechanism.
//! - Rounds run before a resume: an accountant only knows what it was told. The daemon keeps a
//!   ledger in its data directory for that; the peer's [`crate::peer::PeerStats::private_rounds`]
//!   counts the releases of one peer object.

use rand::Rng;
use rand_distr::StandardNormal;
use serde::{Deserialize, Serialize};

/// Smallest accepted [`PrivacyConfig::noise_multiplier`]. Below it one round alone costs
/// ε ≈ 10.8 at δ = 1e-5 (σ = 1; σ = 0.5 costs ε ≈ 26), which is no meaningful guarantee; and
/// a small number such as 0.01 is most likely the old `noise_std` (an absolute std) passed
/// where a multiplier of the clip is expected.
pub const MIN_NOISE_MULTIPLIER: f64 = 1.0;

/// δ when none is configured: well below 1/n for any swarm of fewer than 10⁵ peers (δ must be
/// much smaller than 1 / the number of protected units, here peers).
pub const DEFAULT_DELTA: f64 = 1e-5;

/// Peer-level differential privacy of each round's update (see the [module docs](self)).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrivacyConfig {
    /// C: the L2 norm each round's local update Δ is clipped to (> 0).
    pub clip: f64,
    /// σ: the noise std per coordinate is σ · C (≥ [`MIN_NOISE_MULTIPLIER`]).
    pub noise_multiplier: f64,
    /// δ of the (ε, δ) guarantee reported, in (0, 1).
    #[serde(default = "default_delta")]
    pub delta: f64,
}

fn default_delta() -> f64 {
    DEFAULT_DELTA
}

/// A [`PrivacyConfig`] value out of range (each message names its key).
#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum PrivacyError {
    /// Non-positive or non-finite clip.
    #[error("privacy.clip = {0} must be a finite number > 0 (the L2 norm of a round's update)")]
    Clip(f64),
    /// Noise multiplier below the bound or non-finite.
    #[error(
        "privacy.noise_multiplier = {0} must be a finite number >= {MIN_NOISE_MULTIPLIER}: it is \
         sigma, the noise std in units of the clip (std = sigma x clip), and below \
         {MIN_NOISE_MULTIPLIER} a single round alone costs epsilon > 10 at delta = 1e-5"
    )]
    NoiseMultiplier(f64),
    /// δ outside (0, 1).
    #[error(
        "privacy.delta = {0} must be in (0, 1), e.g. 1e-5 (well below 1 / the number of peers)"
    )]
    Delta(f64),
}

impl PrivacyConfig {
    /// Checks every value.
    pub fn validate(&self) -> Result<(), PrivacyError> {
        if !(self.clip.is_finite() && self.clip > 0.0) {
            return Err(PrivacyError::Clip(self.clip));
        }
        if !(self.noise_multiplier.is_finite() && self.noise_multiplier >= MIN_NOISE_MULTIPLIER) {
            return Err(PrivacyError::NoiseMultiplier(self.noise_multiplier));
        }
        if !(self.delta > 0.0 && self.delta < 1.0) {
            return Err(PrivacyError::Delta(self.delta));
        }
        Ok(())
    }

    /// The guarantee after `rounds` noised updates.
    pub fn spent(&self, rounds: u64) -> PrivacySpent {
        epsilon(self.noise_multiplier, rounds, self.delta)
    }
}

/// The orders α the conversion to (ε, δ) is minimised over: α = 1 + 10^(−3 + k/40) for
/// k = 0..=280, so α − 1 runs from 10⁻³ to 10⁴. Many rounds at small σ want α close to 1,
/// few rounds at large σ want α in the thousands; the RDP of the Gaussian is linear in α, so
/// the grid costs nothing but covers both.
pub fn orders() -> impl Iterator<Item = f64> {
    (0..=280).map(|k| 1.0 + 10f64.powf(-3.0 + f64::from(k) / 40.0))
}

/// RDP at order `alpha` of `rounds` rounds of the mechanism: `rounds` · 2α / σ² (sensitivity
/// 2C, noise std σC).
pub fn gaussian_rdp(noise_multiplier: f64, rounds: u64, alpha: f64) -> f64 {
    rounds as f64 * 2.0 * alpha / (noise_multiplier * noise_multiplier)
}

/// (α, `rdp`)-RDP as (ε, δ)-DP: ε = rdp + ln((α − 1)/α) − (ln δ + ln α)/(α − 1) (Balle et al.
/// 2020, Thm. 21; Canonne, Kamath, Steinke 2020, Prop. 12). May be negative for tiny `rdp`
/// (then any ε ≥ 0 holds); [`Accountant::spent`] clamps at 0.
pub fn rdp_to_epsilon(rdp: f64, alpha: f64, delta: f64) -> f64 {
    rdp + ((alpha - 1.0) / alpha).ln() - (delta.ln() + alpha.ln()) / (alpha - 1.0)
}

/// A privacy guarantee: (ε, δ)-DP for the peer's local dataset.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct PrivacySpent {
    /// ε.
    pub epsilon: f64,
    /// δ.
    pub delta: f64,
    /// Noised updates composed.
    pub rounds: u64,
    /// The order α the minimum was found at (NaN with no round).
    pub order: f64,
}

/// Adds up the RDP of Gaussian rounds, possibly at different noise multipliers. Every round is
/// a Gaussian mechanism, whose RDP is linear in α, so the whole curve is one slope
/// ρ = Σ 2 / σ_r² (the zero-concentrated DP parameter of Bun and Steinke 2016):
/// ε_RDP(α) = ρ α.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Accountant {
    /// ρ: the RDP slope of every round so far.
    pub rho: f64,
    /// Rounds composed.
    pub rounds: u64,
}

impl Accountant {
    /// Nothing spent.
    pub fn new() -> Self {
        Accountant::default()
    }

    /// Composes `rounds` more rounds at noise multiplier σ (adaptive composition adds RDP).
    pub fn compose(&mut self, noise_multiplier: f64, rounds: u64) {
        self.rho += gaussian_rdp(noise_multiplier, rounds, 1.0);
        self.rounds += rounds;
    }

    /// The accountant after `rounds` more rounds at σ (self unchanged).
    pub fn with(mut self, noise_multiplier: f64, rounds: u64) -> Self {
        self.compose(noise_multiplier, rounds);
        self
    }

    /// The tightest ε over `orders` at `delta` (clamped at 0), and the order it is found at.
    pub fn spent_over(&self, delta: f64, orders: impl IntoIterator<Item = f64>) -> PrivacySpent {
        let mut best = PrivacySpent {
            epsilon: f64::INFINITY,
            delta,
            rounds: self.rounds,
            order: f64::NAN,
        };
        if self.rounds == 0 {
            best.epsilon = 0.0;
            return best;
        }
        for alpha in orders {
            let eps = rdp_to_epsilon(self.rho * alpha, alpha, delta);
            if eps < best.epsilon {
                best.epsilon = eps;
                best.order = alpha;
            }
        }
        best.epsilon = best.epsilon.max(0.0);
        best
    }

    /// The tightest ε over [`orders`] at `delta`.
    pub fn spent(&self, delta: f64) -> PrivacySpent {
        self.spent_over(delta, orders())
    }
}

/// The guarantee of `rounds` rounds at noise multiplier σ: what a peer with
/// `PrivacyConfig { noise_multiplier: σ, delta, .. }` reports after that many noised updates.
pub fn epsilon(noise_multiplier: f64, rounds: u64, delta: f64) -> PrivacySpent {
    Accountant::new()
        .with(noise_multiplier, rounds)
        .spent(delta)
}

/// Clips `update` to L2 norm `clip` and adds N(0, (σ · clip)²) to every coordinate, drawn from
/// `rng` (one standard normal f64 per coordinate, in order). Returns the norm before clipping
/// (summed in f64 in coordinate order, so the result is reproducible bit for bit).
pub fn clip_and_noise(
    update: &mut [f32],
    clip: f64,
    noise_multiplier: f64,
    rng: &mut impl Rng,
) -> f64 {
    let norm = update
        .iter()
        .map(|d| f64::from(*d) * f64::from(*d))
        .sum::<f64>()
        .sqrt();
    let scale = if norm > clip { clip / norm } else { 1.0 };
    let std = noise_multiplier * clip;
    for d in update.iter_mut() {
        let z: f64 = rng.sample(StandardNormal);
        *d = (f64::from(*d) * scale + std * z) as f32;
    }
    norm
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    const DELTA: f64 = 1e-5;

    #[test]
    fn one_order_gives_the_closed_form() {
        // σ = 2, T = 10, α = 3: ε_RDP = 10 · 2 · 3 / 4 = 15, and by hand
        // ε = 15 + ln(2/3) − (ln 1e-5 + ln 3)/2.
        let by_hand = 15.0 + (2.0f64 / 3.0).ln() - ((1e-5f64).ln() + 3.0f64.ln()) / 2.0;
        assert!((by_hand - 19.8017).abs() < 1e-3, "{by_hand}");
        let spent = Accountant::new().with(2.0, 10).spent_over(DELTA, [3.0]);
        assert!((spent.epsilon - by_hand).abs() < 1e-12, "{spent:?}");
        assert_eq!((spent.order, spent.rounds, spent.delta), (3.0, 10, DELTA));
        assert_eq!(gaussian_rdp(2.0, 10, 3.0), 15.0);
    }

    #[test]
    fn the_grid_minimum_beats_every_single_order_and_the_classic_conversion() {
        let acc = Accountant::new().with(4.0, 100);
        let best = acc.spent(DELTA);
        for alpha in [1.5, 2.0, 4.0, 8.0, 16.0, 64.0] {
            let one = acc.spent_over(DELTA, [alpha]).epsilon;
            assert!(best.epsilon <= one + 1e-12, "α={alpha}: {one} < {best:?}");
            // Mironov's conversion ε_RDP + ln(1/δ)/(α − 1) is looser at every order.
            let classic = acc.rho * alpha + (1.0 / DELTA).ln() / (alpha - 1.0);
            assert!(one < classic, "α={alpha}: {one} vs {classic}");
        }
        // ρ = 100 · 2 / 16 = 12.5; the continuous optimum of the classic bound is
        // ρ + 2 √(ρ ln(1/δ)) ≈ 36.5, and the tighter conversion lands a little below it.
        assert!(best.epsilon > 25.0 && best.epsilon < 36.5, "{best:?}");
    }

    #[test]
    fn epsilon_falls_with_noise_and_grows_with_rounds() {
        let mut last = f64::INFINITY;
        for sigma in [1.0, 2.0, 4.0, 8.0, 16.0, 64.0] {
            let e = epsilon(sigma, 200, DELTA).epsilon;
            assert!(e < last, "σ={sigma}: {e} !< {last}");
            last = e;
        }
        let mut last = 0.0;
        for rounds in [1, 2, 10, 100, 1000, 10_000] {
            let e = epsilon(8.0, rounds, DELTA).epsilon;
            assert!(e > last, "T={rounds}: {e} !> {last}");
            last = e;
        }
        // A larger δ buys a smaller ε.
        assert!(epsilon(8.0, 100, 1e-3).epsilon < epsilon(8.0, 100, 1e-7).epsilon);
    }

    #[test]
    fn no_round_spends_nothing_and_mixed_noise_composes_by_adding_rho() {
        let none = Accountant::new().spent(DELTA);
        assert_eq!((none.epsilon, none.rounds), (0.0, 0));
        let mixed = Accountant::new().with(2.0, 10).with(4.0, 20);
        assert_eq!(mixed.rounds, 30);
        assert!((mixed.rho - (10.0 * 2.0 / 4.0 + 20.0 * 2.0 / 16.0)).abs() < 1e-12);
        // Composition is order-free.
        assert_eq!(
            mixed.spent(DELTA),
            Accountant::new().with(4.0, 20).with(2.0, 10).spent(DELTA)
        );
    }

    #[test]
    fn the_bound_is_at_least_the_exact_privacy_of_the_gaussian() {
        // T rounds of sensitivity 2C and std σC are one Gaussian mechanism with μ = 2√T/σ,
        // whose exact δ(ε) is Φ(−ε/μ + μ/2) − e^ε Φ(−ε/μ − μ/2) (Balle and Wang 2018). An
        // RDP bound is an upper bound: at the ε it reports, the exact δ is at most the target.
        // And it is not loose by much here (the exact ε at δ is within 25% of it).
        for (sigma, rounds) in [(1.0, 1), (4.0, 10), (8.0, 100), (32.0, 1000)] {
            let spent = epsilon(sigma, rounds, DELTA);
            let mu = 2.0 * (rounds as f64).sqrt() / sigma;
            let exact_delta =
                |eps: f64| phi(-eps / mu + mu / 2.0) - eps.exp() * phi(-eps / mu - mu / 2.0);
            assert!(
                exact_delta(spent.epsilon) <= DELTA,
                "{sigma} {rounds}: {spent:?}"
            );
            assert!(
                exact_delta(0.75 * spent.epsilon) > DELTA,
                "{sigma} {rounds}: {spent:?} loose"
            );
        }
    }

    /// Standard normal CDF by Simpson's rule on [−40, x] (only used to check the bound).
    fn phi(x: f64) -> f64 {
        if x < -40.0 {
            return 0.0;
        }
        let n = 200_000;
        let (a, h) = (-40.0, (x + 40.0) / n as f64);
        let f = |t: f64| (-t * t / 2.0).exp() / (2.0 * std::f64::consts::PI).sqrt();
        let mut s = f(a) + f(x);
        for i in 1..n {
            s += f(a + i as f64 * h) * if i % 2 == 1 { 4.0 } else { 2.0 };
        }
        s * h / 3.0
    }

    #[test]
    fn validation_names_each_key() {
        let ok = PrivacyConfig {
            clip: 1.0,
            noise_multiplier: 4.0,
            delta: DELTA,
        };
        assert_eq!(ok.validate(), Ok(()));
        for (bad, key) in [
            (PrivacyConfig { clip: 0.0, ..ok }, "privacy.clip"),
            (
                PrivacyConfig {
                    clip: f64::INFINITY,
                    ..ok
                },
                "privacy.clip",
            ),
            (
                PrivacyConfig {
                    noise_multiplier: 0.5,
                    ..ok
                },
                "privacy.noise_multiplier",
            ),
            (
                PrivacyConfig {
                    noise_multiplier: f64::NAN,
                    ..ok
                },
                "privacy.noise_multiplier",
            ),
            (PrivacyConfig { delta: 0.0, ..ok }, "privacy.delta"),
            (PrivacyConfig { delta: 1.0, ..ok }, "privacy.delta"),
        ] {
            let err = bad.validate().unwrap_err().to_string();
            assert!(err.starts_with(key), "{err}");
        }
        // δ has a default; unknown keys are refused.
        let parsed: PrivacyConfig = toml::from_str("clip = 1.0\nnoise_multiplier = 4.0").unwrap();
        assert_eq!(parsed, ok);
        assert!(
            toml::from_str::<PrivacyConfig>("clip = 1.0\nnoise_multiplier = 4\nsigma = 1").is_err()
        );
    }

    #[test]
    fn clipping_bounds_the_update_and_the_noise_has_the_configured_std() {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        // Noise off in effect (σC tiny relative to the check): the norm is clipped to C.
        let mut v = vec![3.0f32, 4.0]; // norm 5
        let norm = clip_and_noise(&mut v, 1.0, 1e-9, &mut rng);
        assert_eq!(norm, 5.0);
        assert!(
            (v[0] - 0.6).abs() < 1e-6 && (v[1] - 0.8).abs() < 1e-6,
            "{v:?}"
        );
        // A short update is not scaled.
        let mut v = vec![0.3f32, 0.4];
        clip_and_noise(&mut v, 1.0, 1e-9, &mut rng);
        assert!(
            (v[0] - 0.3).abs() < 1e-6 && (v[1] - 0.4).abs() < 1e-6,
            "{v:?}"
        );
        // On a zero update the output is pure noise of std σC: sample mean and std.
        let (clip, sigma, n) = (0.5, 3.0, 200_000);
        let mut v = vec![0.0f32; n];
        clip_and_noise(&mut v, clip, sigma, &mut rng);
        let mean = v.iter().map(|&x| f64::from(x)).sum::<f64>() / n as f64;
        let var = v
            .iter()
            .map(|&x| (f64::from(x) - mean).powi(2))
            .sum::<f64>()
            / n as f64;
        assert!(mean.abs() < 0.02, "{mean}");
        assert!(
            (var.sqrt() / (sigma * clip) - 1.0).abs() < 0.01,
            "{}",
            var.sqrt()
        );
        // Same seed, same bits.
        let draw = |seed| {
            let mut v = vec![1.0f32; 64];
            clip_and_noise(&mut v, 2.0, 1.5, &mut ChaCha8Rng::seed_from_u64(seed));
            v
        };
        assert_eq!(draw(3), draw(3));
        assert_ne!(draw(3), draw(4));
    }
}
