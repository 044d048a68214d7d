//! A learning task as configuration: which data, which model, which optimizer, how the data
//! is dealt to peers. The simulator and the daemon both build their learners only through
//! [`TaskConfig::prepare`] and [`PreparedTask::learner_for`] (or [`PreparedTask::learner`] for
//! the analytic-gradient models), so neither duplicates data or model logic and both train the
//! very same thing.
//!
//! Two kinds of data: samples (a [`Dataset`] of features and labels, dealt to peers by the
//! partition) and, with the `deep` feature, text (a [`crate::data::TextCorpus`] split into
//! training and validation by position, dealt to peers as contiguous blocks). `data.kind =
//! "mnist"` and `"shakespeare"` are bundled: MNIST-10k splits by position too (with the default
//! `test_fraction = 0.2`, the first 8000 digits train and the last 2000 test).
//!
//! TOML form (every field optional, defaults: bundled digits, softmax regression):
//! ```toml
//! model = "mlp:64"
//! partition = "dirichlet:0.5"
//! batch_size = 32
//! [data]
//! kind = "csv"
//! path = "train.csv.gz"
//! [optimizer]
//! lr = 0.05
//! schedule = "cosine:2000"
//! ```

use std::path::{Path, PathBuf};
use std::sync::Arc;

use ndarray::Array1;
use serde::{Deserialize, Serialize};

#[cfg(feature = "deep")]
use crate::data::TextCorpus;
use crate::data::{
    self, CsvOptions, DataError, Dataset, Labels, LibsvmOptions, Partition, Standardizer, Synthetic,
};
#[cfg(feature = "deep")]
use crate::deep::{DeepLearner, DeepModel};
use crate::layout::ParamLayout;
use crate::learner::{LocalLearner, SgdLearner};
use crate::model::{Model, ModelError, ModelSpec};
use crate::optim::OptimizerConfig;
use crate::train::{CentralizedTrainer, TrainConfig};

/// Where the samples come from.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Default)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum DataSource {
    /// The bundled UCI digits (8×8, 10 classes), pixels in 0..1.
    #[default]
    Digits,
    /// The bundled MNIST-10k (10,000 real 28×28 digits, 10 classes, pixels in 0..1), split by
    /// position: the last `test_fraction` of the file is the test set.
    Mnist,
    /// The bundled Shakespeare text (1.27 MB, ten plays) for character-level language models,
    /// split by position: the last `test_fraction` of the text is the validation set.
    Shakespeare,
    /// The bundled Wisconsin breast cancer set (30 features, 2 classes); standardise it.
    BreastCancer,
    /// A CSV file, plain or gzip.
    Csv {
        /// The file.
        path: PathBuf,
        /// Parsing options.
        #[serde(default)]
        options: CsvOptions,
        /// A separate test file (same options); otherwise `test_fraction` is split off.
        #[serde(default)]
        test_path: Option<PathBuf>,
    },
    /// A LIBSVM/SVMlight file, plain or gzip.
    Libsvm {
        /// The file.
        path: PathBuf,
        /// Parsing options.
        #[serde(default)]
        options: LibsvmOptions,
        /// A separate test file (same options, same feature count).
        #[serde(default)]
        test_path: Option<PathBuf>,
    },
    /// MNIST-style IDX image and label files (optionally gzip).
    Idx {
        /// Training images.
        images: PathBuf,
        /// Training labels.
        labels: PathBuf,
        /// Test images (with `test_labels`); otherwise `test_fraction` is split off.
        #[serde(default)]
        test_images: Option<PathBuf>,
        /// Test labels.
        #[serde(default)]
        test_labels: Option<PathBuf>,
    },
    /// A seeded synthetic problem (groups laid out contiguously: use `partition =
    /// "contiguous"` with peers = groups to give each peer its own distribution).
    Synthetic(Synthetic),
}

