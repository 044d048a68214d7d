//! Checkpoints on disk: the model as safetensors (loadable from Python:
//! `safetensors.numpy.load_file(path)["model"]`) plus a metadata file holding the peer's full
//! resumable state ([`PeerCheckpoint`]: round, sequence numbers, public copy, optimizer and
//! sampler state, RNG position) behind a checksum.
//!
//! Every file is written atomically: temp file, fsync, rename, fsync of the directory. The
//! metadata file is renamed last and names the checksum of the model file, so a checkpoint is
//! valid only once both are complete; on start the newest valid one wins and damaged ones are
//! skipped with a warning.

use std::collections::HashMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use murmur_gossip::peer::PeerCheckpoint;
use safetensors::{Dtype, SafeTensors, tensor::TensorView};
use serde::{Deserialize, Serialize};

/// Layout version of the metadata file.
pub const META_FORMAT: u16 = 1;

/// Largest metadata file read back (a guard against a corrupt or hostile file).
const MAX_META_BYTES: u64 = 1 << 30;

/// What the `.meta` file holds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CheckpointMeta {
    /// [`META_FORMAT`].
    pub format: u16,
    /// Next round to run (the peer's round when saved).
    pub round: u64,
    /// The node's peer id (text form).
    pub peer_id: String,
    /// FNV-1a of the safetensors file.
    pub model_checksum: u64,
    /// FNV-1a of `state`.
    pub state_checksum: u64,
    /// [`PeerCheckpoint::encode`] bytes.
    pub state: Vec<u8>,
}

/// A checkpoint found on disk.
#[derive(Debug)]
pub struct Loaded {
    /// Its metadata.
    pub meta: CheckpointMeta,
    /// The decoded peer state.
    pub peer: PeerCheckpoint,
    /// Path of the model file.
    pub model_path: PathBuf,
}

/// 64-bit FNV-1a (integrity against torn or damaged files, not an adversary).
pub fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

fn stem(round: u64) -> String {
    format!("round-{round:010}")
}

/// The model file of the checkpoint at `round` in `dir`.
pub fn model_path(dir: &Path, round: u64) -> PathBuf {
    dir.join(format!("{}.safetensors", stem(round)))
}

fn meta_path(dir: &Path, round: u64) -> PathBuf {
    dir.join(format!("{}.meta", stem(round)))
}

/// Writes `bytes` to `path` atomically (temp file in the same directory, fsync, rename).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().context("checkpoint path has no directory")?;
    let tmp = dir.join(format!(
        ".{}.tmp",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("file")
    ));
    let mut file = fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    file.write_all(bytes)?;
    file.sync_all()?;
    drop(file);
    fs::rename(&tmp, path).with_context(|| format!("renaming to {}", path.display()))?;
    fs::File::open(dir)?.sync_all()?;
    Ok(())
}

/// Model as safetensors: tensors `model` (x) and `public` (x̂), with the round, peer id and
/// dimension as header metadata.
pub fn model_bytes(cp: &PeerCheckpoint, peer_id: &str) -> Result<Vec<u8>> {
    let model: Vec<u8> = cp.model.iter().flat_map(|v| v.to_le_bytes()).collect();
    let public: Vec<u8> = cp.x_hat.iter().flat_map(|v| v.to_le_bytes()).collect();
    let info = HashMap::from([
        ("round".to_string(), cp.round.to_string()),
        ("peer_id".to_string(), peer_id.to_string()),
        ("fingerprint".to_string(), format!("{:#x}", cp.fingerprint)),
        ("format".to_string(), "murmur-checkpoint-1".to_string()),
    ]);
    let tensors = [
        (
            "model",
            TensorView::new(Dtype::F32, vec![cp.model.len()], &model)?,
        ),
        (
            "public",
            TensorView::new(Dtype::F32, vec![cp.x_hat.len()], &public)?,
        ),
    ];
    Ok(safetensors::serialize(tensors, Some(info))?)
}

/// Reads the `model` tensor of a safetensors file.
pub fn read_model(path: &Path) -> Result<Vec<f32>> {
    let bytes = fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    model_from_bytes(&bytes)
}

fn model_from_bytes(bytes: &[u8]) -> Result<Vec<f32>> {
    let st = SafeTensors::deserialize(bytes)?;
    let view = st.tensor("model")?;
    if view.dtype() != Dtype::F32 {
        bail!("model tensor is {:?}, expected F32", view.dtype());
    }
    Ok(view
        .data()
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect())
}

/// Saves `cp` in `dir` (created if needed) and keeps only the `keep` newest checkpoints.
/// Returns the model file's path.
pub fn save(dir: &Path, peer_id: &str, cp: &PeerCheckpoint, keep: usize) -> Result<PathBuf> {
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let model = model_bytes(cp, peer_id)?;
    let state = cp.encode();
    let meta = CheckpointMeta {
        format: META_FORMAT,
        round: cp.round,
        peer_id: peer_id.to_string(),
        model_checksum: fnv1a(&model),
        state_checksum: fnv1a(&state),
        state,
    };
    let path = model_path(dir, cp.round);
    write_atomic(&path, &model)?;
    // The metadata goes last: its presence (with the model's checksum) marks completion.
    write_atomic(&meta_path(dir, cp.round), &postcard::to_stdvec(&meta)?)?;
    prune(dir, keep.max(1))?;
    Ok(path)
}

