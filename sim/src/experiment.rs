//! Sweeps: one base scenario, many variants, tidy CSV tables and PNG plots.
//!
//! ```toml
//! name = "compression"
//! consensus_rate = false        # also measure the per-round consensus contraction
//! [base]                        # a scenario (see crate::scenario)
//! peers = 16
//! [grid]                        # cartesian product of dotted keys
//! "gossip.codec" = ["dense", "threshold:0.01"]
//! [[variant]]                   # or explicit variants (combined with the grid)
//! name = "h5"
//! set = { "peer.local_steps" = 5 }
//! [[plot]]
//! file = "accuracy_vs_bytes.png"
//! x = "bytes"                   # a metric column (rows) or a summary column
//! y = "accuracy_avg"
//! source = "rows"               # or "summary": one point per variant
//! series = "gossip.codec"       # a grid/variant parameter, default: the variant name
//! where = { peers = "64" }      # keep variants whose parameters match
//! log_x = true
//! x_label = "bytes sent (log scale)"   # axis labels with units (default: the column)
//! reference = ["dense"]         # a variant's final y as a horizontal line
//! ```
//! Outputs in the output directory: `<name>_metrics.csv` (every tick of every variant),
//! `<name>_summary.csv` (one line per variant) and each plot.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use rayon::prelude::*;
use serde::Deserialize;

use crate::metrics::{EvalRow, MetricsFormat, MetricsWriter, csv_field};
use crate::plot::{self, Chart, Series};
use crate::scenario::{self, Baseline, Scenario, merge, set_dotted};
use crate::topo;

/// One plot of an experiment.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlotSpec {
    /// Output file name (PNG).
    pub file: String,
    /// Title (default: the file name).
    #[serde(default)]
    pub title: Option<String>,
    /// X column.
    pub x: String,
    /// Y column.
    pub y: String,
    /// "rows" (a line per series over ticks) or "summary" (a point per variant).
    #[serde(default = "rows")]
    pub source: String,
    /// Parameter naming the series (default: variant name).
    #[serde(default)]
    pub series: Option<String>,
    /// Keep only variants whose parameters equal these.
    #[serde(default, rename = "where")]
    pub filter: BTreeMap<String, toml::Value>,
    /// Include baseline runs (all-reduce, D-PSGD) of the variants.
    #[serde(default = "yes")]
    pub baselines: bool,
    /// log10 x.
    #[serde(default)]
    pub log_x: bool,
    /// log10 y.
    #[serde(default)]
    pub log_y: bool,
    /// Draw y = x.
    #[serde(default)]
    pub diagonal: bool,
    /// X axis label with its unit (default: the column name).
    #[serde(default)]
    pub x_label: Option<String>,
    /// Y axis label with its unit (default: the column name).
    #[serde(default)]
    pub y_label: Option<String>,
    /// Variants (main runs, by name) whose final y is drawn as a horizontal reference line,
    /// e.g. a run that cannot sit on this x axis (no ε without privacy).
    #[serde(default)]
    pub reference: Vec<String>,
}

