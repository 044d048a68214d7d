//! Reaching peers across the internet: which connections are relayed, which relays this node
//! holds a reservation on, and what a relayed connection may carry. The swarm loop
//! ([`crate::net`]) feeds these tables from libp2p's events; the protocols themselves are
//! libp2p's (circuit relay v2, DCUtR, AutoNAT v1, identify).
//!
//! # Why AutoNAT v1
//! libp2p 0.57 has `autonat::v1` and `autonat::v2`. v1 concludes a node-wide
//! public / private / unknown status from peers' dial-backs, which is exactly what the status
//! reports and what decides whether to reserve relay slots; it runs client and server in one
//! behaviour, so every murmur node answers its neighbours' probes. v2 only confirms single
//! addresses (no overall verdict to report or act on) and needs a v2 server among the peers.
//!
//! # What a relayed connection carries
//! Gossip updates (small, compressed) and the dense snapshots that resynchronise a neighbour's
//! copy both pass, counted as relayed bytes: without a snapshot a relayed edge that comes up
//! mid-training could never be mixed. A joiner's model download (a snapshot request that wants
//! the model, or a snapshot carrying one) is refused on a connection that is relayed only,
//! and counted: it is the largest transfer, and the relay carries others' traffic for free.
//!
//! The gossip peer knows which neighbours are relayed only: the swarm loop tells it
//! ([`murmur_gossip::peer::Input::LinkClass`], through the training thread's
//! `Event::LinkClass`) whenever a peer's class changes, a connection opening or closing
//! ([`Connections::class_change`]). A joiner therefore asks a direct neighbour that is ahead of
//! it for its model, never a relayed one; with only relayed neighbours ahead it waits, within
//! its startup deadline, for a direct neighbour or for a hole punch to make a path direct, and
//! then asks at once. The refusal above stays as the policy's enforcement (a class reported
//! late, or a peer that does not follow it).

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use libp2p::core::transport::ListenerId;
use libp2p::multiaddr::Protocol;
use libp2p::swarm::ConnectionId;
use libp2p::{Multiaddr, PeerId};
use murmur_gossip::message::Message;

use crate::status::LinkPath;

/// How long a relay whose reservation failed or ended is left alone before asking again.
const RESERVE_RETRY: Duration = Duration::from_secs(30);

/// The open connections of every peer and whether each is relayed.
#[derive(Debug, Default)]
pub(crate) struct Connections {
    by_peer: HashMap<PeerId, HashMap<ConnectionId, bool>>,
    /// Peers the gossip peer was last told are reached only through a relay.
    reported_relayed: BTreeSet<PeerId>,
}

impl Connections {
    /// A connection to `peer` was established.
    pub(crate) fn opened(&mut self, peer: PeerId, id: ConnectionId, relayed: bool) {
        self.by_peer.entry(peer).or_default().insert(id, relayed);
    }

    /// A connection to `peer` closed.
    pub(crate) fn closed(&mut self, peer: &PeerId, id: ConnectionId) {
        if let Some(conns) = self.by_peer.get_mut(peer) {
            conns.remove(&id);
            if conns.is_empty() {
                self.by_peer.remove(peer);
            }
        }
    }

    /// Direct if any connection to `peer` is direct (frames may take it), relayed if every
    /// one goes through a relay, `None` when there is none.
    pub(crate) fn path(&self, peer: &PeerId) -> Option<LinkPath> {
        let conns = self.by_peer.get(peer)?;
        Some(if conns.values().all(|&relayed| relayed) {
            LinkPath::Relayed
        } else {
            LinkPath::Direct
        })
    }

    /// Whether the only way to `peer` is through a relay.
    pub(crate) fn relayed_only(&self, peer: &PeerId) -> bool {
        self.path(peer) == Some(LinkPath::Relayed)
    }

    /// After a connection to `peer` opened or closed: whether it is relayed only now, when
    /// that differs from what the gossip peer was last told (which this records as told).
    /// A peer with no connection left counts as not relayed, so the gossip peer forgets it.
    pub(crate) fn class_change(&mut self, peer: &PeerId) -> Option<bool> {
        let relayed = self.relayed_only(peer);
        let changed = if relayed {
            self.reported_relayed.insert(*peer)
        } else {
            self.reported_relayed.remove(peer)
        };
        changed.then_some(relayed)
    }
}

