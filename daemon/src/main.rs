//! `murmur`: the daemon (`run`), its status client (`status`), a one-command local swarm
//! (`demo`), a network-vs-compute measurement (`bench`) and helpers (`config`, `psk`, `id`).

use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use murmur_daemon::config::Config;
use murmur_daemon::demo::{self, DemoOptions};
use murmur_daemon::{http, identity, node};

#[derive(Parser, Debug)]
#[command(
    name = "murmur",
    version,
    about = "Decentralized learning by compressed gossip over libp2p"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run a node until SIGINT/SIGTERM.
    Run(Box<RunArgs>),
    /// Print a running node's status.
    Status {
        /// The node's HTTP endpoint (host:port).
        #[arg(long, default_value = "127.0.0.1:9464")]
        addr: String,
        /// Print the raw JSON.
        #[arg(long)]
        json: bool,
    },
    /// Start N daemons on 127.0.0.1, train the digits shards, report and stop them.
    Demo(DemoArgs),
    /// Measure the share of round time spent waiting on the network vs computing, with and
    /// without overlapping compute and communication.
    Bench(DemoArgs),
    /// Print the default configuration as TOML.
    Config,
    /// Write a fresh private-network key (swarm.key format, mode 0600).
    Psk {
        /// Output file.
        out: PathBuf,
    },
    /// Print the peer id of a data directory (creating its key if needed).
    Id {
        /// Data directory.
        #[arg(long, default_value = "murmur-data")]
        data_dir: PathBuf,
    },
}