/// A task could not be prepared.
#[derive(Debug, thiserror::Error)]
pub enum TaskError {
    /// Loading the data failed.
    #[error(transparent)]
    Data(#[from] DataError),
    /// The model does not fit the data.
    #[error(transparent)]
    Model(#[from] ModelError),
    /// A setting is out of range.
    #[error("task config: {0}")]
    Config(String),
}

/// Everything that defines what the peers learn.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TaskConfig {
    /// Data source.
    pub data: DataSource,
    /// Model family (`"softmax"`, `"mlp:64,32"`, ...).
    pub model: ModelSpec,
    /// L2 coefficient of the loss (on weights, not biases).
    pub l2: f32,
    /// Local optimizer.
    pub optimizer: OptimizerConfig,
    /// Minibatch size of a local step.
    pub batch_size: usize,
    /// How the training set is dealt to peers.
    pub partition: Partition,
    /// Fraction held out for testing when the source has no separate test file.
    pub test_fraction: f64,
    /// Standardise features (fitted on the training split).
    pub standardize: bool,
    /// Seed of the split, the partition, the samplers and the initial model.
    pub seed: u64,
    /// Epochs of the centralized reference run.
    pub epochs: usize,
    /// Deep models: evaluate on the first this many test images (CNN) or validation windows
    /// (transformer) instead of the learner's default (1000 images, 64 windows); a fixed
    /// subset, so successive evaluations compare. The analytic models always use all of it.
    pub eval_limit: Option<usize>,
}

impl Default for TaskConfig {
    /// Digits, softmax regression, L2 1e-4, SGD lr 0.1 with momentum 0.9 (cosine over the
    /// run), batches of 32, IID partition, 20 % test, seed 0, 30 reference epochs.
    fn default() -> Self {
        TaskConfig {
            data: DataSource::Digits,
            model: ModelSpec::Softmax,
            l2: 1e-4,
            optimizer: OptimizerConfig::default(),
            batch_size: 32,
            partition: Partition::Iid,
            test_fraction: 0.2,
            standardize: false,
            seed: 0,
            epochs: 30,
            eval_limit: None,
        }
    }
}

/// A task with its data loaded, split and standardised, ready to hand out learners.
#[derive(Clone, Debug)]
pub struct PreparedTask {
    /// What it was prepared from.
    config: TaskConfig,
    /// The instantiated model.
    model: PreparedModel,
    /// The loaded data.
    data: TaskData,
}

/// The instantiated model of a task.
#[derive(Clone, Debug)]
enum PreparedModel {
    /// An analytic-gradient model over the flat vector.
    Flat(Model),
    /// A network trained by autodiff.
    #[cfg(feature = "deep")]
    Deep(DeepModel),
}

/// The loaded data of a task.
#[derive(Clone, Debug)]
enum TaskData {
    /// Features and labels.
    Samples {
        /// The training split (before partitioning).
        train: Arc<Dataset>,
        /// The shared test split.
        test: Arc<Dataset>,
        /// Fitted on the training split, applied to both.
        standardizer: Option<Standardizer>,
    },
    /// A text corpus.
    #[cfg(feature = "deep")]
    Text {
        /// The beginning of the text.
        train: Arc<TextCorpus>,
        /// The end of the text.
        valid: Arc<TextCorpus>,
    },
}

/// One peer's part of the training data (from [`PreparedTask::peer_shards`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Shard {
    /// Indices of training samples.
    Samples(Vec<usize>),
    /// Blocks of the training text (token positions, in text order); the learner samples
    /// windows from their concatenation.
    Text(Vec<std::ops::Range<usize>>),
}

/// Tokens per block when an `iid` partition deals a text to peers: long enough that few
/// windows straddle two blocks (a 33-token window does in 0.8% of draws), short enough that
/// every peer's blocks come from every part of the text (the plays differ in vocabulary).
pub const TEXT_BLOCK: usize = 4096;

impl Shard {
    /// Samples or tokens in the shard.
    pub fn len(&self) -> usize {
        match self {
            Shard::Samples(i) => i.len(),
            Shard::Text(blocks) => blocks.iter().map(|r| r.len()).sum(),
        }
    }

    /// Whether the shard holds no data.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl TaskConfig {
    /// Checks every numeric setting without loading any data; the error names the field (as
    /// in TOML, `optimizer.lr`) and its accepted range. [`Self::prepare`] calls it first.
    pub fn validate(&self) -> Result<(), TaskError> {
        if self.batch_size == 0 {
            return Err(TaskError::Config("batch_size = 0 must be >= 1".into()));
        }
        if !(0.0..1.0).contains(&self.test_fraction) {
            return Err(TaskError::Config(format!(
                "test_fraction = {} must be in [0, 1)",
                self.test_fraction
            )));
        }
        if !(self.l2.is_finite() && self.l2 >= 0.0) {
            return Err(TaskError::Config(format!(
                "l2 = {} must be a finite number >= 0",
                self.l2
            )));
        }
        if self.optimizer.second_moment_peers > 0 && !self.model.is_deep() {
            return Err(TaskError::Config(format!(
                "optimizer.second_moment_peers = {} needs a deep model (cnn, transformer): \
                 the {} learner does not split its batches",
                self.optimizer.second_moment_peers, self.model
            )));
        }
        self.optimizer
            .validate()
            .map_err(|e| TaskError::Config(format!("optimizer.{e}")))
    }

