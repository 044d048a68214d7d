//! Push-sum / SGP: the peer's push-sum weight and the driver's explicit push targets
//! ([`PushSum`]), whom to push to each round, sending the round's shares (and a marker to every
//! neighbour pushed nothing), and mixing shares in on arrival; and compressed push-sum's send
//! (q of the numerator to every neighbour, the shares to the targets) and arrival mix. Mass is
//! conserved exactly: every share counts once, whenever it arrives.

use std::fmt::Debug;
use std::hash::Hash;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use ndarray::Array1;

use super::neighbours::PushShareOf;
use super::{Algorithm, Micros, Peer, PushSchedule, RejectReason, UpdateFigures};
use crate::message::{AlgorithmKind, Message, PushMark, PushShare};

/// A push-sum peer's own state (the per-neighbour part is in the neighbour table).
#[derive(Debug)]
pub(super) struct PushSum<I> {
    /// The push-sum weight ω_i; the model is the de-biased ratio numerator / ω_i. 1 for the
    /// other algorithms; checkpointed.
    pub(super) weight: f64,
    /// Out-neighbours set by [`Input::PushTargets`](super::Input::PushTargets); `None`: the
    /// configured [`PushSchedule`].
    pub(super) targets: Option<Vec<I>>,
}

impl<I> PushSum<I> {
    pub(super) fn new() -> Self {
        PushSum {
            weight: 1.0,
            targets: None,
        }
    }
}

impl<I: Clone + Ord + Debug + Hash> Peer<I> {
    /// This round's push targets: the driver's explicit ones (current neighbours only), or the
    /// configured [`PushSchedule`] over the neighbours.
    fn push_round_targets(&self) -> Vec<I> {
        if let Some(t) = &self.push.targets {
            return t
                .iter()
                .filter(|j| self.neighbours.contains_key(*j))
                .cloned()
                .collect();
        }
        let all: Vec<I> = self.neighbours.keys().cloned().collect();
        if all.is_empty() {
            return all;
        }
        match self.config.push {
            PushSchedule::All => all,
            PushSchedule::OnePeerExponential => {
                let me = murmur_topology::ring_position(&self.id);
                let mut ring: Vec<(u64, I)> = all
                    .into_iter()
                    .map(|j| (murmur_topology::ring_position(&j).wrapping_sub(me), j))
                    .collect();
                ring.sort();
                let at = (self.round % ring.len() as u64) as usize;
                vec![ring.swap_remove(at).1]
            }
            PushSchedule::Random { k } => {
                let mut rng = ChaCha8Rng::seed_from_u64(crate::seed::derive(
                    self.config.seed,
                    crate::seed::stream::PUSH_TARGETS,
                ));
                rng.set_stream(self.round);
                rand::seq::index::sample(&mut rng, all.len(), k.min(all.len()))
                    .into_iter()
                    .map(|i| all[i].clone())
                    .collect()
            }
        }
    }

    /// Sends this round's share to each target (keeping one share of the weight) and a marker
    /// to every other neighbour whose hello arrived.
    pub(super) fn push_send(&mut self) {
        let targets = self.push_round_targets();
        let share = 1.0 / (targets.len() as f64 + 1.0);
        let weight = self.push.weight * share;
        self.push.weight = weight;
        self.last_update_round = self.round;
        let bytes = Message::PushShare(PushShare {
            round: self.round,
            weight,
            values: self.model.to_vec(),
        })
        .encode();
        let others: Vec<I> = self
            .neighbours
            .iter()
            .filter(|(j, nb)| nb.hello_seen && !targets.contains(j))
            .map(|(j, _)| j.clone())
            .collect();
        for j in targets {
            self.stats.push_shares_sent += 1;
            // A share is a dense update: it counts as one, saving nothing over dense.
            self.stats.updates_sent += 1;
            self.stats.update_bytes_sent += bytes.len() as u64;
            self.stats.dense_update_bytes += bytes.len() as u64;
            self.send(j, bytes.clone());
        }
        if !others.is_empty() {
            let mark = Message::PushMark(PushMark { round: self.round }).encode();
            for j in others {
                self.send(j, mark.clone());
            }
        }
    }

