//! The WGSL kernels of the forward pass, each behind a small Rust wrapper that knows its
//! parameters struct and how its work is split into workgroups. One file per shader in
//! `shaders/`; nothing here knows about GPT-Neo.
//!
//! Linear layers and attention come in variants (llm.c style: the plain version stays next to the
//! tuned ones, and every variant passes the same tests against the CPU reference):
//! - `simple`: one invocation per output, operands in storage buffers. The readable definition.
//! - `texture`: operands read as rgba32float texels with register tiles and subgroup shuffles.
//!   Tuned for CPU Vulkan drivers (lavapipe), where storage-buffer loads run lane by lane and cost
//!   ten times a texel fetch; it is also the fastest measured on a discrete GPU (an NVIDIA H200
//!   through Vulkan: 3–10 TFLOP/s on the model's linear layers, against 0.47 for `simple` and
//!   0.13–0.36 for a shared-memory tiled kernel that was therefore dropped).

mod attention;
mod embed;
mod layernorm;
mod linear;
mod texels;

pub use attention::{AttentionShape, MAX_HEAD_DIM};
pub use linear::{Epilogue, GpuLinear};
pub use texels::Scratch;

use crate::gpu::{Gpu, Kernel};
use anyhow::{bail, Result};
use std::fmt;

/// Which implementation of the linear and attention kernels to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Variant {
    /// One invocation per output, storage buffers only.
    Simple,
    /// Texel operands, register tiles, subgroup shuffles (needs subgroup support).
    Texture,
}

impl Variant {
    pub const ALL: [Variant; 2] = [Variant::Simple, Variant::Texture];

    /// The fastest variant for `gpu`: `texture` where subgroup operations exist, else `simple`.
    pub fn best_for(gpu: &Gpu) -> Variant {
        if gpu.has_subgroups {
            Variant::Texture
        } else {
            Variant::Simple
        }
    }
}

impl fmt::Display for Variant {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(match self {
            Variant::Simple => "simple",
            Variant::Texture => "texture",
        })
    }
}

/// Every kernel of the forward, compiled once per device, for one variant.
pub struct Kernels {
    pub variant: Variant,
    embed: Kernel,
    layernorm: Kernel,
    linear: Kernel,
    attention: Kernel,
    rows_to_texture: Kernel,
    /// Bound where a kernel's optional input or output is unused (a linear's plain epilogue).
    placeholder: wgpu::Buffer,
    placeholder_out: wgpu::Buffer,
}

/// A kernel's source followed by the part it shares with its siblings (WGSL has no includes).
macro_rules! with_shared {
    ($file:literal, $shared:literal) => {
        concat!(
            include_str!(concat!("../../shaders/", $file)),
            include_str!(concat!("../../shaders/", $shared))
        )
    };
}

impl Kernels {
    /// Compiles the kernels of `variant`.
    pub fn new(gpu: &Gpu, variant: Variant) -> Result<Kernels> {
        if variant == Variant::Texture && !gpu.has_subgroups {
            bail!("kernel variant texture needs subgroup operations, which {} lacks", gpu.adapter_name());
        }
        let (linear, attention) = match variant {
            Variant::Simple => (
                Kernel::new(gpu, "linear", with_shared!("linear.wgsl", "linear_output.wgsl"))?,
                Kernel::new(gpu, "attention", with_shared!("attention.wgsl", "attention_keys.wgsl"))?,
            ),
            Variant::Texture => (
                Kernel::new(
                    gpu,
                    "linear_texture",
                    with_shared!("linear_texture.wgsl", "linear_output.wgsl"),
                )?,
                Kernel::new(
                    gpu,
                    "attention_texture",
                    with_shared!("attention_texture.wgsl", "attention_keys.wgsl"),
                )?,
            ),
        };
        Ok(Kernels {
            variant,
            embed: Kernel::new(gpu, "embed", include_str!("../../shaders/embed.wgsl"))?,
            layernorm: Kernel::new(gpu, "layernorm", include_str!("../../shaders/layernorm.wgsl"))?,
            linear,
            attention,
            rows_to_texture: Kernel::new(
                gpu,
                "rows_to_texture",
                include_str!("../../shaders/rows_to_texture.wgsl"),
            )?,
            placeholder: gpu.storage("placeholder", 1)?,
            placeholder_out: gpu.storage("placeholder out", 1)?,
        })
    }
}

/// Workgroups needed to cover `items` items, `per_group` at a time.
fn groups_for(items: usize, per_group: usize) -> u32 {
    items.div_ceil(per_group) as u32
}
