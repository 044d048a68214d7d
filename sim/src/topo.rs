//! From a topology spec ("exponential", "random-regular:4", "one-peer-exponential", ...) to
//! what the engine needs: the undirected edges peers connect over, the push-sum schedule for
//! directed or time-varying graphs, and the spectral gap of the mixing matrix.

use murmur_topology::schedule::Schedule;
use murmur_topology::spec::TopologySpec;
use murmur_topology::{Graph, MixingMatrix};

/// A communication pattern ready for the engine.
#[derive(Debug, Clone)]
pub struct Communication {
    /// Edges both ends connect (the union over rounds for time-varying graphs).
    pub edges: Vec<(u32, u32)>,
    /// Who pushes to whom in each round, for directed and time-varying schedules.
    pub push_schedule: Option<Schedule>,
    /// The whole schedule.
    pub schedule: Schedule,
}

/// Parses and builds `spec` for `n` peers.
pub fn build(spec: &str, n: usize, seed: u64) -> anyhow::Result<Communication> {
    let spec: TopologySpec = spec
        .parse()
        .map_err(|e| anyhow::anyhow!("topology {spec:?}: {e}"))?;
    let schedule = spec
        .build(n, seed)
        .map_err(|e| anyhow::anyhow!("topology {spec} for {n} peers: {e}"))?;
    let mut edges: Vec<(u32, u32)> = match &schedule {
        Schedule::Static(g) => undirected(g),
        Schedule::Epidemic { n, .. } => undirected(&Graph::complete(*n)),
        other => {
            let rounds = other.period().unwrap_or(1);
            let mut e = Vec::new();
            for t in 0..rounds {
                let round = other.round(t);
                for (a, b) in round.targets.arcs() {
                    if a != b {
                        e.push((a.min(b) as u32, a.max(b) as u32));
                    }
                }
            }
            e
        }
    };
    edges.sort_unstable();
    edges.dedup();
    let push_schedule = (!matches!(schedule, Schedule::Static(_))).then(|| schedule.clone());
    Ok(Communication {
        edges,
        push_schedule,
        schedule,
    })
}

fn undirected(g: &Graph) -> Vec<(u32, u32)> {
    g.edges()
        .map(|(a, b)| (a.min(b) as u32, a.max(b) as u32))
        .collect()
}

/// Spectral gap δ of the Metropolis–Hastings matrix of a static graph (`None` otherwise).
pub fn spectral_gap(schedule: &Schedule) -> Option<f64> {
    let g = schedule.static_graph()?;
    MixingMatrix::metropolis_hastings(g).spectral_gap().ok()
}
