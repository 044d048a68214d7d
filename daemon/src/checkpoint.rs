//! Checkpoints on disk: the model as safetensors, one named tensor per layer with its shape
//! (`conv1.weight` `[8, 1, 5, 5]`, `layers.0.bias` `[10]`, ...) and the model spec in the
//! header metadata, so Python loads it with `safetensors.numpy.load_file(path)` and no
//! knowledge of murmur; plus a metadata file holding the peer's full resumable state ([`PeerCheckpoint`]: round, sequence numbers, public copy, optimizer and
//! sampler state, RNG position) behind a checksum.
//!
//! Every file is written atomically: temp file, fsync, rename, fsync of the directory. The
//! metadata file is renamed last and names the checksum of the model file, so a checkpoint is
//! valid only once both are complete; on start the newest valid one wins and damaged ones are
//! set aside into `damaged/` with a warning (never counted as kept, never read again).
//!
//! Generations: the checkpoints at the top of the directory belong to one run configuration.
//! A node that must not resume from them (`--fresh`, `checkpoint.resume = false`) first moves
//! them into `generation-<n>/`, so no valid checkpoint is ever overwritten or pruned by a run
//! that could not have resumed from it.

use std::collections::HashMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use murmur_gossip::layout::ParamLayout;
use murmur_gossip::peer::PeerCheckpoint;
use safetensors::{Dtype, SafeTensors, tensor::TensorView};
use serde::{Deserialize, Serialize};

/// Layout version of the metadata file.
pub const META_FORMAT: u16 = 1;

/// Subdirectory damaged checkpoints are moved into.
pub const DAMAGED_DIR: &str = "damaged";

/// Prefix of the subdirectories earlier generations are moved into.
pub const GENERATION_PREFIX: &str = "generation-";

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
    let mut h = FnvCounter::new();
    h.update(bytes);
    h.hash
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
    write_atomic_with(path, |w| w.write_all(bytes))
}

/// [`write_atomic`] of what `write` produces, streamed through a buffer (a large checkpoint
/// is never held whole in memory a second time).
pub fn write_atomic_with(
    path: &Path,
    write: impl FnOnce(&mut dyn Write) -> std::io::Result<()>,
) -> Result<()> {
    let dir = path.parent().context("checkpoint path has no directory")?;
    let tmp = dir.join(format!(
        ".{}.tmp",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("file")
    ));
    let file = fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    let mut out = std::io::BufWriter::with_capacity(1 << 20, file);
    write(&mut out)
        .and_then(|()| out.flush())
        .with_context(|| format!("writing {}", tmp.display()))?;
    let file = out
        .into_inner()
        .map_err(|e| e.into_error())
        .with_context(|| format!("writing {}", tmp.display()))?;
    file.sync_all()
        .with_context(|| format!("writing {}", tmp.display()))?;
    drop(file);
    fs::rename(&tmp, path).with_context(|| format!("renaming to {}", path.display()))?;
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("syncing {}", dir.display()))?;
    Ok(())
}

/// What a checkpoint's model file says about the model besides its numbers.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelInfo {
    /// The `task.model` string (`cnn:8,32,128`, `softmax`, ...).
    pub spec: String,
    /// The named tensors of the flat vector.
    pub layout: ParamLayout,
}

/// Value of the `format` header entry.
pub const MODEL_FORMAT: &str = "murmur-checkpoint-2";

/// The model (x) as safetensors: one tensor per [`ModelInfo::layout`] entry, named and shaped
/// as the model names them. Header metadata: `format`, `round`, `peer_id`, `fingerprint`,
/// `model` (the spec), `dim`, and `order` (the tensor names in flat-vector order, comma
/// separated, which is how [`read_model`] reassembles the flat vector). The public copy x̂ and
/// the optimizer state live in the metadata file only: the safetensors file is what a user
/// loads, at the model's size.
pub fn model_bytes(cp: &PeerCheckpoint, peer_id: &str, info: &ModelInfo) -> Result<Vec<u8>> {
    safetensors_bytes(&cp.model, cp.round, cp.fingerprint, peer_id, info)
}