    /// Loads the data once, splits off the test set, standardises and builds the model.
    pub fn prepare(&self) -> Result<PreparedTask, TaskError> {
        self.validate()?;
        #[cfg(feature = "deep")]
        if self.data == DataSource::Shakespeare {
            return self.prepare_text();
        }
        let (mut train, mut test) = self.load()?;
        if train.is_empty() {
            return Err(TaskError::Config("the training split is empty".into()));
        }
        let standardizer = self.standardize.then(|| Standardizer::fit(&train));
        if let Some(s) = &standardizer {
            s.apply(&mut train);
            s.apply(&mut test);
        }
        let model = match &self.model {
            #[cfg(feature = "deep")]
            ModelSpec::Deep(spec) => {
                PreparedModel::Deep(spec.build_for_images(&train).map_err(ModelError::from)?)
            }
            flat => PreparedModel::Flat(flat.build_for(&train, self.l2)?),
        };
        Ok(PreparedTask {
            config: self.clone(),
            model,
            data: TaskData::Samples {
                train: Arc::new(train),
                test: Arc::new(test),
                standardizer,
            },
        })
    }

    /// The bundled Shakespeare text, split by position, with a transformer.
    #[cfg(feature = "deep")]
    fn prepare_text(&self) -> Result<PreparedTask, TaskError> {
        if !matches!(self.partition, Partition::Iid | Partition::Contiguous) {
            return Err(TaskError::Config(format!(
                "partition = {:?} has no meaning for text (data = shakespeare): use iid (blocks \
                 of {TEXT_BLOCK} characters dealt to the peers in turn) or contiguous (one block \
                 of the text per peer)",
                self.partition.to_string()
            )));
        }
        let all = TextCorpus::from_bytes(data::shakespeare())?;
        let (train, valid) = all.split(self.test_fraction);
        let ModelSpec::Deep(spec) = &self.model else {
            return Err(TaskError::Config(format!(
                "model = {:?} cannot train on text (data = shakespeare): use transformer or transformer:layers=L,width=W,heads=H,context=T",
                self.model.to_string()
            )));
        };
        let model = spec.build_for_text(&train).map_err(ModelError::from)?;
        Ok(PreparedTask {
            config: self.clone(),
            model: PreparedModel::Deep(model),
            data: TaskData::Text {
                train: Arc::new(train),
                valid: Arc::new(valid),
            },
        })
    }

    fn load(&self) -> Result<(Dataset, Dataset), TaskError> {
        let split = |all: Dataset| all.train_test_split(self.test_fraction, self.seed);
        Ok(match &self.data {
            DataSource::Digits => split(data::digits()),
            DataSource::Mnist => {
                let all = data::mnist();
                let n_test = ((all.len() as f64) * self.test_fraction).round() as usize;
                let cut = all.len() - n_test;
                let train: Vec<usize> = (0..cut).collect();
                let test: Vec<usize> = (cut..all.len()).collect();
                (all.subset(&train), all.subset(&test))
            }
            DataSource::Shakespeare => {
                return Err(TaskError::Config(
                    "data = shakespeare needs murmur-gossip's `deep` feature (built without it)"
                        .into(),
                ));
            }
            DataSource::BreastCancer => split(data::breast_cancer()),
            DataSource::Csv {
                path,
                options,
                test_path,
            } => self.load_text(path, test_path.as_deref(), options)?,
            DataSource::Libsvm {
                path,
                options,
                test_path,
            } => self.load_text(path, test_path.as_deref(), options)?,
            DataSource::Idx {
                images,
                labels,
                test_images,
                test_labels,
            } => {
                let all = data::load_idx(images, labels)?;
                match (test_images, test_labels) {
                    (None, None) => split(all),
                    (Some(ti), Some(tl)) => {
                        let mut test = data::load_idx(ti, tl)?;
                        // Both files declare their class count by their largest label.
                        let k = all.classes.max(test.classes);
                        let mut all = all;
                        all.classes = k;
                        test.classes = k;
                        check_same_shape(&all, &test)?;
                        (all, test)
                    }
                    _ => {
                        return Err(TaskError::Config(
                            "idx: give both test_images and test_labels, or neither".into(),
                        ));
                    }
                }
            }
            DataSource::Synthetic(synthetic) => {
                if synthetic.features == 0 || synthetic.samples < synthetic.groups.max(1) {
                    return Err(TaskError::Config(
                        "synthetic: need features >= 1 and samples >= groups".into(),
                    ));
                }
                // Split each group on its own, so the training split stays grouped in equal
                // blocks and a contiguous partition hands peer g exactly group g.
                let all = synthetic.generate();
                let (mut train, mut test) = (Vec::new(), Vec::new());
                for (g, range) in synthetic.group_ranges().into_iter().enumerate() {
                    let group = all.subset(&range.collect::<Vec<_>>());
                    let (a, b) = group.train_test_split(self.test_fraction, self.seed ^ g as u64);
                    train.push(a);
                    test.push(b);
                }
                (Dataset::concat(&train)?, Dataset::concat(&test)?)
            }
        })
    }