#[derive(Args, Debug)]
struct RunArgs {
    /// TOML configuration file (flags below override it).
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// Override any configuration key, as in the file: `--set gossip.gamma=0.2 --set
    /// 'task.optimizer={kind="adamw", lr=1e-3}'` (repeatable; applied after the file, before
    /// the named flags).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    sets: Vec<String>,
    /// Data directory (identity key, checkpoints, node.json).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Listen multiaddr (repeatable; replaces the configured list).
    #[arg(long)]
    listen: Vec<String>,
    /// Bootstrap multiaddr ending in /p2p/<peer id> (repeatable).
    #[arg(long)]
    bootstrap: Vec<String>,
    /// Advertise only this multiaddr instead of the listen addresses (repeatable).
    #[arg(long)]
    announce: Vec<String>,
    /// HTTP endpoint address (port 0: any free port).
    #[arg(long)]
    http: Option<String>,
    /// No HTTP endpoint.
    #[arg(long)]
    no_http: bool,
    /// Enable mDNS discovery on the LAN.
    #[arg(long)]
    mdns: bool,
    /// Serve as a circuit relay v2 for peers that cannot dial each other (relay.serve).
    #[arg(long)]
    serve_relay: bool,
    /// Let AutoNAT count dial-backs to private IP addresses (node.autonat_global_only =
    /// false): a swarm on one private network.
    #[arg(long)]
    autonat_private_ips: bool,
    /// Private-network key file.
    #[arg(long)]
    psk: Option<PathBuf>,
    /// Allowed peer id (repeatable; none: everyone).
    #[arg(long = "allow")]
    allow: Vec<String>,
    /// This node's shard index.
    #[arg(long)]
    shard: Option<usize>,
    /// Number of shards.
    #[arg(long)]
    shards: Option<usize>,
    /// Wait for this many peers (this one included) before training.
    #[arg(long)]
    min_peers: Option<usize>,
    /// Stop training after this many rounds (keep serving).
    #[arg(long)]
    max_rounds: Option<u64>,
    /// Averaging algorithm: choco, dpsgd, push-sum, compressed-push-sum (push-sum whose
    /// numerators travel through --codec with step --gamma, as CHOCO's models do).
    #[arg(long)]
    algorithm: Option<String>,
    /// Round-tagged (wait for the neighbours' round, bounded by the round timeout) or async.
    #[arg(long, value_parser = ["round-tagged", "async"])]
    mode: Option<String>,
    /// Push-sum targets per round: all, one-peer-exponential, random:K.
    #[arg(long)]
    push: Option<String>,
    /// CHOCO storage of the neighbours' public copies: auto (aggregate from 2^20 parameters
    /// up when the settings allow it), per-neighbour, or aggregate (three model-sized vectors
    /// whatever the degree).
    #[arg(long, value_parser = ["auto", "per-neighbour", "aggregate"])]
    copies: Option<String>,
    /// CHOCO codec (dense, threshold:0.01, topk:0.01, sign, qsgd:16, ...).
    #[arg(long)]
    codec: Option<String>,
    /// CHOCO consensus step size.
    #[arg(long, allow_negative_numbers = true)]
    gamma: Option<f32>,
    /// Local SGD steps per round.
    #[arg(long)]
    local_steps: Option<u32>,
    /// Data: digits, breast-cancer, mnist (bundled MNIST-10k), shakespeare (bundled text), or
    /// csv:<path> (label in the last column; more options in
    /// the config file's [task.data] table).
    #[arg(long)]
    data: Option<String>,
    /// Model: softmax, logistic, linear, mlp:32, mlp:64,32, cnn, cnn:C1,C2,FC, transformer,
    /// transformer:layers=L,width=W,heads=H,context=T.
    #[arg(long)]
    model: Option<String>,
    /// Partition of the training set: iid, dirichlet:<alpha>, shards:<per peer>.
    #[arg(long)]
    partition: Option<String>,
    /// Local learning rate.
    #[arg(long, allow_negative_numbers = true)]
    lr: Option<f32>,
    /// Overlap the next round's compute with this round's communication (true/false).
    #[arg(long)]
    overlap: Option<bool>,
    /// Neighbour rule: ring, exponential, random-k:<k>; or one-peer-exponential (the
    /// exponential rule's edges with push-sum pushing to one neighbour per round, as
    /// `--push one-peer-exponential`).
    #[arg(long)]
    topology: Option<String>,
    /// Checkpoint every N rounds (0: only on shutdown).
    #[arg(long)]
    checkpoint_every: Option<u64>,
    /// Evaluate every N rounds.
    #[arg(long)]
    eval_every: Option<u64>,
    /// Gossip base seed.
    #[arg(long)]
    seed: Option<u64>,
    /// Largest frame accepted (bytes).
    #[arg(long)]
    max_frame_bytes: Option<usize>,
    /// Frames per second accepted from each peer.
    #[arg(long)]
    max_frames_per_sec: Option<f64>,
    /// JSON log lines.
    #[arg(long)]
    json_logs: bool,
    /// DiLoCo outer step: outer Nesterov learning rate applied to each round's
    /// pseudo-gradient (use with --local-steps H of 8 or more).
    #[arg(long, allow_negative_numbers = true)]
    outer_lr: Option<f32>,
    /// Clip each neighbour's contribution to this L2 radius (ClippedGossip).
    #[arg(long, allow_negative_numbers = true)]
    clip_radius: Option<f32>,
    /// Differential privacy: clip each round's local update to this L2 norm (with --dp-noise).
    #[arg(long, allow_negative_numbers = true)]
    dp_clip: Option<f64>,
    /// Differential privacy: noise std per coordinate in units of --dp-clip (sigma, >= 1).
    #[arg(long, allow_negative_numbers = true)]
    dp_noise: Option<f64>,
    /// Differential privacy: the delta of the (epsilon, delta) reported (default 1e-5).
    #[arg(long, allow_negative_numbers = true)]
    dp_delta: Option<f64>,
    /// FOR ROBUSTNESS TESTS AND DEMOS ONLY: this node lies to its neighbours
    /// (huge, non-finite or nan, wrong-dim, replay, flood).
    #[arg(long)]
    adversary: Option<murmur_gossip::adversary::AttackKind>,
    /// Start from round 0 even if checkpoints exist: they are moved into a new checkpoint
    /// generation (checkpoints/generation-N), never deleted or overwritten.
    #[arg(long)]
    fresh: bool,
}

