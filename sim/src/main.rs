//! `murmur-sim`: run simulation scenarios and sweeps, benchmark the engine, inspect topologies.
//!
//! ```text
//! murmur-sim run sim/examples/quick.toml --out /tmp/quick [--set peer.local_steps=2]
//! murmur-sim sweep scripts/compression.toml --out docs/results/compression
//! murmur-sim bench [--peers 1024]
//! murmur-sim topology exponential --n 16
//! ```

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use murmur_sim::metrics::{EvalRow, MetricsWriter};
use murmur_sim::scenario::{self, Scenario, parse_assignment, set_dotted};
use murmur_sim::{bench, experiment, topo};

#[derive(Parser, Debug)]
#[command(
    name = "murmur-sim",
    version,
    about = "Simulate a murmur swarm on a virtual network"
)]
struct Cli {
    /// Worker threads (default: all cores). Results do not depend on it.
    #[arg(long, global = true, env = "MURMUR_SIM_THREADS")]
    threads: Option<usize>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run one scenario (and its baselines) and write metrics under --out.
    Run(RunArgs),
    /// Run every variant of one or more experiment files, write CSV tables and PNG plots.
    Sweep(SweepArgs),
    /// Throughput benchmark: peers × parameters × rounds per second, memory per peer.
    Bench(bench::BenchArgs),
    /// Print a topology: edges, Metropolis–Hastings weights, spectral gap.
    Topology(TopologyArgs),
    /// The connection layer: dial races, lost frames and resets against the edge agreement.
    Links(LinksArgs),
}

#[derive(Args, Debug)]
struct LinksArgs {
    /// Nodes (node 0 is the bootstrap node).
    #[arg(long, default_value_t = 64)]
    peers: usize,
    /// Neighbour rule: ring, exponential or random-k:K.
    #[arg(long, default_value = "exponential")]
    rule: String,
    /// Seeds to run (0..seeds).
    #[arg(long, default_value_t = 20)]
    seeds: u64,
    /// Frame loss while turbulent (0..1).
    #[arg(long, default_value_t = 0.05)]
    drop: f64,
    /// Connection resets per second while turbulent.
    #[arg(long, default_value_t = 0.5)]
    resets_per_sec: f64,
}

#[derive(Args, Debug)]
struct Overrides {
    /// Override any scenario key: --set peer.local_steps=2 --set topology=ring
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
    /// Number of peers.
    #[arg(long)]
    peers: Option<usize>,
    /// Rounds.
    #[arg(long)]
    rounds: Option<u64>,
    /// Seed.
    #[arg(long)]
    seed: Option<u64>,
    /// Topology spec.
    #[arg(long)]
    topology: Option<String>,
    /// Codec spec (CHOCO).
    #[arg(long)]
    codec: Option<String>,
}

impl Overrides {
    fn apply(&self, table: &mut toml::Table) -> anyhow::Result<()> {
        for s in &self.set {
            let (k, v) = parse_assignment(s)?;
            set_dotted(table, &k, v);
        }
        if let Some(p) = self.peers {
            set_dotted(table, "peers", toml::Value::Integer(p as i64));
        }
        if let Some(r) = self.rounds {
            set_dotted(table, "rounds", toml::Value::Integer(r as i64));
        }
        if let Some(s) = self.seed {
            set_dotted(table, "seed", toml::Value::Integer(s as i64));
        }
        if let Some(t) = &self.topology {
            set_dotted(table, "topology", toml::Value::String(t.clone()));
        }
        if let Some(c) = &self.codec {
            set_dotted(table, "gossip.codec", toml::Value::String(c.clone()));
        }
        Ok(())
    }
}

#[derive(Args, Debug)]
struct RunArgs {
    /// Scenario file (TOML).
    file: PathBuf,
    /// Output directory (metrics.csv, summary.json, scenario.toml).
    #[arg(long)]
    out: PathBuf,
    #[command(flatten)]
    overrides: Overrides,
}

#[derive(Args, Debug)]
struct SweepArgs {
    /// Experiment files (TOML with [base], [[variant]] / [grid] and [[plot]]).
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// Output directory.
    #[arg(long)]
    out: PathBuf,
    /// Overrides applied to every variant's base.
    #[command(flatten)]
    overrides: Overrides,
}

#[derive(Args, Debug)]
struct TopologyArgs {
    /// Topology spec ("ring", "torus", "exponential", "random-regular:4", ...).
    spec: String,
    /// Number of nodes.
    #[arg(long, short)]
    n: usize,
    /// Seed of random families.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Report format: text, dot or json (from murmur-topology's describe).
    #[arg(long, default_value = "text")]
    format: String,
}

fn main() {
    let cli = Cli::parse();
    if let Some(t) = cli.threads
        && let Err(e) = rayon::ThreadPoolBuilder::new()
            .num_threads(t)
            .build_global()
    {
        eprintln!("murmur-sim: threads: {e}");
    }
    let result = match cli.command {
        Command::Run(a) => run(a),
        Command::Sweep(a) => sweep(a),
        Command::Bench(a) => bench::run(&a),
        Command::Topology(a) => topology(&a),
        Command::Links(a) => links(&a),
    };
    if let Err(e) = result {
        eprintln!("murmur-sim: {e:#}");
        std::process::exit(1);
    }
}

