//! Edge agreement: which peers this node gossips with, agreed by both ends of every edge and
//! kept agreed through lost frames, duplicate connections and restarts.
//!
//! Peers with equal views compute the same graph ([`crate::NeighbourRule`]), but views differ
//! for a while after a join or a departure, and on a real network the frames that announce a
//! choice can be lost: two peers that dial each other at the same moment get two connections,
//! one of which is closed by the transport with frames still on it. An edge carries gossip
//! only when both ends know that both chose it, so a lost announcement must be repaired, or
//! one end gossips into an edge the other end refuses — for good.
//!
//! [`EdgeAgreement`] is the sans-IO state machine that owns the whole decision: the peers this
//! node knows, those it is connected to, those it chose by the rule, what each told it, which
//! are excluded or backed off after a failed dial. The driver (the daemon's event loop, or the
//! simulator) feeds it what happened (`discovered`, `connected`, `on_select`, `on_gossip`,
//! `tick`, ...) with the current time and carries out the [`AgreementAction`]s it queues
//! (send a [`Select`], report an edge up or down, disconnect). It reads no clock and opens no
//! socket.
//!
//! # The handshake
//! Each node versions its choice of each peer: a counter bumped whenever it starts or stops
//! choosing that peer, under an *incarnation* number fixed at start-up (so a restarted node's
//! counters never look older than its previous life's). A [`Select`] carries the sender's
//! current choice and version, the latest version of the receiver's choice the sender has
//! seen (its acknowledgement), and whether it asks for an answer (`query`). The rules:
//! - a choice that changes is sent at once, as a query;
//! - a query is always answered with the receiver's own state; any frame that shows the
//!   sender has not seen the receiver's latest version is answered too, as a query;
//! - a node whose latest version the other end has not acknowledged repeats it, as a query,
//!   every `resend` interval while the peer is connected (or chosen: sending dials);
//! - a gossip frame from a peer whose edge is not up shows the peer believes otherwise: it is
//!   held if the edge is pending (this node chose the peer) or refused otherwise, and either
//!   way the node sends its state (at most once per `resend`).
//!
//! Versions make the state idempotent and order-free (an older frame never overwrites a newer
//! one), acknowledgements make every loss visible to the side that needs to repeat, and no
//! frame is sent in a quiet, agreed swarm. Once the network is quiet and connections are
//! stable, every edge ends up agreed by both ends or by neither (the property test in
//! `sim/tests/links.rs` drives this component through dial races, dropped frames and dropped
//! connections, deterministically, at scale).
//!
//! The edge is up exactly when it is connected, this node chooses the peer and the peer's
//! latest `Select` says it chooses this node.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::hash::Hash;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::NeighbourRule;

/// A version of one node's choice of one peer: the node's incarnation, then a counter.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Version {
    /// Fixed for a node's process life (e.g. a random number or the start time).
    pub incarnation: u64,
    /// Bumped on every change of the choice (0: never chosen).
    pub counter: u64,
}

/// "I (do not) choose you", the frame of the handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Select {
    /// The sender chooses the receiver as a neighbour.
    pub chooses: bool,
    /// Version of that choice.
    pub version: Version,
    /// The latest version of the receiver's choice of the sender that the sender has seen
    /// (`Version::default()` for none).
    pub acked: Version,
    /// The sender wants an answer (it has not seen an acknowledgement of `version`).
    pub query: bool,
}

/// What the driver must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AgreementAction<K> {
    /// Send this `Select` to the peer (dialling if there is no connection).
    Send(K, Select),
    /// The edge is agreed and connected: start gossiping with this peer.
    Up(K),
    /// The edge is no longer agreed or connected: stop gossiping with this peer.
    Down(K),
    /// Close every connection to this peer (it was excluded).
    Disconnect(K),
}

/// What to do with a gossip frame from a peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GossipVerdict {
    /// The edge is up: hand the frame to the gossip peer.
    Deliver,
    /// The edge is pending (this node chose the peer, the agreement is under way): keep the
    /// frame until the edge comes up (bounded by the driver).
    Hold,
    /// The peer is not a neighbour: refuse the frame.
    Reject,
}