impl RunArgs {
    /// The named flags that set one configuration key each, as `key=value` assignments
    /// applied the way `--set` is.
    fn flag_assignments(&self) -> Result<Vec<(&'static str, toml::Value)>> {
        fn value<T: serde::Serialize>(key: &str, v: &T) -> Result<toml::Value> {
            toml::Value::try_from(v).map_err(|e| anyhow::anyhow!("{key}: {e}"))
        }
        let mut out = Vec::new();
        macro_rules! flag {
            ($key:literal, $v:expr) => {
                if let Some(v) = &$v {
                    out.push(($key, value($key, v)?));
                }
            };
        }
        flag!("node.data_dir", self.data_dir);
        flag!("shard.index", self.shard);
        flag!("shard.count", self.shards);
        flag!("node.min_peers", self.min_peers);
        flag!("run.max_rounds", self.max_rounds);
        flag!("gossip.algorithm", self.algorithm);
        flag!("gossip.mode", self.mode);
        flag!("gossip.push", self.push);
        flag!("gossip.copies", self.copies);
        flag!("gossip.codec", self.codec);
        flag!("gossip.gamma", self.gamma);
        flag!("gossip.local_steps", self.local_steps);
        flag!("task.optimizer.lr", self.lr);
        flag!("gossip.overlap_compute", self.overlap);
        flag!("checkpoint.every", self.checkpoint_every);
        flag!("run.eval_every", self.eval_every);
        flag!("gossip.seed", self.seed);
        flag!("access.max_frame_bytes", self.max_frame_bytes);
        flag!("access.max_frames_per_sec", self.max_frames_per_sec);
        flag!("gossip.clip_radius", self.clip_radius);
        flag!("gossip.outer_lr", self.outer_lr);
        flag!("privacy.clip", self.dp_clip);
        flag!("privacy.noise_multiplier", self.dp_noise);
        flag!("privacy.delta", self.dp_delta);
        flag!("testing.adversary", self.adversary);
        Ok(out)
    }

    /// The file (or the defaults), then `--set`, then the named flags.
    fn config(self) -> Result<Config> {
        let mut table = match &self.config {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("reading config {}", path.display()))?;
                // Parsed once as a Config first, so a bad file is reported with its line.
                Config::parse(&text)
                    .with_context(|| format!("parsing config {}", path.display()))?;
                toml::from_str::<toml::Table>(&text)?
            }
            None => toml::Table::new(),
        };
        for s in &self.sets {
            let (key, value) = murmur_gossip::settings::parse_assignment(s)
                .map_err(|e| anyhow::anyhow!("--set: {e}"))?;
            murmur_gossip::settings::set_dotted(&mut table, &key, value);
        }
        for (key, value) in self.flag_assignments()? {
            murmur_gossip::settings::set_dotted(&mut table, key, value);
        }
        let mut c = Config::parse(&toml::to_string(&table)?)
            .context("the configuration with --set and the flags applied")?;
        if !self.listen.is_empty() {
            c.node.listen = self.listen;
        }
        c.node.bootstrap.extend(self.bootstrap);
        c.node.announce.extend(self.announce);
        if let Some(h) = self.http {
            c.http.listen = Some(h);
        }
        if self.no_http {
            c.http.listen = None;
        }
        c.node.mdns |= self.mdns;
        c.relay.serve |= self.serve_relay;
        c.node.autonat_global_only &= !self.autonat_private_ips;
        if let Some(p) = self.psk {
            c.access.psk_file = Some(p);
        }
        c.access.allow_peers.extend(self.allow);
        if let Some(v) = self.data {
            use murmur_gossip::task::DataSource;
            c.task.data = match v.as_str() {
                "digits" => DataSource::Digits,
                "breast-cancer" => DataSource::BreastCancer,
                "mnist" => DataSource::Mnist,
                "shakespeare" => DataSource::Shakespeare,
                other => match other.strip_prefix("csv:") {
                    Some(path) => DataSource::Csv {
                        path: path.into(),
                        options: Default::default(),
                        test_path: None,
                    },
                    None => anyhow::bail!(
                        "--data {other:?}: expected digits, breast-cancer, mnist, shakespeare or csv:<path>"
                    ),
                },
            };
        }
        if let Some(v) = self.model {
            c.task.model = v
                .parse()
                .map_err(|e| anyhow::anyhow!("--model {v:?}: {e}"))?;
        }
        if let Some(v) = self.partition {
            c.task.partition = v
                .parse()
                .map_err(|e| anyhow::anyhow!("--partition {v:?}: {e}"))?;
        }
        if let Some(v) = self.topology {
            if v == "one-peer-exponential" {
                // A time-varying graph over the exponential rule's edges.
                c.topology.rule = "exponential".into();
                c.gossip.push = v;
            } else {
                c.topology.rule = v;
            }
        }
        c.log.json |= self.json_logs;
        Ok(c)
    }
}

