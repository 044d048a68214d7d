//! A round: asking for compute, the H local steps, sending the update (or, push-sum, the
//! shares), waiting for the neighbours' updates of the round (round-tagged mode), the mix and
//! completing the round, with the privacy of the local update (clip and noise, right after the
//! steps). This owns the round cycle of [`Phase`] (`WantsCompute` → `Mixing` →
//! `WantsCompute`) with the compute request, the round's loss, and the loss banked when the
//! next round's steps overlap this round's wait.

use std::collections::BTreeSet;
use std::fmt::Debug;
use std::hash::Hash;

use super::timers::TimerPurpose;
use super::{
    Algorithm, Micros, Mode, Output, Peer, Phase, UpdateFigures, all_finite, metropolis_weight,
};
use crate::message::{AlgorithmKind, Message, PushUpdate, Update};
use crate::privacy::{PrivacyConfig, clip_and_noise};
use murmur_compress as compress;

impl<I: Clone + Ord + Debug + Hash> Peer<I> {
    /// Emits [`Output::WantCompute`] unless one is outstanding.
    pub(super) fn request_compute(&mut self) {
        if !self.compute_requested {
            self.compute_requested = true;
            self.out.push(Output::WantCompute);
        }
    }

    /// Whether the next round's local steps may run while this round's gossip is in flight.
    fn overlaps(&self) -> bool {
        self.config.overlap_compute
            && matches!(self.config.mode, Mode::RoundTagged { .. })
            && !self.kind.pushes()
    }

    /// A compute slot: this round's local steps (or, overlapping, the next round's), then this
    /// round's update.
    pub(super) fn on_compute(&mut self, now: Micros) {
        let early = matches!(self.phase, Phase::Mixing { .. });
        let allowed = matches!(self.phase, Phase::WantsCompute)
            || (early && self.overlaps() && self.banked_loss.is_none());
        if !self.compute_requested || !allowed {
            return;
        }
        self.compute_requested = false;
        let loss = self.local_steps();
        if early {
            // Overlap: the next round's steps are done; its update goes out when this round's
            // mix is in.
            self.banked_loss = Some(loss);
            return;
        }
        self.round_loss = loss;
        self.send_and_wait(now);
    }

    /// Sends this round's update and waits for the neighbours' (asynchronous CHOCO / D-PSGD:
    /// only for those too far behind).
    fn send_and_wait(&mut self, now: Micros) {
        match self.kind {
            AlgorithmKind::Choco | AlgorithmKind::Dpsgd => self.send_update(),
            AlgorithmKind::PushSum => self.push_send(),
            AlgorithmKind::CompressedPushSum => self.push_send_compressed(),
        }
        let timeout = match self.config.mode {
            Mode::RoundTagged { timeout } | Mode::Async { timeout, .. } => timeout,
        };
        self.wait_for_round(now, timeout);
    }

    /// How many rounds a neighbour's update may lag this peer's before the round waits for it:
    /// 0 round-tagged, `max_staleness` asynchronous.
    fn slack(&self) -> u64 {
        match self.config.mode {
            Mode::RoundTagged { .. } => 0,
            Mode::Async { max_staleness, .. } => max_staleness,
        }
    }

    /// Waits for an update of this round (push-sum: this round's share or marker) from every
    /// neighbour whose hello arrived, bounded by `timeout`; with overlap, the next round's local
    /// steps run meanwhile. Asynchronous: waits only while more than half of them are over
    /// `max_staleness` rounds behind.
    fn wait_for_round(&mut self, now: Micros, timeout: Micros) {
        let waiting: BTreeSet<I> = self
            .neighbours
            .iter()
            .filter(|(_, nb)| nb.hello_seen)
            .map(|(j, _)| j.clone())
            .collect();
        let may_lag = match self.config.mode {
            Mode::RoundTagged { .. } => 0,
            Mode::Async { .. } => waiting.len() / 2,
        };
        self.phase = Phase::Mixing {
            round: self.round,
            waiting,
            may_lag,
        };
        self.schedule(now + timeout, TimerPurpose::RoundDeadline(self.round));
        if self.overlaps() {
            self.request_compute();
        }
        self.check_ready(now);
    }

