//! Generator invariants and the DOT/JSON/describe output (edge agreement: `agreement.rs`).

use murmur_topology::export::{graph_to_dot, graph_to_json};
use murmur_topology::{
    Format, Graph, MixingMatrix, TopologySpec, describe, describe_as, metropolis_weight,
};

#[test]
fn generators_have_their_degrees_and_sizes() {
    assert_eq!(Graph::ring(10).edge_count(), 10);
    assert_eq!(Graph::ring(2).edge_count(), 1);
    let t = Graph::torus(4, 5);
    assert_eq!((t.n(), t.min_degree(), t.max_degree()), (20, 4, 4));
    let e = Graph::exponential(64);
    // ±1, ±2, ..., ±16 and +32 = -32: 2 * 6 - 1 neighbours.
    assert_eq!((e.min_degree(), e.max_degree()), (11, 11));
    let h = Graph::hypercube(5);
    assert_eq!((h.n(), h.min_degree(), h.max_degree()), (32, 5, 5));
    assert_eq!(Graph::complete(9).edge_count(), 36);
    assert_eq!(Graph::star(9).max_degree(), 8);
    for seed in 0..5 {
        let r = Graph::random_regular(100, 3, seed).unwrap();
        assert_eq!((r.min_degree(), r.max_degree()), (3, 3));
        assert!(r.is_connected());
        let s = Graph::small_world(100, 4, 0.2, seed).unwrap();
        assert!(s.is_connected());
        assert_eq!(s.edge_count(), 200, "rewiring keeps the edge count");
        let er = Graph::erdos_renyi_connected(60, 0.1, seed).unwrap();
        assert!(er.is_connected());
    }
    assert!(Graph::random_regular(9, 3, 0).is_err());
    assert!(Graph::small_world(10, 3, 0.1, 0).is_err());
    assert!(Graph::erdos_renyi_connected(10, 0.0, 0).is_err());
}

#[test]
fn graphs_serialize_as_edge_lists_and_reject_bad_input() {
    let g = Graph::torus(3, 4);
    let json = serde_json::to_string(&g).unwrap();
    assert_eq!(serde_json::from_str::<Graph>(&json).unwrap(), g);
    let d = murmur_topology::DiGraph::exponential(10);
    let json = serde_json::to_string(&d).unwrap();
    assert_eq!(
        serde_json::from_str::<murmur_topology::DiGraph>(&json).unwrap(),
        d
    );
    assert!(serde_json::from_str::<Graph>(r#"{"n": 2, "edges": [[0, 5]]}"#).is_err());
    let w = MixingMatrix::metropolis_hastings(&g);
    let json = serde_json::to_string(&w).unwrap();
    assert_eq!(serde_json::from_str::<MixingMatrix>(&json).unwrap(), w);
}

#[test]
fn metropolis_weight_matches_the_matrix() {
    let g = Graph::star(5);
    let w = MixingMatrix::metropolis_hastings(&g);
    assert_eq!(w.weight(0, 3), metropolis_weight(4, 1));
    assert!((w.self_weight(0) - 0.2).abs() < 1e-15);
}

#[test]
fn dot_and_json_describe_the_graph() {
    let g = Graph::ring(4);
    let w = MixingMatrix::metropolis_hastings(&g);
    let dot = graph_to_dot(&g, Some(&w));
    assert!(dot.starts_with("graph G {"));
    assert_eq!(dot.matches(" -- ").count(), 4);
    assert!(dot.contains("0 -- 1 [label=\"0.3333\"]"));
    let json = graph_to_json(&g, Some(&w));
    assert_eq!(json["n"], 4);
    assert_eq!(json["edges"].as_array().unwrap().len(), 4);
    assert_eq!(json["weights"]["self"].as_array().unwrap().len(), 4);
}

#[test]
fn describe_prints_graph_weights_and_gap() {
    let text = describe(&"ring".parse().unwrap(), 12, 0).unwrap();
    assert!(text.contains("topology ring  n=12"));
    assert!(text.contains("self 0.3333"));
    let expected = murmur_topology::closed_form::ring(12).gap();
    assert!(text.contains(&format!("{expected:.6e}")), "{text}");

    let json = describe_as(&TopologySpec::Torus, 300, 0, Format::Json).unwrap();
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["spectrum"]["method"], "Lanczos");
    let gap = v["spectrum"]["gap"].as_f64().unwrap();
    let closed = murmur_topology::closed_form::torus(15, 20).gap();
    assert!((gap - closed).abs() / closed < 1e-8);

    let varying = describe(&TopologySpec::OnePeerExponential, 16, 0).unwrap();
    assert!(varying.contains("period 4"));
    // Exact averaging in log2 16 = 4 rounds shows up in the report.
    assert!(
        varying.contains("below 1e-12 of its start after 4 rounds"),
        "{varying}"
    );
    let json = describe_as(&"epidemic:2".parse().unwrap(), 10, 3, Format::Json).unwrap();
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["rounds"].as_array().unwrap().len(), 4);
    let dot = describe_as(&TopologySpec::DirectedExponential, 8, 0, Format::Dot).unwrap();
    assert!(dot.starts_with("digraph G {"));
    assert!(describe(&TopologySpec::Hypercube, 6, 0).is_err());
}
