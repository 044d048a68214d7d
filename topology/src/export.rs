//! DOT and JSON export, and [`describe`]: a printable report of a topology, its weights and
//! its spectral gap (what `murmur-sim topology` prints).

use std::fmt::Write as _;
use std::str::FromStr;
use std::time::Instant;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{Value, json};

use crate::graph::{DiGraph, Graph};
use crate::mixing::{DirectedMixing, MixingMatrix};
use crate::schedule::Schedule;
use crate::spec::{SpecError, TopologySpec};
use crate::spectral::{self, Spectrum};

/// Output format of [`describe_as`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Human-readable report.
    Text,
    /// Graphviz DOT (round 0 for time-varying schedules).
    Dot,
    /// One JSON object.
    Json,
}

impl FromStr for Format {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "text" | "txt" => Ok(Format::Text),
            "dot" => Ok(Format::Dot),
            "json" => Ok(Format::Json),
            other => Err(format!("unknown format {other:?} (text, dot, json)")),
        }
    }
}

/// Graphviz DOT of an undirected graph; edge labels carry the weights when given.
pub fn graph_to_dot(graph: &Graph, weights: Option<&MixingMatrix>) -> String {
    let mut out = String::from("graph G {\n");
    for i in 0..graph.n() {
        match weights {
            Some(w) => writeln!(out, "  {i} [label=\"{i}\\nself {:.4}\"];", w.self_weight(i)),
            None => writeln!(out, "  {i};"),
        }
        .expect("writing to a String");
    }
    for (a, b) in graph.edges() {
        match weights {
            Some(w) => writeln!(out, "  {a} -- {b} [label=\"{:.4}\"];", w.weight(a, b)),
            None => writeln!(out, "  {a} -- {b};"),
        }
        .expect("writing to a String");
    }
    out.push_str("}\n");
    out
}

/// Graphviz DOT of a directed graph; arc `j -> i` is labelled with `p_ij` when given.
pub fn digraph_to_dot(graph: &DiGraph, weights: Option<&DirectedMixing>) -> String {
    let mut out = String::from("digraph G {\n");
    for i in 0..graph.n() {
        writeln!(out, "  {i};").expect("writing to a String");
    }
    for (from, to) in graph.arcs() {
        let label =
            weights.and_then(|w| w.row(to).iter().find(|&&(j, _)| j == from).map(|&(_, p)| p));
        match label {
            Some(p) => writeln!(out, "  {from} -> {to} [label=\"{p:.4}\"];"),
            None => writeln!(out, "  {from} -> {to};"),
        }
        .expect("writing to a String");
    }
    out.push_str("}\n");
    out
}

/// JSON of an undirected graph: `{"n", "directed": false, "edges": [[a, b]], "weights":
/// {"self": [...], "edges": [[a, b, w]]}}` (weights only when given).
pub fn graph_to_json(graph: &Graph, weights: Option<&MixingMatrix>) -> Value {
    let edges: Vec<[usize; 2]> = graph.edges().map(|(a, b)| [a, b]).collect();
    let mut v = json!({ "n": graph.n(), "directed": false, "edges": edges });
    if let Some(w) = weights {
        let self_weights: Vec<f64> = (0..w.n()).map(|i| w.self_weight(i)).collect();
        let edge_weights: Vec<Value> = graph
            .edges()
            .map(|(a, b)| json!([a, b, w.weight(a, b)]))
            .collect();
        v["weights"] = json!({ "self": self_weights, "edges": edge_weights });
    }
    v
}

/// JSON of a directed graph: `{"n", "directed": true, "arcs": [[from, to]], "weights":
/// [[i, j, p_ij]]}` (weights only when given; they include the diagonal).
pub fn digraph_to_json(graph: &DiGraph, weights: Option<&DirectedMixing>) -> Value {
    let arcs: Vec<[usize; 2]> = graph.arcs().map(|(a, b)| [a, b]).collect();
    let mut v = json!({ "n": graph.n(), "directed": true, "arcs": arcs });
    if let Some(w) = weights {
        let entries: Vec<Value> = (0..w.n())
            .flat_map(|i| w.row(i).iter().map(move |&(j, p)| json!([i, j, p])))
            .collect();
        v["weights"] = Value::Array(entries);
        v["stochasticity"] = json!(format!("{:?}", w.stochasticity()));
    }
    v
}

/// Text report of `spec` built for `n` peers with `seed`: the graph, its weights and its gap.
pub fn describe(spec: &TopologySpec, n: usize, seed: u64) -> Result<String, SpecError> {
    describe_as(spec, n, seed, Format::Text)
}