#[derive(Args, Debug, Clone)]
struct DemoArgs {
    /// What the swarm trains: digits (softmax on the bundled UCI digits) or mnist-cnn (the
    /// LeNet-style CNN on the bundled MNIST-10k).
    #[arg(long, default_value = "digits", value_parser = ["digits", "mnist-cnn"])]
    task: String,
    /// Daemons to start.
    #[arg(long, default_value_t = 8)]
    peers: usize,
    /// Rounds each daemon trains (default: 1000 for digits, 500 for mnist-cnn).
    #[arg(long)]
    rounds: Option<u64>,
    /// Working directory (default: a temporary one, removed afterwards).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Keep the daemons running after the report, their dashboards up, until Ctrl-C (and
    /// keep their working directory).
    #[arg(long)]
    keep: bool,
    /// Give up after this many seconds (default: 120 for digits, 900 for mnist-cnn).
    #[arg(long)]
    timeout: Option<u64>,
    /// Transport the daemons listen and dial on (quic: QUIC v1 only, no TCP listener).
    #[arg(long, value_enum, default_value_t = murmur_daemon::demo::Transport::Tcp)]
    transport: murmur_daemon::demo::Transport,
    /// Extra `murmur run` flags for every daemon (after `--`).
    #[arg(last = true)]
    extra: Vec<String>,
}

/// A bundled demo task: its `murmur run` flags, default rounds and timeout, and what it says.
struct DemoTask {
    flags: &'static [&'static str],
    rounds: u64,
    timeout_secs: u64,
    what: &'static str,
}

impl DemoArgs {
    fn task(&self) -> DemoTask {
        match self.task.as_str() {
            "mnist-cnn" => DemoTask {
                flags: &DEMO_MNIST_CNN,
                rounds: 500,
                timeout_secs: 900,
                what: "the LeNet-style CNN (cnn:8,32,128, 73,594 parameters) on the bundled MNIST-10k",
            },
            _ => DemoTask {
                flags: &[],
                rounds: 1000,
                timeout_secs: 120,
                what: "softmax regression on the bundled digits",
            },
        }
    }

    fn rounds(&self) -> u64 {
        self.rounds.unwrap_or_else(|| self.task().rounds)
    }

    fn options(&self) -> Result<DemoOptions> {
        let task = self.task();
        let rounds = self.rounds();
        let timeout = self.timeout.unwrap_or(task.timeout_secs);
        anyhow::ensure!(self.peers >= 1, "--peers = 0 must be >= 1");
        anyhow::ensure!(rounds >= 1, "--rounds = 0 must be >= 1");
        anyhow::ensure!(timeout >= 1, "--timeout = 0 must be >= 1 (seconds)");
        // The task's flags first, so flags after `--` override them.
        let mut extra: Vec<String> = task.flags.iter().map(|s| s.to_string()).collect();
        extra.extend(self.extra.iter().cloned());
        Ok(DemoOptions {
            peers: self.peers,
            rounds,
            extra,
            dir: self.dir.clone(),
            keep: self.keep,
            timeout: Duration::from_secs(timeout),
            transport: self.transport,
        })
    }
}

