//! What the simulator measures at each evaluation tick, and where it writes it.
//!
//! One [`EvalRow`] per tick, written as CSV (header once) or JSON lines. Accuracy and
//! consensus are over honest peers that are currently running; traffic counts every frame
//! every peer handed to the network since the start (restarted peers included).

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use serde::Serialize;

/// One evaluation tick.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct EvalRow {
    /// Simulated time, seconds.
    pub time_s: f64,
    /// Smallest round completed by a running honest peer.
    pub round: u64,
    /// Mean round completed.
    pub round_mean: f64,
    /// Local optimisation steps per peer so far (mean).
    pub steps_mean: f64,
    /// Mean of the peers' last minibatch loss.
    pub train_loss: f64,
    /// Test loss of the average model.
    pub test_loss_avg: f64,
    /// Test accuracy of the average model x̄ (NaN for regression).
    pub accuracy_avg: f64,
    /// Mean test accuracy of the peers' own models.
    pub accuracy_mean: f64,
    /// Worst peer's test accuracy.
    pub accuracy_worst: f64,
    /// Consensus distance (1/n) Σ_i ‖x_i − x̄‖² (`murmur_gossip::consensus`).
    pub consensus: f64,
    /// Bytes sent by all peers.
    pub bytes: u64,
    /// Mean bytes sent per peer.
    pub bytes_per_peer: f64,
    /// Most bytes sent by one peer.
    pub bytes_per_peer_max: u64,
    /// Frames sent by all peers.
    pub messages: u64,
    /// Mean frames per peer.
    pub messages_per_peer: f64,
    /// Frames rejected by honest peers.
    pub rejected: u64,
    /// Honest peers running.
    pub live_peers: usize,
    /// `consensus / ‖x̄‖²`: what the `consensus=` summary key reports, as the daemon's does
    /// (a column appended after those of earlier versions).
    pub consensus_relative: f64,
    /// Privacy on: the largest ε over the honest peers (each peer's noised updates so far,
    /// every incarnation of it counted, at the scenario's δ); NaN when privacy is off. The
    /// last column of the CSV.
    pub epsilon: f64,
}

impl EvalRow {
    /// CSV column names, in [`EvalRow::fields`] order.
    pub const HEADER: [&'static str; 19] = [
        "time_s",
        "round",
        "round_mean",
        "steps_mean",
        "train_loss",
        "test_loss_avg",
        "accuracy_avg",
        "accuracy_mean",
        "accuracy_worst",
        "consensus",
        "bytes",
        "bytes_per_peer",
        "bytes_per_peer_max",
        "messages",
        "messages_per_peer",
        "rejected",
        "live_peers",
        "consensus_relative",
        "epsilon",
    ];

    /// The values as text (shortest round-trip float form, so files compare bit for bit).
    pub fn fields(&self) -> Vec<String> {
        vec![
            self.time_s.to_string(),
            self.round.to_string(),
            self.round_mean.to_string(),
            self.steps_mean.to_string(),
            self.train_loss.to_string(),
            self.test_loss_avg.to_string(),
            self.accuracy_avg.to_string(),
            self.accuracy_mean.to_string(),
            self.accuracy_worst.to_string(),
            self.consensus.to_string(),
            self.bytes.to_string(),
            self.bytes_per_peer.to_string(),
            self.bytes_per_peer_max.to_string(),
            self.messages.to_string(),
            self.messages_per_peer.to_string(),
            self.rejected.to_string(),
            self.live_peers.to_string(),
            self.consensus_relative.to_string(),
            self.epsilon.to_string(),
        ]
    }
}

/// Quotes a CSV field when it needs it.
pub fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// Output format of the per-tick metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize, serde::Serialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum MetricsFormat {
    /// Comma-separated with a header.
    #[default]
    Csv,
    /// One JSON object per line.
    Jsonl,
}

/// Writes rows, each tagged with a `variant` name, to a file.
#[derive(Debug)]
pub struct MetricsWriter {
    format: MetricsFormat,
    out: BufWriter<File>,
    header_written: bool,
}

#[derive(Serialize)]
struct Tagged<'a> {
    variant: &'a str,
    #[serde(flatten)]
    row: &'a EvalRow,
}

impl MetricsWriter {
    /// Creates (truncates) `path`.
    pub fn create(path: &Path, format: MetricsFormat) -> std::io::Result<Self> {
        Ok(MetricsWriter {
            format,
            out: BufWriter::new(File::create(path)?),
            header_written: false,
        })
    }

    /// Appends one row.
    pub fn write(&mut self, variant: &str, row: &EvalRow) -> std::io::Result<()> {
        match self.format {
            MetricsFormat::Jsonl => {
                let line = serde_json::to_string(&Tagged { variant, row })
                    .map_err(std::io::Error::other)?;
                writeln!(self.out, "{line}")
            }
            MetricsFormat::Csv => {
                if !self.header_written {
                    writeln!(self.out, "variant,{}", EvalRow::HEADER.join(","))?;
                    self.header_written = true;
                }
                writeln!(
                    self.out,
                    "{},{}",
                    csv_field(variant),
                    row.fields().join(",")
                )
            }
        }
    }

    /// Flushes to disk.
    pub fn finish(mut self) -> std::io::Result<()> {
        self.out.flush()
    }
}
