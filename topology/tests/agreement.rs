//! Edge agreement: the handshake reaches agreement, repairs lost and reordered frames, survives
//! a restart, and falls silent once agreed. (The randomised races at scale are in
//! `sim/tests/links.rs`, which drives the same component.)

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use murmur_topology::{
    AgreementAction, AgreementConfig, EdgeAgreement, GossipVerdict, NeighbourRule, Select,
};

const SECOND: Duration = Duration::from_secs(1);

/// Nodes on a perfect network (every pair connected), with the frames in flight.
struct Lab {
    nodes: BTreeMap<u64, EdgeAgreement<u64>>,
    in_flight: Vec<(u64, u64, Select)>,
    now: Duration,
}

impl Lab {
    fn new(ids: &[u64], rule: NeighbourRule) -> Self {
        let nodes = ids
            .iter()
            .map(|&id| {
                (
                    id,
                    EdgeAgreement::new(id, rule, 1000 + id, AgreementConfig::default()),
                )
            })
            .collect();
        Lab {
            nodes,
            in_flight: Vec::new(),
            now: Duration::ZERO,
        }
    }

    fn node(&mut self, id: u64) -> &mut EdgeAgreement<u64> {
        self.nodes.get_mut(&id).unwrap()
    }

    /// Moves every queued `Send` into flight (other actions are dropped: edges are read back
    /// with `up()`).
    fn collect(&mut self) {
        for (&id, node) in self.nodes.iter_mut() {
            while let Some(action) = node.poll() {
                if let AgreementAction::Send(to, select) = action {
                    self.in_flight.push((id, to, select));
                }
            }
        }
    }

    /// Delivers frames in flight (and their answers) until none are left.
    fn settle(&mut self) -> usize {
        let mut delivered = 0;
        loop {
            self.collect();
            if self.in_flight.is_empty() {
                return delivered;
            }
            for (from, to, select) in std::mem::take(&mut self.in_flight) {
                let now = self.now;
                self.node(to).on_select(from, select, now);
                delivered += 1;
            }
        }
    }

    /// Delivers the frames in flight once, losing every frame `lost_sender` sent; the answers
    /// stay queued at their senders.
    fn deliver_losing_from(&mut self, lost_sender: u64) {
        self.collect();
        self.in_flight.retain(|&(from, _, _)| from != lost_sender);
        for (from, to, select) in std::mem::take(&mut self.in_flight) {
            let now = self.now;
            self.node(to).on_select(from, select, now);
        }
    }

    fn tick(&mut self) {
        self.now += SECOND;
        let now = self.now;
        for node in self.nodes.values_mut() {
            node.tick(now);
        }
    }

    /// Every edge is up at both ends or at neither.
    fn asymmetric_edges(&self) -> Vec<(u64, u64)> {
        let mut out = Vec::new();
        for (&a, node) in &self.nodes {
            for b in node.up() {
                if !self.nodes[&b].is_up(&a) {
                    out.push((a, b));
                }
            }
        }
        out
    }
}

fn meet(lab: &mut Lab, a: u64, b: u64) {
    let now = lab.now;
    lab.node(a).connected(b, now);
    lab.node(b).connected(a, now);
    lab.node(a).discovered(b, now);
    lab.node(b).discovered(a, now);
}

#[test]
fn two_peers_that_choose_each_other_agree_and_then_fall_silent() {
    let mut lab = Lab::new(&[1, 2], NeighbourRule::Ring);
    meet(&mut lab, 1, 2);
    assert!(lab.settle() > 0);
    assert_eq!(lab.node(1).up(), BTreeSet::from([2]));
    assert_eq!(lab.node(2).up(), BTreeSet::from([1]));
    for _ in 0..5 {
        lab.tick();
        assert_eq!(lab.settle(), 0, "an agreed edge sends nothing");
    }
}

/// The daemon bug: two peers dial each other at once, the transport closes one of the two
/// connections with a `Select` on it, and one end gossips into an edge the other refuses,
/// forever. Under the handshake the loss shows at the other end (its own `Select` was not
/// acknowledged), whose answer repairs it.
#[test]
fn a_lost_select_is_repaired_by_the_answer_it_was_missing() {
    let mut lab = Lab::new(&[1, 2], NeighbourRule::Ring);
    meet(&mut lab, 1, 2);
    lab.collect();
    let lost = lab
        .in_flight
        .iter()
        .position(|&(from, to, _)| (from, to) == (1, 2))
        .expect("1 announces its choice");
    lab.in_flight.remove(lost);
    lab.settle();
    assert!(lab.asymmetric_edges().is_empty());
    assert!(lab.node(1).is_up(&2) && lab.node(2).is_up(&1));
}

/// The one-sided state itself (every frame from 1 to 2 lost so far): 1's gossip reaching 2 is
/// held, not refused, and 2's answer to it brings the edge up at both ends.
#[test]
fn gossip_on_a_one_sided_edge_is_held_and_repairs_the_edge() {
    let mut lab = Lab::new(&[1, 2], NeighbourRule::Ring);
    meet(&mut lab, 1, 2);
    for _ in 0..3 {
        lab.deliver_losing_from(1);
    }
    lab.collect();
    lab.in_flight.clear();
    assert!(lab.node(1).is_up(&2) && !lab.node(2).is_up(&1), "one-sided");
    // One resend interval later (no tick: the gossip frame alone triggers the answer).
    lab.now += SECOND;
    let now = lab.now;
    assert_eq!(lab.node(2).on_gossip(&1, now), GossipVerdict::Hold);
    lab.settle();
    assert!(lab.asymmetric_edges().is_empty());
    assert!(lab.node(1).is_up(&2) && lab.node(2).is_up(&1));
}