    /// Loads a CSV or LIBSVM training file and either splits off `test_fraction` or reads the
    /// separate test file with the same options, tied to the training file's shape.
    fn load_text<F: TextFormat>(
        &self,
        path: &Path,
        test_path: Option<&Path>,
        options: &F,
    ) -> Result<(Dataset, Dataset), TaskError> {
        let Some(test_path) = test_path else {
            return Ok(F::load(path, options)?.train_test_split(self.test_fraction, self.seed));
        };
        // Sorted labels must map the test file through the training file's values: read both
        // raw, then map together.
        let sorted = options.labels() == Labels::Sorted;
        let raw = if sorted {
            options.with_labels(Labels::Regression)
        } else {
            options.clone()
        };
        let mut all = F::load(path, &raw)?;
        let mut test = F::load(test_path, &raw.for_test_file(&all))?;
        if sorted {
            map_sorted_labels(&mut all, &mut test, options.classes())?;
        }
        check_same_shape(&all, &test)?;
        Ok((all, test))
    }
}

/// A text format that may come with a separate test file read with the training file's options.
trait TextFormat: Clone {
    /// Loads one file.
    fn load(path: &Path, options: &Self) -> Result<Dataset, DataError>;
    /// How labels are read.
    fn labels(&self) -> Labels;
    /// The configured minimum class count.
    fn classes(&self) -> Option<usize>;
    /// The same options reading labels as `labels`.
    fn with_labels(&self, labels: Labels) -> Self;
    /// The options for the test file of `train`: at least its classes (and, where the format
    /// leaves the width open, exactly its features).
    fn for_test_file(self, train: &Dataset) -> Self;
}

impl TextFormat for CsvOptions {
    fn load(path: &Path, options: &Self) -> Result<Dataset, DataError> {
        data::load_csv(path, options)
    }

    fn labels(&self) -> Labels {
        self.labels
    }

    fn classes(&self) -> Option<usize> {
        self.classes
    }

    fn with_labels(&self, labels: Labels) -> Self {
        CsvOptions {
            labels,
            ..self.clone()
        }
    }

    fn for_test_file(self, train: &Dataset) -> Self {
        CsvOptions {
            classes: train.classes.or(self.classes),
            ..self
        }
    }
}

impl TextFormat for LibsvmOptions {
    fn load(path: &Path, options: &Self) -> Result<Dataset, DataError> {
        data::load_libsvm(path, options)
    }

    fn labels(&self) -> Labels {
        self.labels
    }

    fn classes(&self) -> Option<usize> {
        self.classes
    }

    fn with_labels(&self, labels: Labels) -> Self {
        LibsvmOptions {
            labels,
            ..self.clone()
        }
    }

    fn for_test_file(self, train: &Dataset) -> Self {
        LibsvmOptions {
            features: Some(train.dim()),
            classes: train.classes.or(self.classes),
            ..self
        }
    }
}