/// The flat vector `model` of `round` as safetensors, laid out as [`model_bytes`] says (what
/// `GET /model` serves, too).
pub fn safetensors_bytes(
    model: &[f32],
    round: u64,
    fingerprint: u64,
    peer_id: &str,
    info: &ModelInfo,
) -> Result<Vec<u8>> {
    if info.layout.dim() != model.len() {
        bail!(
            "the model has {} parameters but its layout ({}) has {}",
            model.len(),
            info.spec,
            info.layout.dim()
        );
    }
    let order: Vec<&str> = info
        .layout
        .entries()
        .iter()
        .map(|e| e.name.as_str())
        .collect();
    let meta = HashMap::from([
        ("format".to_string(), MODEL_FORMAT.to_string()),
        ("round".to_string(), round.to_string()),
        ("peer_id".to_string(), peer_id.to_string()),
        ("fingerprint".to_string(), format!("{fingerprint:#x}")),
        ("model".to_string(), info.spec.clone()),
        ("dim".to_string(), model.len().to_string()),
        ("order".to_string(), order.join(",")),
    ]);
    // Little-endian hosts view the f32s as their bytes in place; others convert.
    let bytes: Vec<std::borrow::Cow<'_, [u8]>> = info
        .layout
        .entries()
        .iter()
        .map(|e| {
            let values = &model[e.range()];
            if cfg!(target_endian = "little") {
                std::borrow::Cow::Borrowed(bytemuck::cast_slice(values))
            } else {
                std::borrow::Cow::Owned(values.iter().flat_map(|v| v.to_le_bytes()).collect())
            }
        })
        .collect();
    let mut tensors = Vec::with_capacity(bytes.len());
    for (e, b) in info.layout.entries().iter().zip(&bytes) {
        tensors.push((
            e.name.as_str(),
            TensorView::new(Dtype::F32, e.shape.clone(), b)?,
        ));
    }
    Ok(safetensors::serialize(tensors, Some(meta))?)
}

/// Reads the flat model vector of a checkpoint's safetensors file.
pub fn read_model(path: &Path) -> Result<Vec<f32>> {
    let bytes = fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    model_from_bytes(&bytes)
}

/// The flat vector: the tensors named by the `order` header entry, concatenated. A file of
/// the first format (one tensor `model`, no `order`) reads too.
pub fn model_from_bytes(bytes: &[u8]) -> Result<Vec<f32>> {
    let (_, header) = SafeTensors::read_metadata(bytes)?;
    let st = SafeTensors::deserialize(bytes)?;
    let order: Vec<String> = match header.metadata().as_ref().and_then(|m| m.get("order")) {
        Some(order) => order.split(',').map(str::to_string).collect(),
        None => vec!["model".to_string()],
    };
    let mut flat = Vec::new();
    for name in &order {
        let view = st
            .tensor(name)
            .with_context(|| format!("tensor {name} named in the header's order"))?;
        if view.dtype() != Dtype::F32 {
            bail!("tensor {name} is {:?}, expected F32", view.dtype());
        }
        flat.extend(
            view.data()
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])),
        );
    }
    Ok(flat)
}

/// Saves `cp` in `dir` (created if needed) and keeps only the `keep` newest valid
/// checkpoints. Returns the model file's path.
pub fn save(
    dir: &Path,
    peer_id: &str,
    info: &ModelInfo,
    cp: &PeerCheckpoint,
    keep: usize,
) -> Result<PathBuf> {
    save_files(dir, peer_id, info, cp)
        .with_context(|| {
            format!(
                "cannot write checkpoint round {} to {}",
                cp.round,
                dir.display()
            )
        })
        .and_then(|path| {
            prune(dir, keep.max(1)).with_context(|| {
                format!(
                    "checkpoint round {} written, pruning {} failed",
                    cp.round,
                    dir.display()
                )
            })?;
            Ok(path)
        })
}