/// Timing of the agreement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AgreementConfig {
    /// How often an unacknowledged choice is repeated (and the least time between two
    /// answers to gossip from a peer whose edge is not up).
    pub resend: Duration,
    /// How long a peer that could not be dialled is left out of the view (it is taken back at
    /// once if it connects or selects this node).
    pub failed_backoff: Duration,
    /// How long an excluded (misbehaving) peer stays out of the view.
    pub excluded_for: Duration,
}

impl Default for AgreementConfig {
    /// Repeat every second; 10 s back-off after a failed dial; 10 min exclusion.
    fn default() -> Self {
        AgreementConfig {
            resend: Duration::from_secs(1),
            failed_backoff: Duration::from_secs(10),
            excluded_for: Duration::from_secs(600),
        }
    }
}

/// What this node knows about the link to one peer.
#[derive(Debug, Clone, Default)]
struct Link {
    /// At least one connection to the peer is open.
    connected: bool,
    /// Version of this node's current choice of the peer (counter 0: never chosen).
    mine: Version,
    /// The peer's latest `Select` says it chooses this node.
    theirs: bool,
    /// Version of the peer's latest `Select` seen (`None`: nothing heard on this connection).
    their_version: Option<Version>,
    /// Highest version of this node's choice the peer acknowledged.
    acked_by_them: Version,
    /// When this node last sent the peer a `Select`.
    last_sent: Option<Duration>,
    /// The edge was reported up.
    up: bool,
}

impl Link {
    /// This node chose (or unchose) the peer and the peer has not acknowledged that version.
    fn unacked(&self) -> bool {
        self.mine.counter > 0 && self.acked_by_them < self.mine
    }
}

/// The agreed neighbour set of one node, as a sans-IO state machine (see the module doc).
#[derive(Debug, Clone)]
pub struct EdgeAgreement<K> {
    /// This node.
    me: K,
    /// How neighbours are chosen from the view.
    rule: NeighbourRule,
    /// Timing.
    config: AgreementConfig,
    /// This process life's incarnation number (see [`Version`]).
    incarnation: u64,
    /// Last counter handed out (one counter for every peer keeps versions unique).
    counter: u64,
    /// Murmur peers in the view (neither backed off nor excluded), without `me`.
    known: BTreeSet<K>,
    /// The rule's choice over `known`.
    chosen: BTreeSet<K>,
    /// Per-peer link state; a peer never heard of, chosen or connected has no entry.
    links: BTreeMap<K, Link>,
    /// Peers whose dial failed, with the time their back-off ends.
    failed: BTreeMap<K, Duration>,
    /// Excluded peers, with the time their exclusion ends.
    excluded: BTreeMap<K, Duration>,
    /// Actions for the driver, oldest first.
    actions: VecDeque<AgreementAction<K>>,
}

impl<K: Ord + Clone + Hash> EdgeAgreement<K> {
    /// A node `me` choosing by `rule`, in its process life `incarnation` (a restarted node
    /// must use a different one, e.g. a random number).
    pub fn new(me: K, rule: NeighbourRule, incarnation: u64, config: AgreementConfig) -> Self {
        EdgeAgreement {
            me,
            rule,
            config,
            incarnation,
            counter: 0,
            known: BTreeSet::new(),
            chosen: BTreeSet::new(),
            links: BTreeMap::new(),
            failed: BTreeMap::new(),
            excluded: BTreeMap::new(),
            actions: VecDeque::new(),
        }
    }

    /// The next action for the driver.
    pub fn poll(&mut self) -> Option<AgreementAction<K>> {
        self.actions.pop_front()
    }

    /// Murmur peers in the view.
    pub fn known(&self) -> &BTreeSet<K> {
        &self.known
    }

    /// Peers this node chooses by the rule.
    pub fn chosen(&self) -> &BTreeSet<K> {
        &self.chosen
    }

    /// Peers on edges that are up.
    pub fn up(&self) -> BTreeSet<K> {
        self.links
            .iter()
            .filter(|(_, l)| l.up)
            .map(|(k, _)| k.clone())
            .collect()
    }