    /// Runs the H local steps on x and returns their mean loss (NaN when H = 0 or when the
    /// steps diverged and were undone). With privacy on, the update is clipped and noised here,
    /// before this call returns: x' never leaves this function (see [`crate::privacy`]).
    /// With `outer` on, the DiLoCo outer step then replaces x by a momentum step from the
    /// round's starting model along the (privatized) local movement (see `outer.rs`).
    fn local_steps(&mut self) -> f32 {
        let h = self.config.local_steps;
        if h == 0 {
            return f32::NAN;
        }
        // Reused between rounds: a fresh model-sized vector per round costs its page faults
        // every time (6% of a round at 10M parameters).
        let mut backup = std::mem::take(&mut self.scratch.before_steps);
        backup.clear();
        backup.extend_from_slice(self.model.as_slice().expect("model is contiguous"));
        let params = self.model.as_slice_mut().expect("model is contiguous");
        let mut total = 0.0f64;
        for _ in 0..h {
            total += f64::from(self.learner.step(params));
        }
        self.steps_taken += u64::from(h);
        self.stats.local_steps += u64::from(h);
        let finite = all_finite(params);
        let loss = if finite {
            (total / f64::from(h)) as f32
        } else {
            // Divergence must not reach the neighbours: undo this round's steps.
            self.stats.diverged_rounds += 1;
            f32::NAN
        };
        match self.config.privacy {
            Some(privacy) => {
                self.privatize(&backup, finite, privacy);
                // Post-processing of the noised update: the outer step sees only it.
                self.apply_outer(&backup);
            }
            None if !finite => self
                .model
                .as_slice_mut()
                .expect("model is contiguous")
                .copy_from_slice(&backup),
            None => self.apply_outer(&backup),
        }
        self.scratch.before_steps = backup;
        loss
    }

    /// x ← x_before + clip(Δ) + noise, Δ = x − x_before (0 when the steps diverged: a round
    /// still releases a noised update whatever happened, so that a divergence is not itself
    /// an unnoised signal).
    fn privatize(&mut self, before: &[f32], finite: bool, privacy: PrivacyConfig) {
        let mut delta: Vec<f32> = if finite {
            self.model.iter().zip(before).map(|(x, b)| x - b).collect()
        } else {
            vec![0.0; self.dim]
        };
        let norm = clip_and_noise(
            &mut delta,
            privacy.clip,
            privacy.noise_multiplier,
            &mut self.rng,
        );
        if norm > privacy.clip {
            self.stats.privacy_clipped += 1;
        }
        for ((x, b), d) in self.model.iter_mut().zip(before).zip(&delta) {
            *x = b + d;
        }
        self.stats.private_rounds += 1;
        if !all_finite(self.model.as_slice().expect("model is contiguous")) {
            // Only a clip so large that σ · clip overflows f32 gets here; the noised update
            // is then dropped (its release counted all the same).
            self.model
                .as_slice_mut()
                .expect("model is contiguous")
                .copy_from_slice(before);
            self.stats.diverged_rounds += 1;
        }
    }

    /// CHOCO: q = Q(x − x̂), x̂ += q; D-PSGD: the (compressed) model, x̂ = it. Either way q
    /// goes to every neighbour.
    fn send_update(&mut self) {
        let mut v = std::mem::take(&mut self.scratch.update_input);
        v.clear();
        match self.kind {
            AlgorithmKind::Choco => {
                v.extend(self.model.iter().zip(&self.x_hat).map(|(x, h)| x - h))
            }
            _ => v.extend(self.model.iter()),
        }
        let q = self.compressor.compress(&v);
        self.last_update = Some(UpdateFigures::measure(self.round, &v, &q));
        self.scratch.update_input = v;
        match self.kind {
            AlgorithmKind::Choco => q.add_to(&mut self.x_hat, 1.0),
            // D-PSGD: neighbours hold exactly what was sent.
            _ => self.x_hat = q.to_dense(),
        }
        self.seq += 1;
        self.last_update_round = self.round;
        self.broadcast_update(q.encode(), q.nnz(), &[], 0.0);
    }

    /// Sends update number `seq` (the codec frame `frame`, `nnz` entries) to every neighbour.
    /// Compressed push-sum: as a [`PushUpdate`] with this peer's weight, giving share `share` to
    /// each of `targets` and 0 to the others.
    pub(super) fn broadcast_update(
        &mut self,
        frame: Vec<u8>,
        nnz: usize,
        targets: &[I],
        share: f64,
    ) {
        let update = Update {
            seq: self.seq,
            round: self.last_update_round,
            degree: self.neighbours.len() as u32,
            frame,
        };
        let pushes = self.kind == AlgorithmKind::CompressedPushSum;
        let weight = self.push.weight;
        let encode = |share: f64| {
            Message::PushUpdate(PushUpdate {
                update: update.clone(),
                weight,
                share,
            })
            .encode()
        };
        let (to_targets, to_others) = if pushes {
            (encode(share), encode(0.0))
        } else {
            let bytes = Message::Update(update.clone()).encode();
            (bytes.clone(), bytes)
        };
        let entropy_bits =
            compress::entropy_bound_bits_per_entry(nnz, self.dim).map_or(0.0, |b| b * nnz as f64);
        let ids: Vec<I> = self.neighbours.keys().cloned().collect();
        for j in ids {
            let bytes = if targets.contains(&j) {
                self.stats.push_shares_sent += 1;
                to_targets.clone()
            } else {
                to_others.clone()
            };
            self.stats.updates_sent += 1;
            self.stats.update_bytes_sent += bytes.len() as u64;
            self.stats.dense_update_bytes += self.dense_update_len as u64;
            self.stats.update_entries_sent += nnz as u64;
            if let Some(link) = self.neighbours.get_mut(&j).map(|nb| &mut nb.link) {
                link.updates_sent += 1;
                link.update_bytes_sent += bytes.len() as u64;
                link.update_entries_sent += nnz as u64;
                link.update_entropy_bits += entropy_bits;
            }
            self.send(j, bytes);
        }
    }