/// Maps raw label values of a training and a test file to classes `0..k` by the training
/// file's sorted distinct values; a test value the training file never has is an error.
fn map_sorted_labels(
    train: &mut Dataset,
    test: &mut Dataset,
    min_classes: Option<usize>,
) -> Result<(), TaskError> {
    let mut values = train.targets.to_vec();
    values.sort_by(f32::total_cmp);
    values.dedup();
    let class_of = |v: f32| values.binary_search_by(|x| x.total_cmp(&v));
    if let Some(v) = test.targets.iter().find(|&&v| class_of(v).is_err()) {
        return Err(TaskError::Config(format!(
            "test label {v} never appears in the training file"
        )));
    }
    let k = values.len().max(min_classes.unwrap_or(0)).max(2);
    for d in [&mut *train, &mut *test] {
        d.targets
            .mapv_inplace(|v| class_of(v).expect("checked above") as f32);
        d.classes = Some(k);
    }
    Ok(())
}

fn check_same_shape(train: &Dataset, test: &Dataset) -> Result<(), TaskError> {
    if train.dim() != test.dim() || train.classes != test.classes {
        return Err(TaskError::Config(format!(
            "test file has {} features and {:?} classes, training file {} and {:?}",
            test.dim(),
            test.classes,
            train.dim(),
            train.classes
        )));
    }
    Ok(())
}

impl PreparedTask {
    /// The configuration this was prepared from.
    pub fn config(&self) -> &TaskConfig {
        &self.config
    }

    /// The analytic-gradient model. Panics on a deep model (see [`Self::deep_model`]).
    pub fn model(&self) -> &Model {
        self.flat_model()
            .expect("a deep model: use PreparedTask::deep_model")
    }

    /// The analytic-gradient model (`None` for a deep model).
    pub fn flat_model(&self) -> Option<&Model> {
        match &self.model {
            PreparedModel::Flat(m) => Some(m),
            #[cfg(feature = "deep")]
            PreparedModel::Deep(_) => None,
        }
    }

    /// The deep model (`None` for an analytic-gradient one).
    #[cfg(feature = "deep")]
    pub fn deep_model(&self) -> Option<&DeepModel> {
        match &self.model {
            PreparedModel::Deep(m) => Some(m),
            PreparedModel::Flat(_) => None,
        }
    }

    /// Length of the flat parameter vector.
    pub fn dim(&self) -> usize {
        match &self.model {
            PreparedModel::Flat(m) => m.dim(),
            #[cfg(feature = "deep")]
            PreparedModel::Deep(m) => m.dim(),
        }
    }

    /// The model's named tensors in the flat vector (what checkpoints write one by one).
    pub fn layout(&self) -> ParamLayout {
        match &self.model {
            PreparedModel::Flat(m) => m.layout(),
            #[cfg(feature = "deep")]
            PreparedModel::Deep(m) => m.layout().clone(),
        }
    }

    /// Whether the task is language modelling on text (its evaluation's loss is the
    /// validation loss in nats per character and its accuracy next-character accuracy).
    pub fn is_text(&self) -> bool {
        !matches!(self.data, TaskData::Samples { .. })
    }

    /// The whole training split (before partitioning). Panics on a text task (see
    /// [`Self::train_len`] and [`Self::peer_shards`]).
    pub fn train(&self) -> &Arc<Dataset> {
        match &self.data {
            TaskData::Samples { train, .. } => train,
            #[cfg(feature = "deep")]
            TaskData::Text { .. } => panic!("a text task has no sample training set"),
        }
    }

    /// The shared test split. Panics on a text task.
    pub fn test(&self) -> &Arc<Dataset> {
        match &self.data {
            TaskData::Samples { test, .. } => test,
            #[cfg(feature = "deep")]
            TaskData::Text { .. } => panic!("a text task has no sample test set"),
        }
    }

    /// Training samples, or training tokens of a text task.
    pub fn train_len(&self) -> usize {
        match &self.data {
            TaskData::Samples { train, .. } => train.len(),
            #[cfg(feature = "deep")]
            TaskData::Text { train, .. } => train.len(),
        }
    }

    /// The fitted standardiser, if the task standardises.
    pub fn standardizer(&self) -> Option<&Standardizer> {
        match &self.data {
            TaskData::Samples { standardizer, .. } => standardizer.as_ref(),
            #[cfg(feature = "deep")]
            TaskData::Text { .. } => None,
        }
    }

    /// Initial parameters (zeros for convex models, seeded for an MLP or a deep model).
    pub fn init_params(&self, seed: u64) -> Array1<f32> {
        match &self.model {
            PreparedModel::Flat(m) => m.init(seed),
            #[cfg(feature = "deep")]
            PreparedModel::Deep(m) => Array1::from(m.init(seed)),
        }
    }