    /// Whether gossip flows to and from `peer`.
    pub fn is_up(&self, peer: &K) -> bool {
        self.links.get(peer).is_some_and(|l| l.up)
    }

    /// Peers with at least one open connection.
    pub fn connected_count(&self) -> usize {
        self.links.values().filter(|l| l.connected).count()
    }

    /// Whether `peer` is excluded at `now`.
    pub fn is_excluded(&self, peer: &K, now: Duration) -> bool {
        self.excluded.get(peer).is_some_and(|&until| now < until)
    }

    /// A murmur peer was found (discovery, identify, a `Select`). Ignored for `me`, a peer
    /// backed off after a failed dial, or an excluded one.
    pub fn discovered(&mut self, peer: K, now: Duration) {
        if peer == self.me
            || self.failed.get(&peer).is_some_and(|&until| now < until)
            || self.is_excluded(&peer, now)
        {
            return;
        }
        if self.known.insert(peer) {
            self.refresh(now);
        }
    }

    /// Takes a peer out of the view (it is gone, or stopped answering).
    pub fn forget(&mut self, peer: &K, now: Duration) {
        if self.known.remove(peer) {
            self.refresh(now);
        }
    }

    /// The first connection to `peer` opened. The state is (re)announced if there is one to
    /// announce, because the other end may have restarted and forgotten it.
    pub fn connected(&mut self, peer: K, now: Duration) {
        self.failed.remove(&peer);
        let link = self.link_mut(&peer);
        link.connected = true;
        if link.mine.counter > 0 {
            self.send_state(&peer, true, now);
        }
        self.update_up();
    }

    /// The last connection to `peer` closed; `forget` also takes it out of the view (a crash
    /// or a reset, as opposed to an idle close). What the peer told this node is dropped: it
    /// may come back as a new process.
    pub fn disconnected(&mut self, peer: &K, forget: bool, now: Duration) {
        if let Some(link) = self.links.get_mut(peer) {
            link.connected = false;
            link.theirs = false;
            link.their_version = None;
            link.acked_by_them = Version::default();
        }
        if forget && self.known.remove(peer) {
            self.refresh(now);
        } else {
            self.update_up();
        }
        if self.chosen.contains(peer) {
            // Still a neighbour by the rule: reconnect (sending dials; a failed dial forgets it).
            self.send_state(peer, true, now);
        }
    }

    /// A dial to `peer` failed: unless a connection exists, it leaves the view for the
    /// back-off time.
    pub fn dial_failed(&mut self, peer: &K, now: Duration) {
        if !self.links.get(peer).is_some_and(|l| l.connected) {
            self.unreachable(peer, now);
        }
    }

    /// `peer` stopped answering on a connection that is being closed: it leaves the view for
    /// the back-off time (it is taken back at once if it connects or selects this node).
    pub fn unreachable(&mut self, peer: &K, now: Duration) {
        self.failed
            .insert(peer.clone(), now + self.config.failed_backoff);
        self.forget(peer, now);
    }

    /// `peer` misbehaved: it leaves the view, its edge goes down, its connections are closed
    /// and rediscovery does not bring it back for `excluded_for`.
    pub fn exclude(&mut self, peer: &K, now: Duration) {
        self.excluded
            .insert(peer.clone(), now + self.config.excluded_for);
        if let Some(link) = self.links.get_mut(peer) {
            link.theirs = false;
        }
        self.forget(peer, now);
        self.update_up();
        self.actions
            .push_back(AgreementAction::Disconnect(peer.clone()));
    }

    /// A `Select` arrived from `peer`.
    pub fn on_select(&mut self, peer: K, select: Select, now: Duration) {
        if self.is_excluded(&peer, now) || peer == self.me {
            return;
        }
        if select.chooses && !self.known.contains(&peer) {
            // A peer that selects this node is a murmur peer it may not have found yet.
            self.failed.remove(&peer);
            self.discovered(peer.clone(), now);
        }
        let incarnation = self.incarnation;
        let link = self.link_mut(&peer);
        let newer = match link.their_version {
            None => true,
            Some(v) => v.incarnation != select.version.incarnation || select.version > v,
        };
        if newer {
            link.their_version = Some(select.version);
            link.theirs = select.chooses;
        }
        if select.acked.incarnation == incarnation && select.acked > link.acked_by_them {
            link.acked_by_them = select.acked;
        }
        let they_lack_mine = link.unacked();
        if select.query || they_lack_mine {
            self.send_state(&peer, they_lack_mine, now);
        }
        self.update_up();
    }

