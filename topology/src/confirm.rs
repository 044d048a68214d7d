//! The handshake that lets an edge carry gossip only once both ends chose it.
//!
//! Peers with equal views compute the same graph, but views differ for a while after a join or
//! a departure. Each peer therefore tells every peer it chooses "I choose you" (and "I no
//! longer choose you" when it drops it). [`EdgeConfirmation`] keeps, per remote peer, whether
//! *I* chose it and whether *it* told me it chose me; the edge is active — weights count it,
//! gossip flows on it — exactly when both hold. The returned [`EdgeChange`]s map one to one
//! onto the peer's `NeighbourUp` / `NeighbourDown` inputs.

use std::collections::BTreeSet;

/// Where an edge to one remote peer stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EdgeState {
    /// I chose it; it has not (yet) confirmed choosing me.
    Proposed,
    /// It chose me; I do not choose it (its view differs from mine).
    Offered,
    /// Both ends chose the edge: it carries gossip.
    Confirmed,
}

/// An edge starting or stopping to carry gossip.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EdgeChange<K> {
    /// Both ends now agree: start gossiping with this peer.
    Up(K),
    /// The edge lost one end's choice: stop gossiping with this peer.
    Down(K),
}

/// Per-peer confirmation state of the edges of one peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EdgeConfirmation<K> {
    mine: BTreeSet<K>,
    theirs: BTreeSet<K>,
}

impl<K: Ord + Clone> Default for EdgeConfirmation<K> {
    fn default() -> Self {
        Self::new()
    }
}

impl<K: Ord + Clone> EdgeConfirmation<K> {
    /// No choices on either side.
    pub fn new() -> Self {
        EdgeConfirmation {
            mine: BTreeSet::new(),
            theirs: BTreeSet::new(),
        }
    }

    /// My newly computed neighbour set (e.g. from [`crate::NeighbourRule::neighbours`]).
    /// Returns the edges that came up or went down; announce the new choice to everyone in
    /// `added ∪ removed` (see [`EdgeConfirmation::announcements`]).
    pub fn set_chosen(&mut self, chosen: BTreeSet<K>) -> Vec<EdgeChange<K>> {
        let before = self.active();
        self.mine = chosen;
        self.diff(before)
    }

    /// A remote peer told me whether it chooses me.
    pub fn peer_announced(&mut self, peer: K, chooses_me: bool) -> Option<EdgeChange<K>> {
        let was = self.is_active(&peer);
        if chooses_me {
            self.theirs.insert(peer.clone());
        } else {
            self.theirs.remove(&peer);
        }
        let is = self.is_active(&peer);
        match (was, is) {
            (false, true) => Some(EdgeChange::Up(peer)),
            (true, false) => Some(EdgeChange::Down(peer)),
            _ => None,
        }
    }

    /// A peer disconnected or left: forget both directions of its edge.
    pub fn peer_gone(&mut self, peer: &K) -> Option<EdgeChange<K>> {
        let was = self.is_active(peer);
        self.theirs.remove(peer);
        self.mine.remove(peer);
        was.then(|| EdgeChange::Down(peer.clone()))
    }

    /// State of the edge to `peer`, `None` when neither side chose it.
    pub fn state(&self, peer: &K) -> Option<EdgeState> {
        match (self.mine.contains(peer), self.theirs.contains(peer)) {
            (true, true) => Some(EdgeState::Confirmed),
            (true, false) => Some(EdgeState::Proposed),
            (false, true) => Some(EdgeState::Offered),
            (false, false) => None,
        }
    }

    /// Whether gossip may flow to `peer`.
    pub fn is_active(&self, peer: &K) -> bool {
        self.mine.contains(peer) && self.theirs.contains(peer)
    }

    /// Peers on confirmed edges.
    pub fn active(&self) -> BTreeSet<K> {
        self.mine.intersection(&self.theirs).cloned().collect()
    }

    /// Peers I chose.
    pub fn chosen(&self) -> &BTreeSet<K> {
        &self.mine
    }

    /// What to tell whom after a change of choice from `previous`: `(peer, chooses_it)` for
    /// every peer whose membership in my choice changed.
    pub fn announcements(&self, previous: &BTreeSet<K>) -> Vec<(K, bool)> {
        let added = self.mine.difference(previous).map(|k| (k.clone(), true));
        let removed = previous.difference(&self.mine).map(|k| (k.clone(), false));
        added.chain(removed).collect()
    }

    fn diff(&self, before: BTreeSet<K>) -> Vec<EdgeChange<K>> {
        let after = self.active();
        let up = after.difference(&before).cloned().map(EdgeChange::Up);
        let down = before.difference(&after).cloned().map(EdgeChange::Down);
        down.chain(up).collect()
    }
}