/// [`describe`] in a chosen format.
pub fn describe_as(
    spec: &TopologySpec,
    n: usize,
    seed: u64,
    format: Format,
) -> Result<String, SpecError> {
    let schedule = spec.build(n, seed)?;
    Ok(match (&schedule, format) {
        (Schedule::Static(graph), _) => describe_static(spec, seed, graph, format),
        (_, Format::Dot) => {
            let round = schedule.round(0);
            digraph_to_dot(&round.targets, Some(&round.weights))
        }
        (_, Format::Json) => {
            let rounds: Vec<Value> = (0..shown_rounds(&schedule))
                .map(|t| {
                    let round = schedule.round(t);
                    let mut v = digraph_to_json(&round.targets, Some(&round.weights));
                    v["round"] = json!(t);
                    v
                })
                .collect();
            let json = json!({
                "spec": spec.to_string(), "n": n, "seed": seed,
                "time_varying": schedule.is_time_varying(),
                "period": schedule.period(),
                "rounds": rounds,
                "measured_contraction_per_round": measured_contraction(&schedule, seed),
                "rounds_to_consensus_1e-12": rounds_to_consensus(&schedule, seed, 1e-12, 10_000),
            });
            serde_json::to_string_pretty(&json).expect("JSON values serialize")
        }
        (_, Format::Text) => describe_varying_text(spec, seed, &schedule),
    })
}

/// How many rounds a report lists for a directed or time-varying schedule.
fn shown_rounds(schedule: &Schedule) -> u64 {
    schedule.period().unwrap_or(4).min(16)
}

fn describe_static(spec: &TopologySpec, seed: u64, graph: &Graph, format: Format) -> String {
    let w = MixingMatrix::metropolis_hastings(graph);
    let started = Instant::now();
    let spectrum = spectral::spectrum(&w);
    let seconds = started.elapsed().as_secs_f64();
    match format {
        Format::Dot => graph_to_dot(graph, Some(&w)),
        Format::Json => {
            let mut v = graph_to_json(graph, Some(&w));
            v["spec"] = json!(spec.to_string());
            v["seed"] = json!(seed);
            v["weights_rule"] = json!("metropolis-hastings");
            match &spectrum {
                Ok(s) => v["spectrum"] = spectrum_json(s, seconds),
                Err(e) => v["spectrum_error"] = json!(e.to_string()),
            }
            serde_json::to_string_pretty(&v).expect("JSON values serialize")
        }
        Format::Text => {
            let mut out = String::new();
            let n = graph.n();
            let _ = writeln!(out, "topology {spec}  n={n}  seed={seed}");
            let _ = writeln!(
                out,
                "edges {}  degree min {} max {}  connected {}",
                graph.edge_count(),
                graph.min_degree(),
                graph.max_degree(),
                if graph.is_connected() { "yes" } else { "no" }
            );
            let _ = writeln!(
                out,
                "weights (Metropolis-Hastings, w_ij = 1/(1+max(d_i,d_j))):"
            );
            write_weight_rows(&mut out, &w);
            match spectrum {
                Ok(s) => write_spectrum(&mut out, &s, seconds),
                Err(e) => {
                    let _ = writeln!(out, "spectral gap: not defined ({e})");
                }
            }
            out
        }
    }
}

const SHOWN_ROWS: usize = 16;

fn write_weight_rows(out: &mut String, w: &MixingMatrix) {
    for i in 0..w.n().min(SHOWN_ROWS) {
        let _ = write!(out, "  {i:>5}: self {:.4} |", w.self_weight(i));
        for &(j, wij) in w.row(i) {
            let _ = write!(out, " {j}:{wij:.4}");
        }
        out.push('\n');
    }
    if w.n() > SHOWN_ROWS {
        let _ = writeln!(out, "  ... ({} more rows)", w.n() - SHOWN_ROWS);
    }
}

fn write_spectrum(out: &mut String, s: &Spectrum, seconds: f64) {
    let _ = writeln!(
        out,
        "spectral gap δ = 1 - max(|λ2|, |λn|) = {:.6e}   (1-λ2 = {:.6e}, 1+λn = {:.6e})",
        s.gap, s.one_minus_lambda2, s.one_plus_lambda_min
    );
    let _ = writeln!(
        out,
        "method {:?}  lanczos steps {}  cg iterations {}  time {:.3} ms",
        s.method,
        s.lanczos_steps,
        s.cg_iterations,
        seconds * 1e3
    );
    let _ = writeln!(
        out,
        "exact gossip shrinks the consensus error by about {:.6} per round",
        1.0 - s.gap
    );
}