fn read_table(path: &Path) -> anyhow::Result<toml::Table> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))
}

fn progress_bar(total: u64) -> ProgressBar {
    let target = if std::io::stderr().is_terminal() {
        ProgressDrawTarget::stderr()
    } else {
        ProgressDrawTarget::hidden()
    };
    let bar = ProgressBar::with_draw_target(Some(total), target);
    bar.set_style(
        ProgressStyle::with_template("{spinner} [{elapsed_precise}] {bar:40} {pos}/{len} {msg}")
            .expect("valid template"),
    );
    bar
}

fn run(args: RunArgs) -> anyhow::Result<()> {
    let mut table = read_table(&args.file)?;
    args.overrides.apply(&mut table)?;
    let scenario = Scenario::from_table(table)?;
    create_out_dir(&args.out)?;
    let scenario_file = args.out.join("scenario.toml");
    std::fs::write(
        &scenario_file,
        toml::to_string(&scenario).context("serialising the scenario")?,
    )
    .with_context(|| format!("cannot write {}", scenario_file.display()))?;
    let bar = progress_bar(scenario.rounds.max(1));
    let b = bar.clone();
    let outcome = scenario::run(&scenario, move |variant, row: &EvalRow| {
        b.set_position(row.round);
        b.set_message(format!("{variant} acc={:.3}", row.accuracy_avg));
    })?;
    bar.finish_and_clear();
    let metrics_file = args.out.join(match scenario.metrics_format {
        murmur_sim::metrics::MetricsFormat::Csv => "metrics.csv",
        murmur_sim::metrics::MetricsFormat::Jsonl => "metrics.jsonl",
    });
    let write_metrics = || -> std::io::Result<()> {
        let mut w = MetricsWriter::create(&metrics_file, scenario.metrics_format)?;
        for v in &outcome.variants {
            for r in &v.rows {
                w.write(&v.name, r)?;
            }
        }
        w.finish()
    };
    write_metrics().with_context(|| format!("cannot write {}", metrics_file.display()))?;
    print_table(&outcome);
    println!(
        "{} parameters; evaluated on {} (average model: acc(avg); each peer: mean, worst)",
        outcome.params, outcome.evaluation
    );
    if let Some(u) = outcome.unigram_loss {
        println!(
            "unigram (character-frequency) loss of the same windows: {u:.4} nats per character"
        );
    }
    let summary = outcome.summary();
    let summary_file = args.out.join("summary.json");
    std::fs::write(
        &summary_file,
        serde_json::to_string_pretty(&outcome.summary_json())?,
    )
    .with_context(|| format!("cannot write {}", summary_file.display()))?;
    let line: Vec<String> = summary.iter().map(|(k, v)| format!("{k}={v}")).collect();
    println!("summary: {}", line.join(" "));
    Ok(())
}

fn print_table(outcome: &scenario::Outcome) {
    println!(
        "{:<28} {:>9} {:>9} {:>9} {:>9} {:>8} {:>14} {:>10} {:>10}",
        "variant",
        "acc(avg)",
        "acc(mean)",
        "acc(worst)",
        "loss(avg)",
        "rounds",
        "bytes",
        "saved(x)",
        "sim_s"
    );
    let dense = outcome
        .find("dpsgd")
        .and_then(|d| d.rows.last().map(|r| r.bytes));
    for v in &outcome.variants {
        let Some(l) = v.rows.last() else { continue };
        let saved = match (dense, &v.report) {
            (Some(d), _) => d as f64 / l.bytes.max(1) as f64,
            (None, Some(r)) => r.dense_equivalent_bytes as f64 / l.bytes.max(1) as f64,
            (None, None) => f64::NAN,
        };
        println!(
            "{:<28} {:>9.4} {:>9.4} {:>9.4} {:>9.4} {:>8} {:>14} {:>10.1} {:>10.2}",
            v.name,
            l.accuracy_avg,
            l.accuracy_mean,
            l.accuracy_worst,
            l.test_loss_avg,
            l.round,
            l.bytes,
            saved,
            l.time_s
        );
    }
}

/// Creates `--out` (and its parents); the error names the directory.
fn create_out_dir(out: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(out).with_context(|| {
        format!(
            "--out {}: cannot create the output directory",
            out.display()
        )
    })
}