fn rows() -> String {
    "rows".into()
}
fn yes() -> bool {
    true
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct VariantSpec {
    name: String,
    #[serde(default)]
    set: toml::Table,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExperimentFile {
    name: String,
    #[serde(default)]
    consensus_rate: bool,
    base: toml::Table,
    #[serde(default)]
    grid: toml::Table,
    #[serde(default, rename = "variant")]
    variants: Vec<VariantSpec>,
    #[serde(default, rename = "plot")]
    plots: Vec<PlotSpec>,
    #[serde(default)]
    headline: Option<HeadlineSpec>,
}

/// The headline comparison of an experiment (`[headline]`): which runs are the candidate
/// recipes, which is the all-reduce reference and which the dense D-PSGD whose bytes the
/// recipes are measured against, and how close to the reference a recipe must end.
///
/// ```toml
/// [headline]
/// metric = "accuracy_avg"     # or "test_loss_avg" (lower is better)
/// tolerance = 0.01            # accuracy: absolute (1 point); loss: relative (0.03 = 3%)
/// allreduce = "dense [allreduce]"
/// dpsgd = "dense"
/// candidates = ["recipe", "threshold:0.02"]
/// wan_recipe = "recipe-wan"   # optional: time to the reference's accuracy on a WAN
/// wan_allreduce = "recipe-wan [allreduce]"
/// prefix = ""                 # prepended to every key ("lm_")
/// ```
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct HeadlineSpec {
    /// The metric column compared.
    pub metric: String,
    /// How far from the reference a recipe may end (see the struct's doc).
    pub tolerance: f64,
    /// The all-reduce run (outcome name).
    pub allreduce: String,
    /// The dense D-PSGD run whose bytes divide.
    pub dpsgd: String,
    /// The runs that compete for the headline.
    pub candidates: Vec<String>,
    /// A WAN run of the recipe, for `time_speedup_wan`.
    #[serde(default)]
    pub wan_recipe: Option<String>,
    /// The all-reduce run on the same WAN.
    #[serde(default)]
    pub wan_allreduce: Option<String>,
    /// Key prefix.
    #[serde(default)]
    pub prefix: String,
    /// Name of the bytes-saved key (after the prefix).
    #[serde(default = "bytes_saved_key")]
    pub saved_key: String,
}

fn bytes_saved_key() -> String {
    "bytes_saved".into()
}

impl HeadlineSpec {
    /// Whether the metric is a loss (lower is better).
    fn is_loss(&self) -> bool {
        self.metric.contains("loss")
    }

    /// The value a run must reach to count as "within tolerance" of `reference`.
    fn target(&self, reference: f64) -> f64 {
        if self.is_loss() {
            reference * (1.0 + self.tolerance)
        } else {
            reference - self.tolerance
        }
    }

    fn reaches(&self, value: f64, target: f64) -> bool {
        if self.is_loss() {
            value <= target
        } else {
            value >= target
        }
    }

    /// The key naming the metric's value ("accuracy", "val_loss").
    fn value_key(&self) -> &'static str {
        if self.is_loss() {
            "val_loss"
        } else {
            "accuracy"
        }
    }
}

/// The name of a variant's run in the tables: the variant's own, or "<variant> [allreduce]"
/// for one of its baselines.
fn run_name(variant: &str, baseline: Option<Baseline>) -> String {
    match baseline {
        None => variant.to_string(),
        Some(b) => format!("{variant} [{}]", b.label()),
    }
}

/// A headline: the human-readable table and the summary's key=value pairs.
pub type Headline = (String, Vec<(String, String)>);

/// First simulated time at which a run's metric reaches `target` (rows in time order).
fn time_to(spec: &HeadlineSpec, rows: &[EvalRow], target: f64) -> Option<f64> {
    rows.iter()
        .find(|r| row_value(r, &spec.metric).is_some_and(|v| spec.reaches(v, target)))
        .map(|r| r.time_s)
}

/// A variant ready to run.
#[derive(Clone, Debug)]
pub struct Variant {
    /// Unique name.
    pub name: String,
    /// Parameters that distinguish it (grid keys and `variant` name).
    pub params: BTreeMap<String, String>,
    /// The scenario.
    pub scenario: Scenario,
}

/// A parsed experiment.
#[derive(Clone, Debug)]
pub struct Experiment {
    /// Name (file prefix of its outputs).
    pub name: String,
    /// Measure consensus contraction per variant.
    pub consensus_rate: bool,
    /// Variants in order.
    pub variants: Vec<Variant>,
    /// Plots.
    pub plots: Vec<PlotSpec>,
    /// The headline comparison, if the file asks for one.
    pub headline: Option<HeadlineSpec>,
}

fn value_text(v: &toml::Value) -> String {
    match v {
        toml::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

impl Experiment {
    /// Parses an experiment; `overlay` (dotted CLI overrides already nested) applies to the
    /// base of every variant.
    pub fn from_table(table: toml::Table, overlay: &toml::Table) -> anyhow::Result<Self> {
        let file: ExperimentFile = toml::Value::Table(table)
            .try_into()
            .context("invalid experiment file")?;
        let mut base = file.base.clone();
        merge(&mut base, overlay);
        // Cartesian product of the grid.
        let mut combos: Vec<Vec<(String, toml::Value)>> = vec![Vec::new()];
        for (key, values) in &file.grid {
            let values = values
                .as_array()
                .with_context(|| format!("grid.{key} must be an array"))?;
            let mut next = Vec::new();
            for c in &combos {
                for v in values {
                    let mut c = c.clone();
                    c.push((key.clone(), v.clone()));
                    next.push(c);
                }
            }
            combos = next;
        }
        let specs = if file.variants.is_empty() {
            vec![None]
        } else {
            file.variants.iter().map(Some).collect()
        };
        let mut variants = Vec::new();
        for combo in &combos {
            for spec in &specs {
                let mut t = base.clone();
                let mut params = BTreeMap::new();
                let mut parts = Vec::new();
                if let Some(s) = spec {
                    for (k, v) in &s.set {
                        set_dotted(&mut t, k, v.clone());
                        if !v.is_table() {
                            params.insert(k.clone(), value_text(v));
                        }
                    }
                    params.insert("variant".to_string(), s.name.clone());
                    parts.push(s.name.clone());
                }
                for (k, v) in combo {
                    set_dotted(&mut t, k, v.clone());
                    params.insert(k.clone(), value_text(v));
                    parts.push(format!(
                        "{}={}",
                        k.rsplit('.').next().unwrap_or(k),
                        value_text(v)
                    ));
                }
                let name = if parts.is_empty() {
                    file.name.clone()
                } else {
                    parts.join(",")
                };
                set_dotted(&mut t, "name", toml::Value::String(name.clone()));
                let scenario =
                    Scenario::from_table(t).with_context(|| format!("variant {name}"))?;
                variants.push(Variant {
                    name,
                    params,
                    scenario,
                });
            }
        }
        if variants.is_empty() {
            bail!("experiment {} has no variants", file.name);
        }
        if let Some(h) = &file.headline {
            // Every run the headline names must be one the sweep makes: a variant, or a
            // variant's baseline ("<variant> [allreduce]").
            let runs: Vec<String> = variants
                .iter()
                .flat_map(|v| {
                    std::iter::once(run_name(&v.name, None)).chain(
                        v.scenario
                            .baselines
                            .iter()
                            .map(move |b| run_name(&v.name, Some(*b))),
                    )
                })
                .collect();
            let named = [&h.allreduce, &h.dpsgd]
                .into_iter()
                .chain(&h.candidates)
                .chain(h.wan_recipe.iter())
                .chain(h.wan_allreduce.iter());
            for n in named {
                if !runs.contains(n) {
                    bail!(
                        "headline names {n:?}, which is not a run of this experiment (runs: {runs:?})"
                    );
                }
            }
            if !EvalRow::HEADER.contains(&h.metric.as_str()) {
                bail!("headline.metric = {:?} is not a metrics column", h.metric);
            }
        }
        Ok(Experiment {
            name: file.name,
            consensus_rate: file.consensus_rate,
            variants,
            plots: file.plots,
            headline: file.headline,
        })
    }

    /// Runs every variant (in parallel; each run is deterministic on its own).
    pub fn run(&self, on_done: impl Fn(&str) + Send + Sync) -> anyhow::Result<ExperimentResult> {
        let results: Vec<anyhow::Result<Vec<VariantOutcome>>> = self
            .variants
            .par_iter()
            .map(|v| {
                let outcome = scenario::run(&v.scenario, |_, _| {})
                    .with_context(|| format!("variant {}", v.name))?;
                on_done(&v.name);
                let gap = if self.consensus_rate {
                    topo::build(&v.scenario.topology, v.scenario.peers, v.scenario.seed)
                        .ok()
                        .and_then(|c| topo::spectral_gap(&c.schedule))
                } else {
                    None
                };
                Ok(outcome
                    .variants
                    .into_iter()
                    .enumerate()
                    .map(|(k, r)| {
                        let mut params = v.params.clone();
                        // scenario::run returns the main run, then the baselines in order.
                        let baseline = k.checked_sub(1).map(|b| v.scenario.baselines[b]);
                        params.insert(
                            "baseline".into(),
                            baseline.map_or("none", Baseline::label).to_string(),
                        );
                        let name = run_name(&v.name, baseline);
                        VariantOutcome {
                            name,
                            params,
                            gap: if k == 0 { gap } else { None },
                            rows: r.rows,
                            wall_s: r.wall_s,
                            dense_equivalent_bytes: r
                                .report
                                .as_ref()
                                .map(|x| x.dense_equivalent_bytes),
                            // The all-reduce baseline is not private.
                            delta: r
                                .report
                                .as_ref()
                                .and(v.scenario.peer.privacy.map(|p| p.delta)),
                        }
                    })
                    .collect())
            })
            .collect();
        let mut outcomes = Vec::new();
        for r in results {
            outcomes.extend(r?);
        }
        Ok(ExperimentResult {
            name: self.name.clone(),
            consensus_rate: self.consensus_rate,
            outcomes,
            plots: self.plots.clone(),
            headline: self.headline.clone(),
        })
    }
}

/// One finished run (a variant or one of its baselines).
#[derive(Clone, Debug)]
pub struct VariantOutcome {
    /// Name.
    pub name: String,
    /// Parameters (grid keys, `variant`, `baseline`).
    pub params: BTreeMap<String, String>,
    /// Spectral gap of its graph, when measured.
    pub gap: Option<f64>,
    /// Ticks.
    pub rows: Vec<EvalRow>,
    /// Wall-clock seconds.
    pub wall_s: f64,
    /// Dense-equivalent traffic.
    pub dense_equivalent_bytes: Option<u64>,
    /// Privacy on: the δ of the `epsilon` column.
    pub delta: Option<f64>,
}

/// Per-round contraction factor of ‖x − x̄‖ measured from the ticks: the geometric mean
/// over the second half of the ticks still above the f32 noise floor (the early ticks are
/// dominated by the fast modes, the asymptotic rate is set by the slowest one).
pub fn consensus_rate(rows: &[EvalRow]) -> Option<f64> {
    let c0 = rows.first()?.consensus;
    if c0.is_nan() || c0 <= 0.0 {
        return None;
    }
    let valid: Vec<&EvalRow> = rows
        .iter()
        .take_while(|r| r.consensus > c0 * 1e-10)
        .collect();
    if valid.len() < 3 {
        // Converged below the floor within a couple of ticks: use the first two.
        let a = rows.first()?;
        let b = rows.get(1)?;
        let dr = b.round.checked_sub(a.round).filter(|d| *d > 0)? as f64;
        let ratio = (b.consensus.max(c0 * 1e-14) / a.consensus).sqrt();
        return Some(ratio.powf(1.0 / dr));
    }
    let a = valid[valid.len() / 2];
    let b = valid[valid.len() - 1];
    let dr = b.round.checked_sub(a.round).filter(|d| *d > 0)? as f64;
    Some((b.consensus / a.consensus).sqrt().powf(1.0 / dr))
}

impl VariantOutcome {
    /// Summary columns (parameters first, then final metrics).
    pub fn summary(&self) -> BTreeMap<String, String> {
        let mut m: BTreeMap<String, String> = self.params.clone();
        let l = self.rows.last().cloned().unwrap_or_default();
        let f = |x: f64| format!("{x}");
        m.insert("name".into(), self.name.clone());
        m.insert("accuracy_avg".into(), f(l.accuracy_avg));
        m.insert("accuracy_mean".into(), f(l.accuracy_mean));
        m.insert("accuracy_worst".into(), f(l.accuracy_worst));
        m.insert("train_loss".into(), f(l.train_loss));
        m.insert("consensus".into(), f(l.consensus));
        m.insert("bytes".into(), l.bytes.to_string());
        m.insert("bytes_per_peer".into(), f(l.bytes_per_peer));
        m.insert("messages".into(), l.messages.to_string());
        m.insert("round".into(), l.round.to_string());
        m.insert("steps_mean".into(), f(l.steps_mean));
        m.insert("time_s".into(), f(l.time_s));
        m.insert("rejected".into(), l.rejected.to_string());
        m.insert("wall_s".into(), format!("{:.3}", self.wall_s));
        if let Some(d) = self.dense_equivalent_bytes {
            m.insert(
                "bytes_saved_vs_dense".into(),
                f(d as f64 / l.bytes.max(1) as f64),
            );
        }
        if let Some(delta) = self.delta {
            m.insert("epsilon".into(), f(l.epsilon));
            m.insert("delta".into(), f(delta));
        }
        if let Some(g) = self.gap {
            m.insert("spectral_gap".into(), f(g));
            m.insert("one_minus_gap".into(), f(1.0 - g));
        }
        if let Some(r) = consensus_rate(&self.rows) {
            m.insert("consensus_rate".into(), f(r));
        }
        m
    }
}

/// A finished experiment.
#[derive(Clone, Debug)]
pub struct ExperimentResult {
    /// Name.
    pub name: String,
    /// Whether consensus rates were measured.
    pub consensus_rate: bool,
    /// Every run.
    pub outcomes: Vec<VariantOutcome>,
    /// Plots to draw.
    pub plots: Vec<PlotSpec>,
    /// The headline comparison, if asked for.
    pub headline: Option<HeadlineSpec>,
}

fn row_value(r: &EvalRow, key: &str) -> Option<f64> {
    let fields = r.fields();
    let i = EvalRow::HEADER.iter().position(|h| *h == key)?;
    fields[i].parse().ok()
}

impl ExperimentResult {
    /// Writes the tables and plots; returns the files written.
    pub fn write(&self, dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
        let mut written = Vec::new();
        let metrics = dir.join(format!("{}_metrics.csv", self.name));
        let mut w = MetricsWriter::create(&metrics, MetricsFormat::Csv)
            .with_context(|| format!("cannot write {}", metrics.display()))?;
        for o in &self.outcomes {
            for r in &o.rows {
                w.write(&o.name, r)?;
            }
        }
        w.finish()?;
        written.push(metrics);
        let summaries: Vec<BTreeMap<String, String>> =
            self.outcomes.iter().map(|o| o.summary()).collect();
        let mut columns: Vec<String> = Vec::new();
        for s in &summaries {
            for k in s.keys() {
                if !columns.contains(k) {
                    columns.push(k.clone());
                }
            }
        }
        // Name first.
        columns.retain(|c| c != "name");
        columns.insert(0, "name".into());
        let path = dir.join(format!("{}_summary.csv", self.name));
        let mut f = std::io::BufWriter::new(std::fs::File::create(&path)?);
        writeln!(f, "{}", columns.join(","))?;
        for s in &summaries {
            let line: Vec<String> = columns
                .iter()
                .map(|c| csv_field(s.get(c).map_or("", String::as_str)))
                .collect();
            writeln!(f, "{}", line.join(","))?;
        }
        f.flush()?;
        written.push(path);
        for p in &self.plots {
            let path = dir.join(&p.file);
            self.draw(p, &summaries, &path)
                .with_context(|| format!("plot {}", p.file))?;
            written.push(path);
        }
        Ok(written)
    }

    fn draw(
        &self,
        p: &PlotSpec,
        summaries: &[BTreeMap<String, String>],
        path: &Path,
    ) -> anyhow::Result<()> {
        let keep = |o: &VariantOutcome| {
            (p.baselines || o.params.get("baseline").is_none_or(|b| b == "none"))
                && p.filter
                    .iter()
                    .all(|(k, v)| o.params.get(k).is_some_and(|x| *x == value_text(v)))
        };
        let label = |o: &VariantOutcome| match &p.series {
            Some(key) => {
                let mut l = o.params.get(key).cloned().unwrap_or_else(|| o.name.clone());
                if let Some(b) = o.params.get("baseline").filter(|b| *b != "none") {
                    l = b.to_string();
                }
                l
            }
            None => o.name.clone(),
        };
        let mut series: Vec<Series> = Vec::new();
        let mut add =
            |name: String, pt: Vec<(f64, f64)>| match series.iter_mut().find(|s| s.name == name) {
                Some(s) => s.points.extend(pt),
                None => series.push(Series { name, points: pt }),
            };
        for (o, s) in self.outcomes.iter().zip(summaries) {
            if !keep(o) {
                continue;
            }
            if p.source == "summary" {
                let get = |k: &str| s.get(k).and_then(|v| v.parse::<f64>().ok());
                if let (Some(x), Some(y)) = (get(&p.x), get(&p.y)) {
                    add(label(o), vec![(x, y)]);
                }
            } else {
                let pts = o
                    .rows
                    .iter()
                    .filter_map(|r| Some((row_value(r, &p.x)?, row_value(r, &p.y)?)))
                    .collect();
                add(label(o), pts);
            }
        }
        for s in &mut series {
            if p.source == "summary" {
                s.points.sort_by(|a, b| a.0.total_cmp(&b.0));
            }
        }
        let mut hlines = Vec::new();
        for name in &p.reference {
            let o = self
                .outcomes
                .iter()
                .find(|o| &o.name == name)
                .with_context(|| format!("reference {name:?} is not a variant"))?;
            let y = o
                .rows
                .last()
                .and_then(|r| row_value(r, &p.y))
                .with_context(|| format!("reference {name:?} has no final {}", p.y))?;
            hlines.push((format!("{name} (final)"), y));
        }
        let chart = Chart {
            title: p.title.clone().unwrap_or_else(|| p.file.clone()),
            x_label: p.x_label.clone().unwrap_or_else(|| p.x.clone()),
            y_label: p.y_label.clone().unwrap_or_else(|| p.y.clone()),
            log_x: p.log_x,
            log_y: p.log_y,
            scatter: p.source == "summary",
            diagonal: p.diagonal,
            hlines,
        };
        plot::draw(path, &chart, &series)
    }

    fn outcome(&self, name: &str) -> anyhow::Result<&VariantOutcome> {
        self.outcomes
            .iter()
            .find(|o| o.name == name)
            .with_context(|| format!("headline: no run named {name:?}"))
    }

    /// The headline comparison (`[headline]`): a table, one line per candidate, and the
    /// key=value pairs for the summary line. The chosen recipe is the candidate with the
    /// largest byte saving against dense D-PSGD among those that end within tolerance of
    /// all-reduce; if none does, the candidate that ends closest, with `within=0`.
    pub fn headline(&self) -> anyhow::Result<Option<Headline>> {
        let Some(spec) = &self.headline else {
            return Ok(None);
        };
        let last = |o: &VariantOutcome| -> f64 {
            o.rows
                .last()
                .and_then(|r| row_value(r, &spec.metric))
                .unwrap_or(f64::NAN)
        };
        let bytes = |o: &VariantOutcome| o.rows.last().map_or(0, |r| r.bytes);
        let allreduce = self.outcome(&spec.allreduce)?;
        let dpsgd = self.outcome(&spec.dpsgd)?;
        let reference = last(allreduce);
        let target = spec.target(reference);
        let dense_bytes = bytes(dpsgd) as f64;
        let mut table = format!(
            "{:<34} {:>12} {:>14} {:>10} {:>7}\n",
            "run", spec.metric, "bytes", "saved(x)", "within"
        );
        let saved = |o: &VariantOutcome| dense_bytes / bytes(o).max(1) as f64;
        let line = |o: &VariantOutcome, within: &str| {
            format!(
                "{:<34} {:>12.4} {:>14} {:>10.1} {:>7}\n",
                o.name,
                last(o),
                bytes(o),
                saved(o),
                within
            )
        };
        let mut rows = Vec::new();
        for name in &spec.candidates {
            let o = self.outcome(name)?;
            let ok = spec.reaches(last(o), target);
            table.push_str(&line(o, if ok { "yes" } else { "no" }));
            rows.push((o, saved(o), ok));
        }
        for o in [allreduce, dpsgd] {
            table.push_str(&line(o, "-"));
        }
        let chosen = rows
            .iter()
            .filter(|r| r.2)
            .max_by(|a, b| a.1.total_cmp(&b.1))
            .or_else(|| {
                rows.iter().min_by(|a, b| {
                    let d = |r: &&(&VariantOutcome, f64, bool)| (last(r.0) - reference).abs();
                    d(a).total_cmp(&d(b))
                })
            });
        let p = &spec.prefix;
        let v = spec.value_key();
        let mut kv = Vec::new();
        if let Some((o, saved, ok)) = chosen {
            kv.push((format!("{p}{}", spec.saved_key), format!("{saved:.1}")));
            kv.push((format!("{p}{v}"), format!("{:.4}", last(o))));
            kv.push((format!("{p}allreduce_{v}"), format!("{reference:.4}")));
            kv.push((format!("{p}dpsgd_{v}"), format!("{:.4}", last(dpsgd))));
            kv.push((format!("{p}within"), u8::from(*ok).to_string()));
            kv.push((format!("{p}recipe"), format!("\"{}\"", o.name)));
        }
        if let (Some(r), Some(a)) = (&spec.wan_recipe, &spec.wan_allreduce) {
            let (r, a) = (self.outcome(r)?, self.outcome(a)?);
            let target = spec.target(last(a));
            let t_a = time_to(spec, &a.rows, target);
            let t_r = time_to(spec, &r.rows, target);
            let speedup = match (t_a, t_r) {
                (Some(t_a), Some(t_r)) if t_r > 0.0 => t_a / t_r,
                _ => 0.0,
            };
            let show = |t: Option<f64>| t.map_or("never".to_string(), |t| format!("{t:.1} s"));
            table.push_str(&format!(
                "WAN: time to {v} {target:.4}: all-reduce {}, {} {}\n",
                show(t_a),
                r.name,
                show(t_r)
            ));
            kv.push((format!("{p}time_speedup_wan"), format!("{speedup:.2}")));
            kv.push((
                format!("{p}wan_allreduce_s"),
                t_a.map_or("nan".into(), |t| format!("{t:.1}")),
            ));
            kv.push((
                format!("{p}wan_recipe_s"),
                t_r.map_or("nan".into(), |t| format!("{t:.1}")),
            ));
        }
        Ok(Some((table, kv)))
    }

    /// key=value headline of the sweep.
    pub fn summary_line(&self) -> String {
        let main: Vec<&VariantOutcome> = self
            .outcomes
            .iter()
            .filter(|o| o.params.get("baseline").is_none_or(|b| b == "none"))
            .collect();
        let best = main
            .iter()
            .filter_map(|o| o.rows.last().map(|r| (o, r.accuracy_avg)))
            .filter(|(_, a)| a.is_finite())
            .max_by(|a, b| a.1.total_cmp(&b.1));
        let wall: f64 = self.outcomes.iter().map(|o| o.wall_s).sum();
        let mut s = format!("experiment={} variants={}", self.name, main.len());
        if let Some((o, a)) = best {
            s.push_str(&format!(" best_accuracy={a:.4} best=\"{}\"", o.name));
        }
        if let Ok(Some((_, kv))) = self.headline() {
            for (k, v) in kv {
                s.push_str(&format!(" {k}={v}"));
            }
        }
        s.push_str(&format!(" wall_s={wall:.1}"));
        s
    }
}