fn spectrum_json(s: &Spectrum, seconds: f64) -> Value {
    json!({
        "gap": s.gap,
        "one_minus_lambda2": s.one_minus_lambda2,
        "one_plus_lambda_min": s.one_plus_lambda_min,
        "lambda2": s.lambda2,
        "lambda_min": s.lambda_min,
        "method": format!("{:?}", s.method),
        "lanczos_steps": s.lanczos_steps,
        "cg_iterations": s.cg_iterations,
        "seconds": seconds,
    })
}

fn describe_varying_text(spec: &TopologySpec, seed: u64, schedule: &Schedule) -> String {
    let mut out = String::new();
    let n = schedule.n();
    let _ = writeln!(out, "topology {spec}  n={n}  seed={seed}");
    let _ = writeln!(
        out,
        "time-varying {}  period {}",
        if schedule.is_time_varying() {
            "yes"
        } else {
            "no (directed)"
        },
        schedule
            .period()
            .map_or("none (fresh random draws)".to_string(), |p| p.to_string())
    );
    for t in 0..shown_rounds(schedule) {
        let round = schedule.round(t);
        let _ = writeln!(
            out,
            "round {t}: {} arcs, weights {:?}-stochastic",
            round.targets.arc_count(),
            round.weights.stochasticity()
        );
        for i in 0..n.min(SHOWN_ROWS) {
            let _ = write!(
                out,
                "  {i:>5} sends to {:?} | mixes",
                round.targets.out_neighbours(i)
            );
            for &(j, p) in round.weights.row(i) {
                let _ = write!(out, " {j}:{p:.4}");
            }
            out.push('\n');
        }
        if n > SHOWN_ROWS {
            let _ = writeln!(out, "  ... ({} more rows)", n - SHOWN_ROWS);
        }
    }
    let _ = writeln!(
        out,
        "no single spectral gap (weights change per round or are not symmetric); measured \
         push-sum consensus contraction per round: {:.6}",
        measured_contraction(schedule, seed)
    );
    match rounds_to_consensus(schedule, seed, 1e-12, 10_000) {
        Some(r) => {
            let _ = writeln!(
                out,
                "consensus error below 1e-12 of its start after {r} rounds"
            );
        }
        None => {
            let _ = writeln!(out, "consensus error still above 1e-12 after 10000 rounds");
        }
    }
    out
}

/// Rounds of push-sum until the consensus error falls below `tolerance` times its start, from
/// the same seeded random start as [`measured_contraction`].
pub fn rounds_to_consensus(
    schedule: &Schedule,
    seed: u64,
    tolerance: f64,
    max_rounds: u64,
) -> Option<u64> {
    let n = schedule.n();
    if n <= 1 {
        return Some(0);
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x00c0_ffee);
    let mut x: Vec<f64> = (0..n).map(|_| rng.random::<f64>()).collect();
    let mut w = vec![1.0; n];
    let start = push_sum_error(&x, &w);
    for t in 0..max_rounds {
        let p = schedule.round(t).weights;
        x = p.apply(&x);
        w = p.apply(&w);
        if push_sum_error(&x, &w) <= tolerance * start {
            return Some(t + 1);
        }
    }
    None
}

fn push_sum_error(x: &[f64], w: &[f64]) -> f64 {
    let z: Vec<f64> = x.iter().zip(w).map(|(a, b)| a / b).collect();
    let mean = z.iter().sum::<f64>() / z.len() as f64;
    z.iter().map(|v| (v - mean).powi(2)).sum::<f64>().sqrt()
}

/// Geometric-mean per-round contraction of the push-sum consensus error over a few periods,
/// from a seeded random start (values `x`, weights `w = 1`, estimate `x / w`).
pub fn measured_contraction(schedule: &Schedule, seed: u64) -> f64 {
    let n = schedule.n();
    if n <= 1 {
        return 0.0;
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x00c0_ffee);
    let mut x: Vec<f64> = (0..n).map(|_| rng.random::<f64>()).collect();
    let mut w = vec![1.0; n];
    let error = push_sum_error;
    let start = error(&x, &w);
    let rounds = (4 * schedule.period().unwrap_or(8)).clamp(8, 64);
    let mut last = start;
    let mut counted = 0;
    for t in 0..rounds {
        let p = schedule.round(t).weights;
        x = p.apply(&x);
        w = p.apply(&w);
        let e = error(&x, &w);
        last = e;
        counted = t + 1;
        // Stop before the error reaches the rounding floor.
        if e < 1e-12 * start {
            break;
        }
    }
    if last == 0.0 {
        return 0.0;
    }
    (last / start).powf(1.0 / counted as f64)
}