fn save_files(dir: &Path, peer_id: &str, info: &ModelInfo, cp: &PeerCheckpoint) -> Result<PathBuf> {
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let model = model_bytes(cp, peer_id, info)?;
    let model_checksum = fnv1a(&model);
    let path = model_path(dir, cp.round);
    write_atomic(&path, &model)?;
    drop(model);
    // The metadata goes last: its presence (with the model's checksum) marks completion.
    write_atomic_with(&meta_path(dir, cp.round), |w| {
        write_meta(w, cp, peer_id, model_checksum)
    })?;
    Ok(path)
}

/// FNV-1a and length of what is written through it (nothing is kept).
#[derive(Debug)]
struct FnvCounter {
    hash: u64,
    len: usize,
}

impl FnvCounter {
    fn new() -> Self {
        FnvCounter {
            hash: 0xcbf2_9ce4_8422_2325,
            len: 0,
        }
    }

    fn update(&mut self, buf: &[u8]) {
        for &b in buf {
            self.hash = (self.hash ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
        }
        self.len += buf.len();
    }
}

impl Write for FnvCounter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.update(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Writes exactly `postcard::to_stdvec(&CheckpointMeta { .., state: cp.encode() })` without
/// holding the encoded state: a first pass through [`FnvCounter`] gives its checksum and
/// length (the checksum precedes the state in the file), a second streams it. At 10M
/// parameters this saves the two or three model-sized buffers an encoded copy and its
/// envelope took.
fn write_meta(
    w: &mut dyn Write,
    cp: &PeerCheckpoint,
    peer_id: &str,
    model_checksum: u64,
) -> std::io::Result<()> {
    let io = |e: postcard::Error| std::io::Error::other(e.to_string());
    let mut counter = FnvCounter::new();
    postcard::to_io(cp, &mut counter).map_err(io)?;
    // CheckpointMeta's fields in order; `state: Vec<u8>` is a varint length then the bytes.
    let header = (META_FORMAT, cp.round, peer_id, model_checksum, counter.hash);
    postcard::to_io(&header, &mut *w).map_err(io)?;
    postcard::to_io(&counter.len, &mut *w).map_err(io)?;
    postcard::to_io(cp, w).map_err(io)?;
    Ok(())
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

/// Keeps the `keep` newest *valid* checkpoints: damaged ones met on the way are set aside
/// (a damaged file with a high round number must not push valid ones out), older ones
/// removed.
fn prune(dir: &Path, keep: usize) -> Result<()> {
    let mut valid = 0;
    for round in rounds(dir) {
        if valid < keep {
            match verify(dir, round) {
                Ok(_) => valid += 1,
                Err(e) => set_aside_damaged(dir, round, &e),
            }
            continue;
        }
        // Metadata first, so a crash in between leaves no half-valid checkpoint behind.
        let meta = meta_path(dir, round);
        fs::remove_file(&meta).with_context(|| format!("removing {}", meta.display()))?;
        let _ = fs::remove_file(model_path(dir, round));
    }
    Ok(())
}

/// Checks the checkpoint at `round` by its checksums, streaming both files through a hash
/// (pruning after every save at 10M parameters would otherwise read, decode and compare
/// every kept checkpoint whole, a few hundred MB each time). [`load`] does the full check
/// (decoding, the model file against the saved state) when a checkpoint is used.
fn verify(dir: &Path, round: u64) -> Result<()> {
    let path = meta_path(dir, round);
    let len = fs::metadata(&path)?.len();
    if len > MAX_META_BYTES {
        bail!("{} is {len} bytes, over the cap", path.display());
    }
    let mut file = std::io::BufReader::with_capacity(1 << 20, fs::File::open(&path)?);
    // The header fields, then the state's varint length, are in the first few hundred bytes.
    let mut head = vec![0u8; len.min(4096) as usize];
    std::io::Read::read_exact(&mut file, &mut head)?;
    type Header = (u16, u64, String, u64, u64);
    let ((format, saved_round, _peer, model_checksum, state_checksum), rest): (Header, &[u8]) =
        postcard::take_from_bytes(&head).context("malformed checkpoint metadata")?;
    let (state_len, rest): (usize, &[u8]) =
        postcard::take_from_bytes(rest).context("malformed checkpoint metadata")?;
    if format != META_FORMAT {
        bail!("checkpoint format {format} (expected {META_FORMAT})");
    }
    let state_start = head.len() - rest.len();
    if saved_round != round || state_start as u64 + state_len as u64 != len {
        bail!("checkpoint metadata round or length mismatch");
    }
    let mut hash = FnvCounter::new();
    hash.write_all(rest)?;
    std::io::copy(&mut file, &mut hash)?;
    if hash.hash != state_checksum {
        bail!("checkpoint metadata checksum mismatch");
    }
    let model_path = model_path(dir, round);
    let mut model_hash = FnvCounter::new();
    std::io::copy(&mut fs::File::open(&model_path)?, &mut model_hash)?;
    if model_hash.hash != model_checksum {
        bail!("{} does not match its checksum", model_path.display());
    }
    Ok(())
}

/// Moves both files of the checkpoint at `round` (those present) into `to`.
fn move_checkpoint(dir: &Path, round: u64, to: &Path) -> Result<()> {
    fs::create_dir_all(to).with_context(|| format!("creating {}", to.display()))?;
    for path in [meta_path(dir, round), model_path(dir, round)] {
        if let Some(name) = path.file_name().filter(|_| path.exists()) {
            fs::rename(&path, to.join(name))
                .with_context(|| format!("moving {} to {}", path.display(), to.display()))?;
        }
    }
    Ok(())
}

/// Moves a damaged checkpoint into `damaged/`, where nothing reads or counts it.
fn set_aside_damaged(dir: &Path, round: u64, why: &anyhow::Error) {
    let to = dir.join(DAMAGED_DIR);
    match move_checkpoint(dir, round, &to) {
        Ok(()) => tracing::warn!(
            round,
            reason = %format!("{why:#}"),
            moved_to = %to.display(),
            "damaged checkpoint set aside"
        ),
        Err(e) => tracing::warn!(
            round,
            reason = %format!("{why:#}"),
            error = %format!("{e:#}"),
            "damaged checkpoint could not be set aside"
        ),
    }
}

/// The newest valid checkpoint in `dir`, after setting aside every damaged one newer than it
/// (what a node resumes from).
pub fn recover(dir: &Path) -> Option<Loaded> {
    for round in rounds(dir) {
        match load(dir, round) {
            Ok(loaded) => return Some(loaded),
            Err(e) => set_aside_damaged(dir, round, &e),
        }
    }
    None
}

/// Moves every checkpoint at the top of `dir` into a new `generation-<n>/` (n one past the
/// highest there) and returns that directory; None when there was nothing to move.
pub fn start_new_generation(dir: &Path) -> Result<Option<PathBuf>> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Ok(None);
    };
    let mut files = Vec::new();
    let mut last = 0u64;
    for entry in entries.filter_map(|e| e.ok()) {
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some(n) = name.strip_prefix(GENERATION_PREFIX) {
            last = last.max(n.parse().unwrap_or(0));
        } else if name.starts_with("round-") {
            files.push(entry.path());
        }
    }
    if files.is_empty() {
        return Ok(None);
    }
    let to = dir.join(format!("{GENERATION_PREFIX}{}", last + 1));
    fs::create_dir(&to).with_context(|| format!("creating {}", to.display()))?;
    for path in files {
        let name = path.file_name().expect("a directory entry has a name");
        fs::rename(&path, to.join(name))
            .with_context(|| format!("moving {} to {}", path.display(), to.display()))?;
    }
    Ok(Some(to))
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
            privacy: None,
            outer_velocity: Vec::new(),
        }
    }

    /// Three parameters as two tensors, deliberately not in name order (like the ndarray
    /// models' `layers.<i>.weight` before `layers.<i>.bias`).
    fn info() -> ModelInfo {
        ModelInfo {
            spec: "toy".to_string(),
            layout: ParamLayout::in_order(vec![
                ("w".to_string(), vec![1, 2]),
                ("b".to_string(), vec![1]),
            ]),
        }
    }

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("murmur-ckpt-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn pruning_checks_checksums_by_streaming_and_catches_any_damage() {
        let dir = temp_dir("verify");
        let mut c = cp(5);
        c.learner_state = vec![7; 10_000];
        save(&dir, "peer", &info(), &c, 3).unwrap();
        verify(&dir, 5).unwrap();
        assert!(verify(&dir, 6).is_err(), "no such checkpoint");
        let meta = meta_path(&dir, 5);
        let model = model_path(&dir, 5);
        let good_meta = fs::read(&meta).unwrap();
        let good_model = fs::read(&model).unwrap();
        // A flipped byte deep in the state, a truncated file, a flipped model byte.
        let mut bad = good_meta.clone();
        let at = bad.len() - 100;
        bad[at] ^= 1;
        fs::write(&meta, &bad).unwrap();
        assert!(verify(&dir, 5).is_err(), "state checksum");
        fs::write(&meta, &good_meta[..good_meta.len() - 1]).unwrap();
        assert!(verify(&dir, 5).is_err(), "truncated");
        fs::write(&meta, &good_meta).unwrap();
        let mut bad = good_model.clone();
        let at = bad.len() - 1;
        bad[at] ^= 1;
        fs::write(&model, &bad).unwrap();
        assert!(verify(&dir, 5).is_err(), "model checksum");
        fs::write(&model, &good_model).unwrap();
        verify(&dir, 5).unwrap();
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn streamed_metadata_is_byte_for_byte_the_encoded_struct() {
        // A state longer than one varint byte of length, so the length prefix is exercised.
        let mut c = cp(300);
        c.learner_state = (0..=255).cycle().take(70_000).collect();
        let meta = CheckpointMeta {
            format: META_FORMAT,
            round: c.round,
            peer_id: "peer".to_string(),
            model_checksum: 42,
            state_checksum: fnv1a(&c.encode()),
            state: c.encode(),
        };
        let mut streamed = Vec::new();
        write_meta(&mut streamed, &c, "peer", 42).unwrap();
        assert_eq!(streamed, postcard::to_stdvec(&meta).unwrap());
    }

    #[test]
    fn newest_valid_checkpoint_wins_damaged_ones_are_skipped_old_ones_pruned() {
        let dir = temp_dir("newest");
        for round in [10, 20, 30, 40] {
            save(&dir, "peer", &info(), &cp(round), 3).unwrap();
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

    /// A checkpoint file pair at `round` that fails its checks (another round's files).
    fn plant_damaged(dir: &Path, round: u64, from: u64) {
        fs::copy(meta_path(dir, from), meta_path(dir, round)).unwrap();
        fs::copy(model_path(dir, from), model_path(dir, round)).unwrap();
        assert!(load(dir, round).is_err());
    }

    #[test]
    fn damaged_checkpoints_with_higher_rounds_never_push_valid_ones_out() {
        let dir = temp_dir("damaged-high");
        save(&dir, "peer", &info(), &cp(10), 2).unwrap();
        plant_damaged(&dir, 900, 10);
        plant_damaged(&dir, 1000, 10);
        // Resuming sets the damaged ones aside and finds round 10.
        assert_eq!(recover(&dir).unwrap().meta.round, 10);
        assert_eq!(rounds(&dir), vec![10]);
        assert_eq!(rounds(&dir.join(DAMAGED_DIR)), vec![1000, 900]);
        // Damaged ones appearing while running are set aside by pruning, not kept.
        plant_damaged(&dir, 700, 10);
        save(&dir, "peer", &info(), &cp(20), 2).unwrap();
        assert_eq!(
            rounds(&dir),
            vec![20, 10],
            "the two newest valid ones are kept"
        );
        save(&dir, "peer", &info(), &cp(30), 2).unwrap();
        assert_eq!(rounds(&dir), vec![30, 20]);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_new_generation_moves_every_checkpoint_aside_untouched() {
        let dir = temp_dir("generation");
        assert!(start_new_generation(&dir).unwrap().is_none());
        save(&dir, "peer", &info(), &cp(10), 3).unwrap();
        save(&dir, "peer", &info(), &cp(20), 3).unwrap();
        let first = start_new_generation(&dir).unwrap().unwrap();
        assert_eq!(first, dir.join("generation-1"));
        assert!(rounds(&dir).is_empty());
        assert_eq!(newest(&first).unwrap().peer, cp(20));
        save(&dir, "peer", &info(), &cp(20), 3).unwrap();
        let second = start_new_generation(&dir).unwrap().unwrap();
        assert_eq!(second, dir.join("generation-2"));
        assert_eq!(
            rounds(&first),
            vec![20, 10],
            "the first generation is untouched"
        );
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_failed_write_names_the_checkpoint_and_its_cause() {
        let dir = temp_dir("unwritable");
        fs::create_dir_all(&dir).unwrap();
        // A file where the directory should be: fails for root too (unlike permissions).
        let blocked = dir.join("file");
        fs::write(&blocked, b"").unwrap();
        let err = format!(
            "{:#}",
            save(&blocked.join("ckpt"), "peer", &info(), &cp(7), 2).unwrap_err()
        );
        assert!(
            err.contains("cannot write checkpoint round 7 to") && err.contains("Not a directory"),
            "{err}"
        );
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn safetensors_names_each_tensor_with_its_shape_and_carries_the_spec() {
        let bytes = model_bytes(&cp(5), "me", &info()).unwrap();
        let (_, header) = SafeTensors::read_metadata(&bytes).unwrap();
        let meta = header.metadata().as_ref().unwrap();
        assert_eq!(meta["round"], "5");
        assert_eq!(meta["peer_id"], "me");
        assert_eq!(meta["model"], "toy");
        assert_eq!(meta["format"], MODEL_FORMAT);
        assert_eq!(meta["order"], "w,b");
        let st = SafeTensors::deserialize(&bytes).unwrap();
        let w = st.tensor("w").unwrap();
        assert_eq!(w.shape(), &[1, 2]);
        assert_eq!(w.data(), [1.0f32, 5.0].map(f32::to_le_bytes).concat());
        assert_eq!(st.tensor("b").unwrap().shape(), &[1]);
        assert_eq!(st.tensor("b").unwrap().data(), (-2.5f32).to_le_bytes());
        // Only the model: x̂ lives in the metadata file.
        assert_eq!(st.len(), 2);
        assert_eq!(model_from_bytes(&bytes).unwrap(), cp(5).model);
    }

    #[test]
    fn a_layout_of_another_size_is_refused() {
        let mut bad = info();
        bad.layout = ParamLayout::in_order(vec![("w".to_string(), vec![4])]);
        let err = format!("{:#}", model_bytes(&cp(5), "me", &bad).unwrap_err());
        assert!(
            err.contains("3 parameters") && err.contains("has 4"),
            "{err}"
        );
    }

    #[test]
    fn a_first_format_model_file_still_reads() {
        let model: Vec<u8> = cp(5).model.iter().flat_map(|v| v.to_le_bytes()).collect();
        let tensors = [(
            "model",
            TensorView::new(Dtype::F32, vec![3], &model).unwrap(),
        )];
        let bytes = safetensors::serialize(tensors, None).unwrap();
        assert_eq!(model_from_bytes(&bytes).unwrap(), cp(5).model);
    }
}