/// Whether a gossip message must not cross a relayed-only connection: a joiner's model
/// download, asked for or answered (see the module documentation).
pub(crate) fn refused_over_relay(gossip: &[u8]) -> bool {
    match Message::decode(gossip, usize::MAX) {
        Ok(Message::SnapshotRequest(request)) => request.want_model,
        Ok(Message::Snapshot(snapshot)) => snapshot.model.is_some(),
        Ok(Message::SnapshotManifest(manifest)) => manifest.has_model,
        _ => false,
    }
}

/// The relays this node knows and its reservations on them.
#[derive(Debug)]
pub(crate) struct Relays {
    /// Reserve on at most this many relays.
    max: usize,
    /// Direct addresses this node dialled peers at (a private node reaches a relay only by
    /// dialling it, so this is where to ask it for a slot).
    dialed: HashMap<PeerId, Multiaddr>,
    /// Peers whose identify lists the relay's hop protocol (they serve as relays).
    serving: BTreeSet<PeerId>,
    /// Reservation listeners asked for, by listener.
    listening: HashMap<ListenerId, PeerId>,
    /// Relays that accepted a reservation (the listener is live).
    reserved: BTreeSet<PeerId>,
    /// When a reservation last failed or ended, per relay.
    failed: HashMap<PeerId, Instant>,
}

impl Relays {
    /// No relay known yet; reserve on at most `max`.
    pub(crate) fn new(max: usize) -> Self {
        Relays {
            max,
            dialed: HashMap::new(),
            serving: BTreeSet::new(),
            listening: HashMap::new(),
            reserved: BTreeSet::new(),
            failed: HashMap::new(),
        }
    }

    /// This node reached `peer` directly by dialling `addr`.
    pub(crate) fn dialed(&mut self, peer: PeerId, addr: &Multiaddr) {
        let mut addr = addr.clone();
        if matches!(addr.iter().last(), Some(Protocol::P2p(_))) {
            addr.pop();
        }
        self.dialed.insert(peer, addr);
    }

    /// `peer` serves as a relay.
    pub(crate) fn serves(&mut self, peer: PeerId) {
        self.serving.insert(peer);
    }

    /// The `/p2p-circuit` listen addresses to ask for now (relays known, dialled, without a
    /// reservation or a recent failure, up to the limit).
    pub(crate) fn to_reserve(&self, now: Instant) -> Vec<(PeerId, Multiaddr)> {
        let asked: BTreeSet<&PeerId> = self.listening.values().collect();
        self.serving
            .iter()
            .filter(|relay| !asked.contains(relay))
            .filter(|relay| {
                self.failed
                    .get(relay)
                    .is_none_or(|&at| now.duration_since(at) >= RESERVE_RETRY)
            })
            .filter_map(|relay| {
                let addr = self.dialed.get(relay)?;
                let circuit = addr
                    .clone()
                    .with(Protocol::P2p(*relay))
                    .with(Protocol::P2pCircuit);
                Some((*relay, circuit))
            })
            .take(self.max.saturating_sub(asked.len()))
            .collect()
    }

    /// A reservation listener on `relay` was opened.
    pub(crate) fn asked(&mut self, listener: ListenerId, relay: PeerId) {
        self.listening.insert(listener, relay);
    }

    /// `relay` accepted the reservation.
    pub(crate) fn accepted(&mut self, relay: PeerId) {
        self.reserved.insert(relay);
    }

    /// A listener closed: if it was a reservation, the relay it was on (retried later).
    pub(crate) fn closed(&mut self, listener: ListenerId, now: Instant) -> Option<PeerId> {
        let relay = self.listening.remove(&listener)?;
        self.reserved.remove(&relay);
        self.failed.insert(relay, now);
        Some(relay)
    }