#[test]
fn every_frame_from_one_side_lost_for_a_while_then_the_resend_agrees() {
    let mut lab = Lab::new(&[1, 2], NeighbourRule::Ring);
    meet(&mut lab, 1, 2);
    // Three rounds of 1 -> 2 losses.
    for _ in 0..3 {
        lab.deliver_losing_from(1);
        assert!(!lab.node(2).is_up(&1), "2 never heard 1");
        lab.tick();
    }
    lab.settle();
    assert!(lab.node(1).is_up(&2) && lab.node(2).is_up(&1));
}

#[test]
fn an_older_select_never_overwrites_a_newer_one() {
    let rule = NeighbourRule::Ring;
    let mut node = EdgeAgreement::new(1u64, rule, 7, AgreementConfig::default());
    let now = Duration::ZERO;
    node.connected(2, now);
    node.discovered(2, now);
    let v = |counter| murmur_topology::Version {
        incarnation: 9,
        counter,
    };
    let select = |chooses, counter| Select {
        chooses,
        version: v(counter),
        acked: murmur_topology::Version::default(),
        query: false,
    };
    node.on_select(2, select(true, 1), now);
    node.on_select(2, select(false, 3), now);
    // Overtaken on another connection: version 2 arrives after version 3.
    node.on_select(2, select(true, 2), now);
    assert!(!node.is_up(&2), "version 3 (not chosen) stands");
    node.on_select(2, select(true, 4), now);
    assert!(node.is_up(&2));
}

#[test]
fn a_restarted_peer_with_a_new_incarnation_is_agreed_again() {
    let mut lab = Lab::new(&[1, 2], NeighbourRule::Ring);
    meet(&mut lab, 1, 2);
    lab.settle();
    // 2 crashes: 1 sees the connection reset; 2 comes back as a new process.
    let now = lab.now;
    lab.node(1).disconnected(&2, true, now);
    assert!(!lab.node(1).is_up(&2));
    lab.nodes.insert(
        2,
        EdgeAgreement::new(2, NeighbourRule::Ring, 5555, AgreementConfig::default()),
    );
    lab.collect();
    lab.in_flight.clear(); // 1's dial attempt while 2 was down went nowhere
    meet(&mut lab, 1, 2);
    lab.settle();
    assert!(lab.node(1).is_up(&2) && lab.node(2).is_up(&1));
}

#[test]
fn gossip_from_a_peer_this_node_does_not_choose_is_refused_and_answered() {
    let mut node = EdgeAgreement::new(1u64, NeighbourRule::Ring, 7, AgreementConfig::default());
    let now = Duration::ZERO;
    node.connected(3, now);
    while node.poll().is_some() {}
    assert_eq!(node.on_gossip(&3, now), GossipVerdict::Reject);
    match node.poll() {
        Some(AgreementAction::Send(3, s)) => assert!(!s.chooses && s.query),
        other => panic!("expected a Select to 3, got {other:?}"),
    }
    // Rate-limited: a flood of frames is answered once per resend interval.
    assert_eq!(node.on_gossip(&3, now + SECOND / 2), GossipVerdict::Reject);
    assert_eq!(node.poll(), None);
}

#[test]
fn an_excluded_peer_is_disconnected_and_stays_out() {
    let mut lab = Lab::new(&[1, 2], NeighbourRule::Ring);
    meet(&mut lab, 1, 2);
    lab.settle();
    let now = lab.now;
    lab.node(1).exclude(&2, now);
    let actions: Vec<_> = std::iter::from_fn(|| lab.node(1).poll()).collect();
    assert!(actions.contains(&AgreementAction::Down(2)));
    assert!(actions.contains(&AgreementAction::Disconnect(2)));
    lab.node(1).discovered(2, now + SECOND);
    assert!(
        lab.node(1).known().is_empty(),
        "rediscovery does not bring it back"
    );
    let later = now + AgreementConfig::default().excluded_for + SECOND;
    lab.node(1).tick(later);
    lab.node(1).discovered(2, later);
    assert_eq!(lab.node(1).known(), &BTreeSet::from([2]));
}

#[test]
fn agreement_settles_on_the_rule_graph_once_views_agree() {
    // Half the peers start from a stale view (one peer missing); once every view is complete,
    // every edge of the rule's graph is up at both ends and no other edge is.
    let rule = NeighbourRule::RandomK { k: 3 };
    let ids: Vec<u64> = (0..40).map(|i| i * 7919).collect();
    let mut lab = Lab::new(&ids, rule);
    let missing = ids[5];
    let now = lab.now;
    for (i, &a) in ids.iter().enumerate() {
        for &b in &ids {
            if a != b {
                lab.node(a).connected(b, now);
                if i % 2 == 1 || b != missing {
                    lab.node(a).discovered(b, now);
                }
            }
        }
    }
    lab.settle();
    for (i, &a) in ids.iter().enumerate() {
        if i % 2 == 0 && a != missing {
            lab.node(a).discovered(missing, now);
        }
    }
    lab.settle();
    let view: BTreeSet<u64> = ids.iter().copied().collect();
    let graph = rule.graph(&view);
    for &p in &ids {
        assert_eq!(lab.node(p).up(), graph.neighbours_of(&p), "peer {p}");
    }
    assert!(lab.asymmetric_edges().is_empty());
}