/// Rounds that have a metadata file in `dir`, newest first.
fn rounds(dir: &Path) -> Vec<u64> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut rounds: Vec<u64> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            name.strip_prefix("round-")?
                .strip_suffix(".meta")?
                .parse()
                .ok()
        })
        .collect();
    rounds.sort_unstable_by(|a, b| b.cmp(a));
    rounds
}

fn prune(dir: &Path, keep: usize) -> Result<()> {
    for round in rounds(dir).into_iter().skip(keep) {
        // Metadata first, so a crash in between leaves no half-valid checkpoint behind.
        fs::remove_file(meta_path(dir, round))?;
        let _ = fs::remove_file(model_path(dir, round));
    }
    Ok(())
}

/// Loads and verifies the checkpoint at `round`.
pub fn load(dir: &Path, round: u64) -> Result<Loaded> {
    let path = meta_path(dir, round);
    let len = fs::metadata(&path)?.len();
    if len > MAX_META_BYTES {
        bail!("{} is {len} bytes, over the cap", path.display());
    }
    let bytes = fs::read(&path)?;
    let (meta, rest): (CheckpointMeta, &[u8]) =
        postcard::take_from_bytes(&bytes).context("malformed checkpoint metadata")?;
    if !rest.is_empty() {
        bail!(
            "{} trailing bytes after the checkpoint metadata",
            rest.len()
        );
    }
    if meta.format != META_FORMAT {
        bail!("checkpoint format {} (expected {META_FORMAT})", meta.format);
    }
    if meta.round != round || fnv1a(&meta.state) != meta.state_checksum {
        bail!("checkpoint metadata checksum or round mismatch");
    }
    let model_path = model_path(dir, round);
    let model = fs::read(&model_path)?;
    if fnv1a(&model) != meta.model_checksum {
        bail!("{} does not match its checksum", model_path.display());
    }
    let peer = PeerCheckpoint::decode(&meta.state)?;
    if model_from_bytes(&model)? != peer.model {
        bail!("{} disagrees with the saved state", model_path.display());
    }
    Ok(Loaded {
        meta,
        peer,
        model_path,
    })
}

/// The newest valid checkpoint in `dir` (damaged ones are logged and skipped).
pub fn newest(dir: &Path) -> Option<Loaded> {
    rounds(dir)
        .into_iter()
        .find_map(|round| match load(dir, round) {
            Ok(loaded) => Some(loaded),
            Err(e) => {
                tracing::warn!(round, error = %e, "skipping invalid checkpoint");
                None
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use murmur_gossip::message::AlgorithmKind;
    use murmur_gossip::peer::{CHECKPOINT_FORMAT, RngState};

    fn cp(round: u64) -> PeerCheckpoint {
        PeerCheckpoint {
            format: CHECKPOINT_FORMAT,
            dim: 3,
            fingerprint: 7,
            algorithm: AlgorithmKind::Choco,
            round,
            seq: round,
            last_update_round: round,
            local_steps: round,
            model: vec![1.0, round as f32, -2.5],
            x_hat: vec![0.5, 0.0, 1.0],
            push_weight: 1.0,
            learner_state: vec![1, 2, 3],
            rng: RngState {
                seed: [3; 32],
                stream: 0,
                word_pos: 9,
            },
        }
    }

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("murmur-ckpt-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn newest_valid_checkpoint_wins_damaged_ones_are_skipped_old_ones_pruned() {
        let dir = temp_dir("newest");
        for round in [10, 20, 30, 40] {
            save(&dir, "peer", &cp(round), 3).unwrap();
        }
        assert_eq!(rounds(&dir), vec![40, 30, 20], "keeps the 3 newest");
        let loaded = newest(&dir).unwrap();
        assert_eq!(loaded.peer, cp(40));
        assert_eq!(read_model(&loaded.model_path).unwrap(), cp(40).model);

        // Corrupt the newest model file: round 30 is used instead.
        let mut bytes = fs::read(model_path(&dir, 40)).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 0x40;
        fs::write(model_path(&dir, 40), bytes).unwrap();
        assert!(load(&dir, 40).is_err());
        // Truncate the metadata of round 30: round 20 is used.
        let meta = fs::read(meta_path(&dir, 30)).unwrap();
        fs::write(meta_path(&dir, 30), &meta[..meta.len() / 2]).unwrap();
        assert_eq!(newest(&dir).unwrap().meta.round, 20);
        fs::remove_dir_all(&dir).unwrap();
        assert!(newest(&dir).is_none());
    }

    #[test]
    fn safetensors_header_carries_the_round_and_both_tensors() {
        let bytes = model_bytes(&cp(5), "me").unwrap();
        let (_, header) = SafeTensors::read_metadata(&bytes).unwrap();
        let info = header.metadata().as_ref().unwrap();
        assert_eq!(info["round"], "5");
        assert_eq!(info["peer_id"], "me");
        let st = SafeTensors::deserialize(&bytes).unwrap();
        assert_eq!(st.tensor("public").unwrap().shape(), &[3]);
        assert_eq!(model_from_bytes(&bytes).unwrap(), cp(5).model);
    }
}