    /// Identifies the model family and shape (not the data), so peers refuse to average
    /// vectors that mean different things.
    pub fn fingerprint(&self) -> u64 {
        let text = match &self.model {
            PreparedModel::Flat(m) => format!(
                "{} features={} classes={:?} dim={}",
                m.spec(),
                m.features(),
                m.classes(),
                m.dim()
            ),
            #[cfg(feature = "deep")]
            PreparedModel::Deep(m) => {
                format!("{} shape={:?} dim={}", m.spec(), m.data_shape(), m.dim())
            }
        };
        crate::message::fingerprint(text.as_bytes())
    }

    /// What evaluation runs on, for the output: e.g. "the first 1000 of 2000 test images".
    pub fn evaluation_note(&self) -> String {
        match (&self.model, &self.data) {
            #[cfg(feature = "deep")]
            (PreparedModel::Deep(m), TaskData::Text { valid, .. }) => {
                let context = m.window().map_or(1, |w| w.saturating_sub(1));
                let windows = valid
                    .eval_windows(
                        context,
                        self.config
                            .eval_limit
                            .unwrap_or(crate::deep::DEFAULT_EVAL_WINDOWS),
                    )
                    .len();
                format!(
                    "validation loss (nats per character) on {windows} fixed windows of {context} characters ({} of {} validation characters)",
                    windows * context,
                    valid.len()
                )
            }
            #[cfg(feature = "deep")]
            (PreparedModel::Deep(_), TaskData::Samples { test, .. }) => {
                let n = test.len().min(
                    self.config
                        .eval_limit
                        .unwrap_or(crate::deep::DEFAULT_EVAL_IMAGES),
                );
                format!(
                    "test accuracy on the first {n} of {} test images",
                    test.len()
                )
            }
            (_, TaskData::Samples { test, .. }) => {
                format!("test accuracy on all {} test samples", test.len())
            }
            #[cfg(feature = "deep")]
            (PreparedModel::Flat(_), TaskData::Text { .. }) => unreachable!("refused by prepare"),
        }
    }

    /// Cross-entropy of the training text's character frequencies on the validation windows
    /// the evaluation uses (nats per character): the loss to beat. `None` for sample tasks.
    pub fn unigram_loss(&self) -> Option<f64> {
        match (&self.model, &self.data) {
            #[cfg(feature = "deep")]
            (PreparedModel::Deep(m), TaskData::Text { train, valid }) => {
                let context = m.window()?.saturating_sub(1);
                let limit = self
                    .config
                    .eval_limit
                    .unwrap_or(crate::deep::DEFAULT_EVAL_WINDOWS);
                Some(train.unigram_loss(&valid.eval_targets(context, limit)))
            }
            _ => None,
        }
    }

    /// Each peer's training sample indices for a swarm of `peers`. Panics on a text task (use
    /// [`Self::peer_shards`]).
    pub fn shards(&self, peers: usize) -> Vec<Vec<usize>> {
        data::partition(
            self.train(),
            peers,
            &self.config.partition,
            self.config.seed,
        )
    }

    /// Each peer's part of the training data: the partition's sample indices, or blocks of
    /// the training text — `iid`: blocks of [`TEXT_BLOCK`] tokens dealt in turn (block b to
    /// peer b mod n), so every peer reads every part of the text; `contiguous`: one block of
    /// len/n tokens per peer, peer i the i-th (each peer reads a few plays only).
    pub fn peer_shards(&self, peers: usize) -> Vec<Shard> {
        match &self.data {
            TaskData::Samples { .. } => {
                self.shards(peers).into_iter().map(Shard::Samples).collect()
            }
            #[cfg(feature = "deep")]
            TaskData::Text { train, .. } => {
                let n = train.len();
                if self.config.partition == Partition::Contiguous {
                    return (0..peers)
                        .map(|i| {
                            Shard::Text(
                                std::iter::once(i * n / peers..(i + 1) * n / peers).collect(),
                            )
                        })
                        .collect();
                }
                let mut shards = vec![Vec::new(); peers];
                for (b, start) in (0..n).step_by(TEXT_BLOCK).enumerate() {
                    shards[b % peers].push(start..(start + TEXT_BLOCK).min(n));
                }
                shards.into_iter().map(Shard::Text).collect()
            }
        }
    }