    /// The relays holding a reservation for this node.
    pub(crate) fn reserved(&self) -> Vec<String> {
        self.reserved.iter().map(|p| p.to_string()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use murmur_gossip::message::{Snapshot, SnapshotRequest};

    #[test]
    fn a_peer_is_relayed_only_while_every_connection_is() {
        let mut conns = Connections::default();
        let peer = PeerId::random();
        let (relayed, direct) = (
            ConnectionId::new_unchecked(1),
            ConnectionId::new_unchecked(2),
        );
        assert_eq!(conns.path(&peer), None);
        conns.opened(peer, relayed, true);
        assert!(conns.relayed_only(&peer));
        // A hole punch adds a direct connection: frames may take it.
        conns.opened(peer, direct, false);
        assert_eq!(conns.path(&peer), Some(LinkPath::Direct));
        conns.closed(&peer, relayed);
        assert_eq!(conns.path(&peer), Some(LinkPath::Direct));
        conns.closed(&peer, direct);
        assert_eq!(conns.path(&peer), None);
    }

    #[test]
    fn the_gossip_peer_is_told_each_change_of_class_once() {
        let mut conns = Connections::default();
        let peer = PeerId::random();
        let (relayed, direct) = (
            ConnectionId::new_unchecked(1),
            ConnectionId::new_unchecked(2),
        );
        conns.opened(peer, direct, false);
        assert_eq!(conns.class_change(&peer), None, "direct is the default");
        conns.closed(&peer, direct);
        assert_eq!(conns.class_change(&peer), None);
        conns.opened(peer, relayed, true);
        assert_eq!(conns.class_change(&peer), Some(true));
        assert_eq!(conns.class_change(&peer), None, "told once");
        // The hole punch: a direct connection beside the relayed one.
        conns.opened(peer, direct, false);
        assert_eq!(conns.class_change(&peer), Some(false));
        conns.closed(&peer, direct);
        assert_eq!(conns.class_change(&peer), Some(true));
        // Every connection gone: the gossip peer forgets the relayed mark.
        conns.closed(&peer, relayed);
        assert_eq!(conns.class_change(&peer), Some(false));
        assert_eq!(conns.class_change(&peer), None);
    }

    #[test]
    fn only_a_joiners_model_download_is_refused_over_a_relay() {
        let request = |want_model| {
            Message::SnapshotRequest(SnapshotRequest {
                nonce: 7,
                want_model,
            })
            .encode()
        };
        let snapshot = |model: Option<Vec<f32>>| {
            Message::Snapshot(Snapshot {
                nonce: 7,
                seq: 3,
                round: 9,
                degree: 2,
                x_hat: vec![0.5; 16],
                model,
            })
            .encode()
        };
        assert!(refused_over_relay(&request(true)));
        assert!(refused_over_relay(&snapshot(Some(vec![1.0; 16]))));
        assert!(!refused_over_relay(&request(false)));
        assert!(!refused_over_relay(&snapshot(None)));
        assert!(!refused_over_relay(&Message::Goodbye.encode()));
        // Garbage is the gossip peer's to reject and count, not the relay policy's.
        assert!(!refused_over_relay(&[0xff, 0x01, 0x02]));
    }

    #[test]
    fn reservations_go_to_dialled_relays_up_to_the_limit_and_retry_after_a_failure() {
        let mut relays = Relays::new(1);
        let (a, b) = (PeerId::random(), PeerId::random());
        let addr: Multiaddr = "/ip4/10.0.0.1/tcp/4001".parse().unwrap();
        let now = Instant::now();
        relays.serves(a);
        assert!(relays.to_reserve(now).is_empty(), "no address to reach it");
        relays.dialed(a, &addr.clone().with(Protocol::P2p(a)));
        relays.dialed(b, &addr);
        relays.serves(b);
        let asks = relays.to_reserve(now);
        assert_eq!(asks.len(), 1, "limit of one relay: {asks:?}");
        let (relay, circuit) = asks[0].clone();
        assert_eq!(
            circuit.to_string(),
            format!("{addr}/p2p/{relay}/p2p-circuit")
        );
        let listener = ListenerId::next();
        relays.asked(listener, relay);
        assert!(relays.to_reserve(now).is_empty(), "at the limit");
        relays.accepted(relay);
        assert_eq!(relays.reserved(), vec![relay.to_string()]);
        assert_eq!(relays.closed(listener, now), Some(relay));
        assert!(relays.reserved().is_empty());
        let other = if relay == a { b } else { a };
        assert_eq!(relays.to_reserve(now)[0].0, other, "the other relay first");
        let later = now + RESERVE_RETRY;
        assert_eq!(relays.to_reserve(later).len(), 1);
    }
}