fn sweep(args: SweepArgs) -> anyhow::Result<()> {
    create_out_dir(&args.out)?;
    let mut lines = Vec::new();
    for file in &args.files {
        let mut table = read_table(file)?;
        let mut overlay = toml::Table::new();
        args.overrides.apply(&mut overlay)?;
        let exp = experiment::Experiment::from_table(table.clone(), &overlay)
            .with_context(|| format!("experiment {}", file.display()))?;
        table.clear();
        let total = exp.variants.len() as u64;
        let bar = progress_bar(total);
        let done = Arc::new(Mutex::new(0u64));
        let b = bar.clone();
        let result = exp.run(move |name| {
            let mut d = done.lock().expect("progress lock");
            *d += 1;
            b.set_position(*d);
            b.set_message(name.to_string());
        })?;
        bar.finish_and_clear();
        let written = result.write(&args.out)?;
        for w in &written {
            eprintln!("wrote {}", w.display());
        }
        if let Some((table, _)) = result.headline()? {
            println!("{}: headline", result.name);
            print!("{table}");
        }
        lines.push(result.summary_line());
    }
    for l in lines {
        println!("summary: {l}");
    }
    Ok(())
}

fn links(args: &LinksArgs) -> anyhow::Result<()> {
    use murmur_sim::links::{LinksConfig, run_links};
    if !(0.0..1.0).contains(&args.drop) {
        anyhow::bail!("--drop must be in [0, 1), got {}", args.drop);
    }
    if args.peers < 2 || args.seeds == 0 {
        anyhow::bail!("--peers must be at least 2 and --seeds at least 1");
    }
    let rule = args
        .rule
        .parse()
        .map_err(|e| anyhow::anyhow!("--rule: {e}"))?;
    println!(
        "{:>5} {:>10} {:>7} {:>8} {:>10} {:>11} {:>8} {:>9} {:>9}",
        "seed",
        "asymmetric",
        "agreed",
        "missing",
        "max_degree",
        "duplicates",
        "lost",
        "rejected",
        "settle_s"
    );
    let (mut asymmetric, mut missing, mut rejected_after_quiet, mut worst_settle) =
        (0, 0, 0, 0.0f64);
    let mut max_degree = 0;
    let mut bound = 0;
    for seed in 0..args.seeds {
        let config = LinksConfig {
            peers: args.peers,
            rule,
            seed,
            drop: args.drop,
            resets_per_sec: args.resets_per_sec,
            ..LinksConfig::default()
        };
        let r = run_links(&config);
        println!(
            "{seed:>5} {:>10} {:>7} {:>8} {:>10} {:>11} {:>8} {:>9} {:>9.2}",
            r.asymmetric,
            r.agreed,
            r.missing,
            r.max_degree,
            r.duplicate_connections,
            r.frames_lost,
            r.rejected_after_quiet,
            r.settle_secs
        );
        asymmetric += r.asymmetric;
        missing += r.missing;
        rejected_after_quiet += r.rejected_after_quiet;
        worst_settle = worst_settle.max(r.settle_secs);
        max_degree = max_degree.max(r.max_degree);
        bound = r.degree_bound;
    }
    println!(
        "summary: peers={} seeds={} asymmetric={asymmetric} missing={missing} rejected_after_quiet={rejected_after_quiet} max_degree={max_degree} degree_bound={bound} worst_settle_s={worst_settle:.2}",
        args.peers, args.seeds
    );
    Ok(())
}

/// Largest graph `murmur-sim topology` builds: its report (weights, spectral gap) needs
/// memory and time growing faster than n, and a billion nodes aborted allocating 24 GB.
const MAX_TOPOLOGY_NODES: usize = 100_000;

fn topology(args: &TopologyArgs) -> anyhow::Result<()> {
    if args.n == 0 || args.n > MAX_TOPOLOGY_NODES {
        anyhow::bail!("--n = {} must be in 1..={MAX_TOPOLOGY_NODES}", args.n);
    }
    let spec: murmur_topology::TopologySpec = args
        .spec
        .parse()
        .map_err(|e| anyhow::anyhow!("topology {:?}: {e}", args.spec))?;
    let format: murmur_topology::Format = args
        .format
        .parse()
        .map_err(|e| anyhow::anyhow!("format: {e}"))?;
    let report = murmur_topology::describe_as(&spec, args.n, args.seed, format)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    println!("{}", report.trim_end());
    if format != murmur_topology::Format::Text {
        return Ok(());
    }
    let comm = topo::build(&args.spec, args.n, args.seed)?;
    match comm.schedule.static_graph() {
        Some(g) => {
            let w = murmur_topology::MixingMatrix::metropolis_hastings(g);
            let gap = w.spectral_gap().map_err(|e| anyhow::anyhow!("{e}"))?;
            println!(
                "summary: n={} edges={} min_degree={} max_degree={} spectral_gap={gap:.6} one_minus_gap={:.6} connected={}",
                g.n(),
                g.edge_count(),
                g.min_degree(),
                g.max_degree(),
                1.0 - gap,
                g.is_connected()
            );
        }
        None => println!(
            "summary: n={} time_varying={} period={} union_edges={}",
            args.n,
            comm.schedule.is_time_varying(),
            comm.schedule
                .period()
                .map_or("none".into(), |p| p.to_string()),
            comm.edges.len()
        ),
    }
    Ok(())
}
