//! The LeNet-style CNN (LeCun et al. 1998) on candle tensors.
//!
//! `conv 5×5 (1→c1) → ReLU → max-pool 2 → conv 5×5 (c1→c2) → ReLU → max-pool 2 → fc (→hidden)
//! → ReLU → fc (→classes)`, no padding, stride 1; a pool of an odd size drops the last row and
//! column (PyTorch's floor mode). Two choices differ from calling candle's own layers, for
//! speed and correctness; both compute the same function:
//! - the first convolution is im2col + one matrix product: its input is the images, a
//!   constant, so the patches are gathered here in plain Rust and candle never computes the
//!   input gradient it would otherwise compute for `conv2d` (a `conv_transpose2d` that was
//!   28% of a step);
//! - max-pooling is a reshape to `[.., h/2, 2, w/2, 2]` and two `max` reductions, because
//!   candle 0.9.2's `max_pool2d` backward scales the gradient of a window's maximum by 1/4.

use candle_core::{D, Device, Result, Tensor};

use super::spec::CnnSpec;
use crate::layout::ParamLayout;

/// Side of both convolution kernels.
pub(super) const KERNEL: usize = 5;

/// A CNN instantiated for `side × side` images and `classes` outputs.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct Cnn {
    pub(super) spec: CnnSpec,
    pub(super) side: usize,
    pub(super) classes: usize,
    /// Side after conv1 (`side − 4`), after pool1, after conv2, after pool2.
    conv1_out: usize,
    pool1_out: usize,
    conv2_out: usize,
    pool2_out: usize,
}

/// Indices of the tensors in the sorted layout.
pub(super) const NAMES: [&str; 8] = [
    "conv1.bias",
    "conv1.weight",
    "conv2.bias",
    "conv2.weight",
    "fc1.bias",
    "fc1.weight",
    "fc2.bias",
    "fc2.weight",
];

impl Cnn {
    /// The smallest image side two 5×5 convolutions and two 2×2 pools leave something of.
    pub(super) const MIN_SIDE: usize = 16;

    pub(super) fn new(spec: CnnSpec, side: usize, classes: usize) -> Cnn {
        let conv1_out = side - (KERNEL - 1);
        let pool1_out = conv1_out / 2;
        let conv2_out = pool1_out - (KERNEL - 1);
        let pool2_out = conv2_out / 2;
        Cnn {
            spec,
            side,
            classes,
            conv1_out,
            pool1_out,
            conv2_out,
            pool2_out,
        }
    }

    /// Inputs of the first fully connected layer.
    fn flat(&self) -> usize {
        self.spec.c2 * self.pool2_out * self.pool2_out
    }

    pub(super) fn layout(&self) -> ParamLayout {
        let CnnSpec { c1, c2, hidden } = self.spec;
        let k = KERNEL;
        let shapes = [
            vec![c1],
            vec![c1, 1, k, k],
            vec![c2],
            vec![c2, c1, k, k],
            vec![hidden],
            vec![hidden, self.flat()],
            vec![self.classes],
            vec![self.classes, hidden],
        ];
        ParamLayout::new(
            NAMES
                .iter()
                .zip(shapes)
                .map(|(n, s)| (n.to_string(), s))
                .collect(),
        )
    }

    /// Fan-in of each tensor's layer, for the uniform(±1/√fan_in) initialisation.
    pub(super) fn fan_in(&self, name: &str) -> usize {
        let k2 = KERNEL * KERNEL;
        match name.split('.').next() {
            Some("conv1") => k2,
            Some("conv2") => self.spec.c1 * k2,
            Some("fc1") => self.flat(),
            _ => self.spec.hidden,
        }
    }

    /// im2col of a batch of images (`batch × side²` pixels, row-major): one row of
    /// `KERNEL²` pixels per output position of the first convolution, positions in
    /// (image, row, column) order.
    pub(super) fn patches(&self, pixels: &[f32], batch: usize) -> Vec<f32> {
        let (s, o) = (self.side, self.conv1_out);
        let mut out = Vec::with_capacity(batch * o * o * KERNEL * KERNEL);
        for image in pixels.chunks_exact(s * s).take(batch) {
            for i in 0..o {
                for j in 0..o {
                    for ki in 0..KERNEL {
                        let row = (i + ki) * s + j;
                        out.extend_from_slice(&image[row..row + KERNEL]);
                    }
                }
            }
        }
        out
    }

    /// Logits `[batch, classes]` from the patches of [`Cnn::patches`] (as a
    /// `[batch·o², 25]` tensor) and the parameter tensors in layout order.
    pub(super) fn forward(&self, p: &[Tensor], patches: &Tensor, batch: usize) -> Result<Tensor> {
        let CnnSpec { c1, c2, .. } = self.spec;
        let o1 = self.conv1_out;
        let h = patches
            .matmul(&p[1].reshape((c1, KERNEL * KERNEL))?.t()?)?
            .broadcast_add(&p[0])?
            .reshape((batch, o1 * o1, c1))?
            .transpose(1, 2)?
            .contiguous()?
            .reshape((batch, c1, o1, o1))?
            .relu()?;
        let h = max_pool2(&h, self.pool1_out)?;
        let h = h
            .conv2d(&p[3], 0, 1, 1, 1)?
            .broadcast_add(&p[2].reshape((1, c2, 1, 1))?)?
            .relu()?;
        debug_assert_eq!(h.dim(2)?, self.conv2_out);
        let h = max_pool2(&h, self.pool2_out)?.flatten_from(1)?;
        let h = h.matmul(&p[5].t()?)?.broadcast_add(&p[4])?.relu()?;
        h.matmul(&p[7].t()?)?.broadcast_add(&p[6])
    }

    /// The patches of a batch as a tensor on the CPU.
    pub(super) fn patch_tensor(&self, pixels: &[f32], batch: usize) -> Result<Tensor> {
        let patches = self.patches(pixels, batch);
        Tensor::from_vec(
            patches,
            (batch * self.conv1_out * self.conv1_out, KERNEL * KERNEL),
            &Device::Cpu,
        )
    }
}

/// 2×2 max-pooling with stride 2 of `[b, c, h, w]` to `[b, c, out, out]` (`out = h / 2`,
/// floor): crop to even, reshape, reduce.
fn max_pool2(x: &Tensor, out: usize) -> Result<Tensor> {
    let (b, c, h, w) = x.dims4()?;
    let x = if h != 2 * out || w != 2 * out {
        x.narrow(2, 0, 2 * out)?.narrow(3, 0, 2 * out)?
    } else {
        x.clone()
    };
    x.reshape((b, c, out, 2, out, 2))?.max(D::Minus1)?.max(3)
}