    /// A gossip frame arrived from `peer`: what to do with it. A frame on an edge that is not
    /// up means the peer believes it is: this node answers with its state (rate-limited).
    pub fn on_gossip(&mut self, peer: &K, now: Duration) -> GossipVerdict {
        if self.is_up(peer) {
            return GossipVerdict::Deliver;
        }
        let due = self.links.get(peer).is_none_or(|l| {
            l.last_sent
                .is_none_or(|at| now.saturating_sub(at) >= self.config.resend)
        });
        let pending = self.chosen.contains(peer);
        if due && !self.is_excluded(peer, now) {
            self.send_state(peer, true, now);
        }
        if pending {
            GossipVerdict::Hold
        } else {
            GossipVerdict::Reject
        }
    }

    /// Periodic work: ends back-offs and exclusions that ran out, and repeats every choice the
    /// other end has not acknowledged (connected or chosen peers) once per `resend`.
    pub fn tick(&mut self, now: Duration) {
        self.failed.retain(|_, until| now < *until);
        self.excluded.retain(|_, until| now < *until);
        let resend = self.config.resend;
        let due: Vec<K> = self
            .links
            .iter()
            .filter(|(k, l)| {
                (l.connected || self.chosen.contains(*k))
                    && l.unacked()
                    && l.last_sent
                        .is_none_or(|at| now.saturating_sub(at) >= resend)
            })
            .map(|(k, _)| k.clone())
            .collect();
        for peer in due {
            self.send_state(&peer, true, now);
        }
    }

    /// Recomputes the rule's choice over the view, versions and announces every change.
    fn refresh(&mut self, now: Duration) {
        let chosen = self.rule.neighbours(&self.me, &self.known);
        let added: Vec<K> = chosen.difference(&self.chosen).cloned().collect();
        let removed: Vec<K> = self.chosen.difference(&chosen).cloned().collect();
        self.chosen = chosen;
        for peer in added.iter().chain(&removed) {
            self.counter += 1;
            let version = Version {
                incarnation: self.incarnation,
                counter: self.counter,
            };
            self.link_mut(peer).mine = version;
        }
        for peer in &added {
            self.send_state(peer, true, now);
        }
        for peer in &removed {
            // Tell a connected peer; dialling one just to say "no" is not worth it.
            if self.links.get(peer).is_some_and(|l| l.connected) {
                self.send_state(peer, true, now);
            }
        }
        self.update_up();
    }

    /// The link to `peer`, created empty (never chosen, in this incarnation) if there is none.
    fn link_mut(&mut self, peer: &K) -> &mut Link {
        let incarnation = self.incarnation;
        self.links.entry(peer.clone()).or_insert_with(|| Link {
            mine: Version {
                incarnation,
                counter: 0,
            },
            ..Link::default()
        })
    }

    /// Queues this node's state for `peer`.
    fn send_state(&mut self, peer: &K, query: bool, now: Duration) {
        let chooses = self.chosen.contains(peer);
        let link = self.link_mut(peer);
        link.last_sent = Some(now);
        let select = Select {
            chooses,
            version: link.mine,
            acked: link.their_version.unwrap_or_default(),
            query,
        };
        self.actions
            .push_back(AgreementAction::Send(peer.clone(), select));
    }

    /// Reports the edges that came up or went down, and drops links with nothing left in them.
    fn update_up(&mut self) {
        for (peer, link) in self.links.iter_mut() {
            let up = link.connected && link.theirs && self.chosen.contains(peer);
            if up != link.up {
                link.up = up;
                self.actions.push_back(if up {
                    AgreementAction::Up(peer.clone())
                } else {
                    AgreementAction::Down(peer.clone())
                });
            }
        }
        let chosen = &self.chosen;
        self.links
            .retain(|k, l| l.connected || l.up || chosen.contains(k));
    }
}
