//! The digits workload of the peer tests, built only through the learning core's
//! `task::TaskConfig` (as the simulator and the daemon do): the bundled digits, softmax
//! regression, label-skewed Dirichlet(α = 0.5) shards from the core's partitioner, the core's
//! `SgdLearner` on every peer, and the core's `CentralizedTrainer` as the reference.

use murmur_gossip::data::Partition;
use murmur_gossip::learner::SgdLearner;
use murmur_gossip::optim::Schedule;
use murmur_gossip::task::{PreparedTask, TaskConfig};

/// Task seed: fixes the train/test split and the shards.
pub const TASK_SEED: u64 = 1;

/// 16 (or 17) peers on 1437 training digits: a fixed learning rate with plain momentum
/// and a cosine schedule over the whole gossip run.
pub fn task(rounds: u64, local_steps: u32) -> TaskConfig {
    let mut task = TaskConfig {
        partition: Partition::Dirichlet { alpha: 0.5 },
        seed: TASK_SEED,
        ..TaskConfig::default()
    };
    task.optimizer = task
        .optimizer
        .clone()
        .with_horizon(rounds * u64::from(local_steps));
    task
}

/// A prepared digits task and its shards for `peers` peers.
#[derive(Debug, Clone)]
pub struct Digits {
    pub task: PreparedTask,
    pub shards: Vec<Vec<usize>>,
}

impl Digits {
    pub fn new(peers: usize, rounds: u64, local_steps: u32) -> Self {
        let task = task(rounds, local_steps)
            .prepare()
            .expect("the bundled digits task prepares");
        let shards = task.shards(peers);
        Digits { task, shards }
    }

    /// Peer `i`'s learner on its own shard (its minibatch stream is its index).
    pub fn learner(&self, i: usize) -> SgdLearner {
        self.task.learner_on(&self.shards[i], i as u64)
    }

    /// The learner of a peer that joins when the swarm has taken `from_step` local steps: it
    /// enters the learning-rate schedule where the swarm is (the rate the others use now,
    /// decaying by cosine over the steps left) instead of restarting it at full rate, which
    /// would pull the adopted model towards its own label-skewed shard.
    pub fn joiner_learner(&self, i: usize, from_step: u64) -> SgdLearner {
        let config = self.task.config();
        let mut optimizer = config.optimizer.clone();
        let (total, floor) = match optimizer.schedule {
            Schedule::Cosine { total_steps, floor } => (total_steps, floor),
            ref other => panic!("digits task uses a cosine schedule, not {other:?}"),
        };
        optimizer.lr = config.optimizer.lr_at(from_step);
        optimizer.schedule = Schedule::Cosine {
            total_steps: total.saturating_sub(from_step).max(1),
            floor,
        };
        SgdLearner::new(
            self.task.model().clone(),
            self.task.train().subset(&self.shards[i]),
            self.task.test().clone(),
            optimizer,
            config.batch_size,
            i as u64,
        )
    }

    pub fn dim(&self) -> usize {
        self.task.dim()
    }

    /// Test accuracy of the core's centralized reference: the same data split, model and
    /// optimizer (its own schedule length, not the gossip run's) on the whole training set
    /// for the task's epochs.
    pub fn centralized_accuracy(&self) -> f32 {
        let reference = TaskConfig {
            partition: Partition::Dirichlet { alpha: 0.5 },
            seed: TASK_SEED,
            ..TaskConfig::default()
        }
        .prepare()
        .expect("the bundled digits task prepares");
        assert_eq!(reference.test().len(), self.task.test().len());
        let mut trainer = reference.centralized();
        let reports = trainer.run(|_| {});
        reports
            .last()
            .and_then(|r| r.test.accuracy)
            .expect("the centralized run reports a test accuracy")
    }
}