    /// Ends the round being mixed once nothing it waits for is missing.
    pub(super) fn check_ready(&mut self, now: Micros) {
        let slack = self.slack();
        let Phase::Mixing {
            round,
            waiting,
            may_lag,
        } = &mut self.phase
        else {
            return;
        };
        let round = *round;
        let neighbours = &self.neighbours;
        // Push-sum holds no copies: only the round's share or marker is waited for.
        let copies = self.kind != AlgorithmKind::PushSum;
        // Wait for this round's update of every neighbour waited for, and for the snapshot of
        // any of them being resynchronised.
        waiting.retain(|j| {
            neighbours.get(j).is_some_and(|nb| {
                (copies && nb.copy.is_none()) || lags(nb.heard_round, round, slack)
            })
        });
        if waiting.len() <= *may_lag {
            self.finish_mixing(now);
        }
    }

    /// The round's gossip is in (or its deadline passed): mix and complete. Push-sum mixed its
    /// shares on arrival, so it only completes.
    pub(super) fn finish_mixing(&mut self, now: Micros) {
        if self.kind.pushes() {
            self.complete_round(now);
        } else {
            self.mix_and_complete(now);
        }
    }

    /// x += γ Σ_j w_ij f_j clip(c_j − x̂), in neighbour-id order (fixed reduction order).
    fn mix_and_complete(&mut self, now: Micros) {
        if self.aggregate.is_some() {
            self.mix_aggregate(now);
            self.complete_round(now);
            return;
        }
        // Both mix around x̂, what was sent: for D-PSGD x̂ is the sent model, so with the next
        // round's steps already taken (overlap) x = Σ_j w_ij x_j + those steps, instead of a
        // mix of the stepped x that would keep only w_ii of them.
        let gamma = match &self.config.algorithm {
            Algorithm::Choco { gamma, .. } => *gamma,
            _ => 1.0,
        };
        let base = self.x_hat.clone();
        let my_degree = self.neighbours.len();
        let mut acc = vec![0.0f32; self.dim];
        let mut diff = vec![0.0f32; self.dim];
        let mut any = false;
        for nb in self.neighbours.values_mut() {
            let (Some(copy), Some(heard)) = (&nb.copy, nb.heard_round) else {
                continue;
            };
            let staleness = self.round.saturating_sub(heard);
            let mut factor = 1.0f64;
            if let Mode::Async {
                max_staleness,
                damping,
                ..
            } = self.config.mode
            {
                if staleness > max_staleness {
                    self.stats.stale_dropped += 1;
                    nb.link.stale_dropped += 1;
                    continue;
                }
                if staleness > 0 && damping < 1.0 {
                    factor = f64::from(damping).powi(staleness.min(i32::MAX as u64) as i32);
                    self.stats.damped_contributions += 1;
                    nb.link.damped_contributions += 1;
                }
            }
            nb.link.last_staleness = Some(staleness);
            for ((d, c), b) in diff.iter_mut().zip(copy).zip(&base) {
                *d = c - b;
            }
            let mut scale = 1.0f64;
            if let Some(radius) = self.config.clip_radius {
                let norm = diff
                    .iter()
                    .map(|d| f64::from(*d) * f64::from(*d))
                    .sum::<f64>()
                    .sqrt();
                if norm > f64::from(radius) {
                    scale = f64::from(radius) / norm;
                    self.stats.clipped_contributions += 1;
                    nb.link.clipped_contributions += 1;
                }
            }
            let w = (metropolis_weight(my_degree, nb.degree) * factor * scale) as f32;
            for (a, d) in acc.iter_mut().zip(&diff) {
                *a += w * d;
            }
            any = true;
        }
        if any {
            for (x, a) in self.model.iter_mut().zip(&acc) {
                *x += gamma * a;
            }
        }
        self.complete_round(now);
    }

    /// Reports the round, a due checkpoint, and starts the next round: at once with banked
    /// overlapped steps, else by asking for compute.
    fn complete_round(&mut self, now: Micros) {
        let round = self.round;
        self.round += 1;
        self.stats.rounds += 1;
        self.out.push(Output::RoundCompleted {
            round,
            loss: self.round_loss,
        });
        if self.config.checkpoint_every > 0
            && self.round.is_multiple_of(self.config.checkpoint_every)
        {
            self.out.push(Output::CheckpointDue { round: self.round });
        }
        if let Some(loss) = self.banked_loss.take() {
            self.round_loss = loss;
            self.send_and_wait(now);
        } else {
            self.phase = Phase::WantsCompute;
            self.request_compute();
        }
    }
}

/// Whether a neighbour last heard in round `heard` (never: `None`) is more than `slack` rounds
/// behind `round`, so that round waits for it.
fn lags(heard: Option<u64>, round: u64, slack: u64) -> bool {
    round
        .checked_sub(slack)
        .is_some_and(|need| heard.is_none_or(|h| h < need))
}
