//! A learning task as configuration: which data, which model, which optimizer, how the data
//! is dealt to peers. The simulator and the daemon both build their learners only through
//! [`TaskConfig::prepare`] and [`PreparedTask::learner`], so neither duplicates data or model
//! logic and both train the very same thing.
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

use crate::data::{
    self, CsvOptions, DataError, Dataset, Labels, LibsvmOptions, Partition, Standardizer, Synthetic,
};
use crate::learner::SgdLearner;
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
        }
    }
}

/// A task with its data loaded, split and standardised, ready to hand out learners.
#[derive(Clone, Debug)]
pub struct PreparedTask {
    config: TaskConfig,
    model: Model,
    train: Arc<Dataset>,
    test: Arc<Dataset>,
    standardizer: Option<Standardizer>,
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
        self.optimizer
            .validate()
            .map_err(|e| TaskError::Config(format!("optimizer.{e}")))
    }

    /// Loads the data once, splits off the test set, standardises and builds the model.
    pub fn prepare(&self) -> Result<PreparedTask, TaskError> {
        self.validate()?;
        let (mut train, mut test) = self.load()?;
        if train.is_empty() {
            return Err(TaskError::Config("the training split is empty".into()));
        }
        let standardizer = self.standardize.then(|| Standardizer::fit(&train));
        if let Some(s) = &standardizer {
            s.apply(&mut train);
            s.apply(&mut test);
        }
        let model = self.model.build_for(&train, self.l2)?;
        Ok(PreparedTask {
            config: self.clone(),
            model,
            train: Arc::new(train),
            test: Arc::new(test),
            standardizer,
        })
    }

    fn load(&self) -> Result<(Dataset, Dataset), TaskError> {
        let split = |all: Dataset| all.train_test_split(self.test_fraction, self.seed);
        Ok(match &self.data {
            DataSource::Digits => split(data::digits()),
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

    /// The instantiated model.
    pub fn model(&self) -> &Model {
        &self.model
    }

    /// Length of the flat parameter vector.
    pub fn dim(&self) -> usize {
        self.model.dim()
    }

    /// The whole training split (before partitioning).
    pub fn train(&self) -> &Arc<Dataset> {
        &self.train
    }

    /// The shared test split.
    pub fn test(&self) -> &Arc<Dataset> {
        &self.test
    }

    /// The fitted standardiser, if the task standardises.
    pub fn standardizer(&self) -> Option<&Standardizer> {
        self.standardizer.as_ref()
    }

    /// Initial parameters (zeros for convex models, seeded for an MLP).
    pub fn init_params(&self, seed: u64) -> Array1<f32> {
        self.model.init(seed)
    }

    /// Identifies the model family and shape (not the data), so peers refuse to average
    /// vectors that mean different things.
    pub fn fingerprint(&self) -> u64 {
        crate::message::fingerprint(
            format!(
                "{} features={} classes={:?} dim={}",
                self.model.spec(),
                self.model.features(),
                self.model.classes(),
                self.model.dim()
            )
            .as_bytes(),
        )
    }

    /// Each peer's training sample indices for a swarm of `peers`.
    pub fn shards(&self, peers: usize) -> Vec<Vec<usize>> {
        data::partition(&self.train, peers, &self.config.partition, self.config.seed)
    }

    /// Peer `peer_index`'s learner in a swarm of `peers`: its shard of the training split,
    /// the shared test split, the task's optimizer and batch size, a sampler seeded from the
    /// task seed and the index. Panics if `peer_index >= peers` or `peers` exceeds the
    /// training samples.
    pub fn learner(&self, peer_index: usize, peers: usize) -> SgdLearner {
        assert!(peer_index < peers, "peer {peer_index} of {peers}");
        let shard = &self.shards(peers)[peer_index];
        self.learner_on(shard, peer_index as u64)
    }

    /// A learner on an explicit set of training indices (e.g. from a cached [`Self::shards`]).
    pub fn learner_on(&self, indices: &[usize], stream: u64) -> SgdLearner {
        SgdLearner::new(
            self.model.clone(),
            self.train.subset(indices),
            self.test.clone(),
            self.config.optimizer.clone(),
            self.config.batch_size,
            self.config
                .seed
                .wrapping_add(stream.wrapping_add(1).wrapping_mul(0x9e37_79b9_7f4a_7c15)),
        )
    }

    /// The centralized reference trainer for this task (`epochs`, batch, optimizer, seed).
    pub fn centralized(&self) -> CentralizedTrainer {
        CentralizedTrainer::new(
            self.model.clone(),
            (*self.train).clone(),
            self.test.clone(),
            TrainConfig {
                epochs: self.config.epochs,
                batch_size: self.config.batch_size,
                optimizer: self.config.optimizer.clone(),
                seed: self.config.seed,
            },
        )
    }
}