    pub(super) fn on_push_mark(
        &mut self,
        now: Micros,
        from: &I,
        m: PushMark,
    ) -> Result<(), RejectReason> {
        if self.kind != AlgorithmKind::PushSum {
            return Err(RejectReason::UnexpectedMessage { what: "push-mark" });
        }
        let nb = self.neighbours.get_mut(from).expect("checked by caller");
        nb.heard(m.round);
        self.check_ready(now);
        Ok(())
    }

    pub(super) fn on_push_share(
        &mut self,
        now: Micros,
        from: &I,
        p: PushShare,
    ) -> Result<(), RejectReason> {
        if self.kind != AlgorithmKind::PushSum {
            return Err(RejectReason::UnexpectedMessage { what: "push-share" });
        }
        self.check_vector(&p.values, "push share")?;
        if !(p.weight.is_finite() && p.weight > 0.0 && p.weight < 1e12) {
            return Err(RejectReason::InvalidField {
                what: "push weight",
            });
        }
        let nb = self.neighbours.get_mut(from).expect("checked by caller");
        if !nb.first_share_of(p.round) {
            self.stats.duplicates_dropped += 1;
            return Ok(());
        }
        nb.heard(p.round);
        // Mixed on arrival: (numerator, weight) += (ω·v, ω), model = numerator / weight. Every
        // share counts exactly once whenever it arrives, so mass is conserved.
        let w = self.push.weight;
        let new_w = w + p.weight;
        for (x, v) in self.model.iter_mut().zip(&p.values) {
            *x = ((f64::from(*x) * w + f64::from(*v) * p.weight) / new_w) as f32;
        }
        self.push.weight = new_w;
        self.check_ready(now);
        Ok(())
    }

    /// Compressed push-sum's γ (1 otherwise; only compressed push-sum reads it).
    pub(super) fn push_gamma(&self) -> f32 {
        match &self.config.algorithm {
            Algorithm::CompressedPushSum { gamma, .. } => *gamma,
            _ => 1.0,
        }
    }

    /// Compressed push-sum: q = Q(z − ẑ) of the numerator z = ω x goes to every neighbour
    /// (ẑ += q), a share a = 1/(targets + 1) to each target; then the peer gives away
    /// γ(1 − a)·(ẑ, ω) of its own: z ← z − γ(1 − a) ẑ, ω ← ω (1 − γ(1 − a)).
    pub(super) fn push_send_compressed(&mut self) {
        let targets = self.push_round_targets();
        let share = 1.0 / (targets.len() as f64 + 1.0);
        let gamma = f64::from(self.push_gamma());
        let w = self.push.weight;
        let v: Vec<f32> = self
            .model
            .iter()
            .zip(&self.x_hat)
            .map(|(x, h)| (f64::from(*x) * w) as f32 - h)
            .collect();
        let q = self.compressor.compress(&v);
        self.last_update = Some(UpdateFigures::measure(self.round, &v, &q));
        q.add_to(&mut self.x_hat, 1.0);
        self.seq += 1;
        self.last_update_round = self.round;
        self.broadcast_update(q.encode(), q.nnz(), &targets, share);
        let given = gamma * (1.0 - share);
        let new_w = w * (1.0 - given);
        for (x, h) in self.model.iter_mut().zip(&self.x_hat) {
            *x = ((f64::from(*x) * w - given * f64::from(*h)) / new_w) as f32;
        }
        self.push.weight = new_w;
    }
}

/// Compressed push-sum on arrival: (z, ω) += γ·a·(ẑ_j, ω_j), x = z / ω, with ẑ_j the copy
/// just brought up to the update that carried the share.
pub(super) fn mix_push_share(
    model: &mut Array1<f32>,
    weight: &mut f64,
    copy: &[f32],
    share: PushShareOf,
    gamma: f32,
) {
    if share.share == 0.0 {
        return;
    }
    let a = f64::from(gamma) * share.share;
    let w = *weight;
    let new_w = w + a * share.weight;
    for (x, c) in model.iter_mut().zip(copy) {
        *x = ((f64::from(*x) * w + a * f64::from(*c)) / new_w) as f32;
    }
    *weight = new_w;
}