    /// All the training data as one shard (for the all-reduce baseline).
    pub fn whole_shard(&self) -> Shard {
        match &self.data {
            TaskData::Samples { train, .. } => Shard::Samples((0..train.len()).collect()),
            #[cfg(feature = "deep")]
            TaskData::Text { train, .. } => Shard::Text(std::iter::once(0..train.len()).collect()),
        }
    }

    /// Peer `peer_index`'s learner in a swarm of `peers`: its shard of the training split,
    /// the shared test split, the task's optimizer and batch size, a sampler seeded from the
    /// task seed and the index. Panics if `peer_index >= peers`, if `peers` exceeds the
    /// training samples, or on a deep model (use [`Self::learner_for`]).
    pub fn learner(&self, peer_index: usize, peers: usize) -> SgdLearner {
        assert!(peer_index < peers, "peer {peer_index} of {peers}");
        let shard = &self.shards(peers)[peer_index];
        self.learner_on(shard, peer_index as u64)
    }

    /// An analytic-model learner on an explicit set of training indices (e.g. from a cached
    /// [`Self::shards`]). Panics on a deep model (use [`Self::learner_for`]).
    pub fn learner_on(&self, indices: &[usize], stream: u64) -> SgdLearner {
        let Some(model) = self.flat_model() else {
            panic!("learner_on builds analytic-model learners; use learner_for")
        };
        SgdLearner::new(
            model.clone(),
            self.train().subset(indices),
            self.test().clone(),
            self.config.optimizer.clone(),
            self.config.batch_size,
            self.learner_seed(stream),
        )
    }

    /// The learner of any model on `shard` (its sampler seeded from the task seed and
    /// `stream`); refuses a shard the model cannot train on (e.g. shorter than one window).
    pub fn learner_for(
        &self,
        shard: &Shard,
        stream: u64,
    ) -> Result<Box<dyn LocalLearner>, TaskError> {
        #[cfg(feature = "deep")]
        let deep = |built: Result<DeepLearner, crate::deep::DeepError>| {
            let learner = built.map_err(ModelError::from)?;
            let learner = match self.config.eval_limit {
                Some(limit) => learner.with_eval_limit(limit),
                None => learner,
            };
            Ok::<Box<dyn LocalLearner>, TaskError>(Box::new(learner))
        };
        match (&self.model, &self.data, shard) {
            (PreparedModel::Flat(_), TaskData::Samples { .. }, Shard::Samples(indices)) => {
                if indices.is_empty() {
                    return Err(TaskError::Config("a peer's shard is empty".into()));
                }
                Ok(Box::new(self.learner_on(indices, stream)))
            }
            #[cfg(feature = "deep")]
            (PreparedModel::Deep(m), TaskData::Samples { train, test, .. }, Shard::Samples(i)) => {
                deep(DeepLearner::images(
                    m.clone(),
                    train.subset(i),
                    test.clone(),
                    self.config.optimizer.clone(),
                    self.config.batch_size,
                    self.learner_seed(stream),
                ))
            }
            #[cfg(feature = "deep")]
            (PreparedModel::Deep(m), TaskData::Text { train, valid }, Shard::Text(blocks)) => {
                deep(DeepLearner::text(
                    m.clone(),
                    train.gather(blocks),
                    valid.clone(),
                    self.config.optimizer.clone(),
                    self.config.batch_size,
                    self.learner_seed(stream),
                ))
            }
            _ => Err(TaskError::Config(
                "this shard does not belong to this task's data".into(),
            )),
        }
    }

    /// The sampler seed of learner `stream`.
    fn learner_seed(&self, stream: u64) -> u64 {
        crate::seed::derive_indexed(self.config.seed, crate::seed::stream::LEARNER, stream)
    }

    /// The centralized reference trainer for this task (`epochs`, batch, optimizer, seed).
    /// Panics on a deep model or a text task (the simulator's all-reduce baseline covers them).
    pub fn centralized(&self) -> CentralizedTrainer {
        let Some(model) = self.flat_model() else {
            panic!("the centralized reference trainer runs the analytic models only")
        };
        CentralizedTrainer::new(
            model.clone(),
            (**self.train()).clone(),
            self.test().clone(),
            TrainConfig {
                epochs: self.config.epochs,
                batch_size: self.config.batch_size,
                optimizer: self.config.optimizer.clone(),
                seed: self.config.seed,
            },
        )
    }
}