/// `murmur demo --task mnist-cnn`: MNIST-10k (first 8000 train, IID shards; the first 1000 of
/// the last 2000 evaluated), the CNN, SGD with momentum, CHOCO with the threshold codec.
const DEMO_MNIST_CNN: [&str; 12] = [
    "--data",
    "mnist",
    "--model",
    "cnn",
    "--lr",
    "0.1",
    "--codec",
    "threshold:0.02",
    "--gamma",
    "0.1",
    "--eval-every",
    "50",
];

fn init_logs(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colour only for a person at a terminal: log files and pipes get plain text.
    let colour = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(colour)
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

fn main() {
    let cli = Cli::parse();
    if let Err(e) = run_command(cli.command) {
        // The whole chain on one line, in the user's terms (no Rust debug output).
        eprintln!("murmur: {e:#}");
        std::process::exit(1);
    }
}

fn run_command(command: Command) -> Result<()> {
    match command {
        Command::Run(args) => {
            let start = if args.fresh {
                node::Start::Fresh
            } else {
                node::Start::Resume
            };
            let config = (*args).config()?;
            init_logs(config.log.json);
            node::run(config, start)
        }
        Command::Status { addr, json } => {
            let body = http::get(&addr, "/status", Duration::from_secs(5))?;
            if json {
                println!("{body}");
            } else {
                let s: murmur_daemon::status::Status = serde_json::from_str(&body)?;
                print_status(&s);
            }
            Ok(())
        }
        Command::Demo(args) => {
            let start = Instant::now();
            let exe = std::env::current_exe()?;
            println!(
                "murmur demo: {} daemons on 127.0.0.1, {}, {} rounds each",
                args.peers,
                args.task().what,
                args.rounds()
            );
            let opts = args.options()?;
            if !args.keep {
                println!(
                    "  (each node's dashboard closes when the demo ends; --keep leaves the \
                     daemons and their dashboards up until Ctrl-C)"
                );
            }
            let report = demo::run_swarm_then(
                &exe,
                &opts,
                |line| println!("  {line}"),
                |report, nodes| {
                    if !args.keep {
                        return Ok(());
                    }
                    demo::print_report(report, start.elapsed().as_secs_f64());
                    for (i, node) in nodes.iter().enumerate() {
                        println!("node {i} dashboard: http://{}/", node.http);
                    }
                    println!("the daemons keep serving; press Ctrl-C to stop them");
                    tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()?
                        .block_on(tokio::signal::ctrl_c())?;
                    println!("stopping the daemons");
                    Ok(())
                },
            )?;
            if args.keep {
                println!(
                    "clean exits after SIGTERM: {}/{}",
                    report.clean_exits.unwrap_or(0),
                    report.statuses.len()
                );
                println!(
                    "{}",
                    demo::summary_line(&report, start.elapsed().as_secs_f64())
                );
            } else {
                demo::print_report(&report, start.elapsed().as_secs_f64());
            }
            Ok(())
        }
        Command::Bench(args) => bench(&args),
        Command::Config => {
            print!("{}", annotated_default_config()?);
            Ok(())
        }
        Command::Psk { out } => {
            identity::write_secret(&out, &identity::generate_psk())?;
            println!("wrote {}", out.display());
            Ok(())
        }
        Command::Id { data_dir } => {
            let mut c = Config::default();
            c.node.data_dir = data_dir;
            println!("{}", node::peer_id_of(&c)?);
            Ok(())
        }
    }
}

/// The default configuration as TOML, with the optional keys (unset by default) shown as
/// comments under their tables.
fn annotated_default_config() -> Result<String> {
    let optional = [
        (
            "[node]\n",
            "# identity_file = \"murmur-data/identity.key\"  # default: <data_dir>/identity.key\n",
        ),
        (
            "[access]\n",
            "# psk_file = \"swarm.key\"  # private network: only key holders connect\n",
        ),
        (
            "[gossip]\n",
            "# clip_radius = 1.0  # clipped gossip (robust to hostile neighbours)\n# max_message_bytes = 1048576  # default: 8 x dim + 4096\n# outer_lr = 0.7  # DiLoCo outer Nesterov step on each round's pseudo-gradient (with local_steps >= 8)\n",
        ),
        (
            "[privacy]\n",
            "# clip = 1.0  # differential privacy: clip each round's update to this L2 norm\n# noise_multiplier = 4.0  # and add noise of std noise_multiplier x clip (both set: on)\n",
        ),
        (
            "[run]\n",
            "# max_rounds = 1000  # stop training (keep serving); default: train until stopped\n",
        ),
        (
            "[checkpoint]\n",
            "# dir = \"murmur-data/checkpoints\"  # default: <data_dir>/checkpoints\n",
        ),
    ];
    let mut text = toml::to_string(&Config::default())?;
    for (table, comment) in optional {
        if let Some(at) = text.find(table) {
            text.insert_str(at + table.len(), comment);
        }
    }
    // The result must still parse to the defaults.
    let back: Config = toml::from_str(&text)?;
    debug_assert_eq!(
        toml::to_string(&back)?,
        toml::to_string(&Config::default())?
    );
    Ok(text)
}

/// The status phase in words (the JSON keeps the short machine names).
fn phase_text(s: &murmur_daemon::status::Status) -> String {
    if s.done {
        return format!(
            "done: trained its {} rounds, still serving its model",
            s.round
        );
    }
    match s.phase.as_str() {
        "idle" => "idle: waiting for peers before the first round".to_string(),
        "starting" => "starting: waiting for the neighbours' hellos".to_string(),
        "wants-compute" | "training" => "training".to_string(),
        "mixing" => "training (waiting for the neighbours' updates)".to_string(),
        "isolated" => "paused: no neighbours (training resumes when one is back)".to_string(),
        "stopped" => "stopped".to_string(),
        other => other.to_string(),
    }
}

fn print_status(s: &murmur_daemon::status::Status) {
    println!("peer       {}", s.peer_id);
    println!("shard      {} of {}", s.shard.0, s.shard.1);
    println!("phase      {}", phase_text(s));
    println!("round      {}", s.round);
    if let Some(a) = s.accuracy {
        println!(
            "accuracy   {a:.4} (round {})",
            s.evaluated_round.unwrap_or_default()
        );
    }
    if let Some(l) = s.loss {
        println!("loss       {l:.4}");
    }
    if let Some(p) = &s.privacy {
        println!(
            "privacy    epsilon {:.4} at delta {:e} for this node's data, {} noised updates \
             (clip {}, noise multiplier {}; {} of this run's {} updates clipped)",
            p.epsilon,
            p.delta,
            p.rounds,
            p.clip,
            p.noise_multiplier,
            p.clipped_this_run,
            p.rounds_this_run
        );
    }
    println!(
        "neighbours {} (known {}, connected {})",
        s.neighbours.len(),
        s.known_peers,
        s.connected_peers
    );
    for n in &s.neighbours {
        let path = match s.neighbour_paths.get(n) {
            Some(murmur_daemon::status::LinkPath::Relayed) => " (relayed)",
            Some(murmur_daemon::status::LinkPath::Direct) => " (direct)",
            None => "",
        };
        let mut figures = String::new();
        if let Some(l) = s.links.iter().find(|l| &l.peer == n) {
            figures.push_str(&format!(
                ": sent {} B, received {} B, {} updates sent, {} applied",
                l.bytes_sent, l.bytes_received, l.updates_sent, l.updates_applied
            ));
            if let (Some(b), Some(bound)) = (l.bits_per_entry, l.entropy_bound_bits_per_entry) {
                figures.push_str(&format!(", {b:.2} bits/entry (bound {bound:.2})"));
            }
            if let Some(st) = l.staleness {
                figures.push_str(&format!(", staleness {st}"));
            }
            if l.rejected_total() > 0 {
                figures.push_str(&format!(", {} rejected", l.rejected_total()));
            }
        }
        if let Some(rtt) = s.link_rtt_ms.get(n) {
            figures.push_str(&format!(", rtt {rtt:.2} ms"));
        }
        println!("           {n}{path}{figures}");
    }
    if let Some(u) = &s.update {
        println!(
            "update     {:.3}% of entries sent in round {}, residual |x - x_hat| {:.4e}",
            100.0 * u.density,
            u.round,
            u.residual_norm
        );
    }
    let nat = &s.nat;
    let relays = if nat.relays.is_empty() {
        "no relay reservation".to_string()
    } else {
        format!("reserved on relays {}", nat.relays.join(", "))
    };
    println!("reachable  {} ({relays})", nat.reachability.label());
    if nat.relay_serving {
        println!(
            "relay      serving: {} circuits relayed",
            nat.circuits_served
        );
    }
    println!(
        "relayed    sent {} B received {} B; {} hole punches ({} direct); {} model downloads refused",
        nat.relayed_bytes_sent,
        nat.relayed_bytes_received,
        nat.hole_punch_attempts,
        nat.hole_punch_successes,
        nat.downloads_refused
    );
    println!(
        "bytes      sent {} received {} (updates {} B vs {} B dense)",
        s.bytes_sent, s.bytes_received, s.update_bytes_sent, s.dense_update_bytes
    );
    println!(
        "rejected   {} by the protocol, {} by access control; {} duplicate or replayed updates dropped",
        s.rejected_protocol, s.rejected_access, s.duplicates_dropped
    );
    println!(
        "time       {:.1}% compute, {:.1}% waiting on the network over {} rounds",
        100.0 * s.timing.compute_share(),
        100.0 * s.timing.wait_share(),
        s.timing.rounds
    );
    if let Some(r) = s.resumed_from {
        println!("resumed    from round {r}");
    }
    if let Some((from, round)) = &s.adopted {
        println!("adopted    model of {from} at round {round}");
    }
    let last = match s.last_checkpoint {
        Some(round) => format!("last at round {round}"),
        None => "none yet".to_string(),
    };
    println!(
        "checkpoints {} written ({last}); up {:.0}s",
        s.checkpoints, s.uptime_secs
    );
    for l in &s.listen {
        println!("listen     {l}");
    }
}

/// Runs the same swarm with compute/communication overlap off and on and reports, for each,
/// the share of round time spent waiting on the network, the CPU each peer-round costs in
/// steady state, the start-up time to the first round, the share of the bytes libp2p wrote
/// that were gossip, and the largest degree against the neighbour rule's bound.
fn bench(args: &DemoArgs) -> Result<()> {
    let start = Instant::now();
    let exe = std::env::current_exe()?;
    println!(
        "murmur bench: {} daemons on loopback, {} rounds, overlap off vs on",
        args.peers,
        args.rounds()
    );
    println!(
        "{:<8} {:>8} {:>7} {:>7} {:>9} {:>10} {:>9} {:>9} {:>7} {:>9}",
        "overlap",
        "compute",
        "wait",
        "gossip",
        "rounds/s",
        "µs/p-rnd",
        "start s",
        "gossip/wire",
        "degree",
        "accuracy"
    );
    let mut runs = Vec::new();
    let mut rule = None;
    for overlap in [false, true] {
        let mut opts = args.options()?;
        opts.extra
            .extend(["--overlap".to_string(), overlap.to_string()]);
        let report = demo::run_swarm(&exe, &opts, |_| {})?;
        let n = report.statuses.len() as f64;
        let gossip: f64 = report
            .statuses
            .iter()
            .map(|s| {
                let t = &s.timing;
                t.gossip_secs / (t.compute_secs + t.gossip_secs + t.wait_secs).max(1e-12)
            })
            .sum::<f64>()
            / n;
        // Rounds per second of training proper (startup and discovery excluded).
        let rate = report
            .statuses
            .iter()
            .map(|s| {
                let t = &s.timing;
                t.rounds as f64 / (t.compute_secs + t.gossip_secs + t.wait_secs).max(1e-9)
            })
            .sum::<f64>()
            / n;
        let cpu_us = report
            .steady_cpu
            .map_or(f64::NAN, |c| c.us_per_peer_round());
        let startup = report
            .statuses
            .iter()
            .filter_map(|s| s.first_round_secs)
            .fold(0.0f64, f64::max);
        let gossip_bytes: u64 = report.statuses.iter().map(|s| s.bytes_sent).sum();
        let gossip_share = gossip_bytes as f64 / report.wire_bytes.max(1) as f64;
        let degree = report
            .statuses
            .iter()
            .map(|s| s.peak_degree)
            .max()
            .unwrap_or(0);
        // The rule the daemons report running (whatever flag or config file set it).
        let name = &report.statuses[0].neighbour_rule;
        let parsed: murmur_topology::NeighbourRule = name
            .parse()
            .map_err(|e| anyhow::anyhow!("the daemons' neighbour rule {name:?}: {e}"))?;
        let degree_bound = parsed.max_degree(args.peers);
        rule = Some((name.clone(), degree_bound));
        println!(
            "{:<8} {:>7.1}% {:>6.1}% {:>6.1}% {:>9.1} {:>10.0} {:>9.2} {:>11.3} {:>7} {:>9.4}",
            overlap,
            100.0 * report.compute_share(),
            100.0 * report.wait_share(),
            100.0 * gossip,
            rate,
            cpu_us,
            startup,
            gossip_share,
            format!("{degree}/{degree_bound}"),
            report.worst_accuracy()
        );
        runs.push(BenchRun {
            wait_share: report.wait_share(),
            compute_share: report.compute_share(),
            rounds_per_sec: rate,
            cpu_us,
            startup,
            gossip_share,
            degree,
        });
    }
    let (off, on) = (&runs[0], &runs[1]);
    let (rule_name, degree_bound) = rule.expect("two swarms ran");
    println!(
        "µs/p-rnd: CPU of all daemons per peer-round over the last three quarters of the run; \
         start s: slowest daemon's time to its first round; gossip/wire: gossip frame bytes \
         over all bytes libp2p wrote; degree: most neighbours any daemon had / the {rule_name} \
         rule's bound for {} peers",
        args.peers
    );
    println!(
        "summary: peers={} rounds={} wait_share={:.3} compute_share={:.3} wait_share_overlap={:.3} compute_share_overlap={:.3} rounds_per_sec={:.1} rounds_per_sec_overlap={:.1} cpu_us_per_peer_round={:.0} cpu_us_per_peer_round_overlap={:.0} startup_s={:.2} gossip_share_of_wire={:.3} max_degree={} degree_bound={degree_bound} seconds={:.1}",
        args.peers,
        args.rounds(),
        off.wait_share,
        off.compute_share,
        on.wait_share,
        on.compute_share,
        off.rounds_per_sec,
        on.rounds_per_sec,
        off.cpu_us,
        on.cpu_us,
        off.startup.max(on.startup),
        off.gossip_share.min(on.gossip_share),
        off.degree.max(on.degree),
        start.elapsed().as_secs_f64()
    );
    Ok(())
}

/// One `murmur bench` swarm's figures.
struct BenchRun {
    wait_share: f64,
    compute_share: f64,
    rounds_per_sec: f64,
    cpu_us: f64,
    startup: f64,
    gossip_share: f64,
    degree: usize,
}
