//! The WGSL kernels of the forward pass, each behind a small Rust wrapper that knows its
//! parameters struct and how its work is split into workgroups. One file per shader in
//! `shaders/`; nothing here knows about GPT-Neo.

mod add;
mod attention;
mod embed;
mod gelu;
mod layernorm;
mod linear;

pub use attention::{AttentionShape, MAX_HEAD_DIM};
pub use linear::LinearShape;

use crate::gpu::{Gpu, Kernel};
use anyhow::Result;

/// Every kernel of the forward, compiled once per device.
pub struct Kernels {
    embed: Kernel,
    layernorm: Kernel,
    linear: Kernel,
    attention: Kernel,
    gelu: Kernel,
    add: Kernel,
}

impl Kernels {
    pub fn new(gpu: &Gpu) -> Result<Kernels> {
        Ok(Kernels {
            embed: Kernel::new(gpu, "embed", include_str!("../../shaders/embed.wgsl"))?,
            layernorm: Kernel::new(
                gpu,
                "layernorm",
                include_str!("../../shaders/layernorm.wgsl"),
            )?,
            linear: Kernel::new(gpu, "linear", include_str!("../../shaders/linear.wgsl"))?,
            attention: Kernel::new(
                gpu,
                "attention",
                include_str!("../../shaders/attention.wgsl"),
            )?,
            gelu: Kernel::new(gpu, "gelu_new", include_str!("../../shaders/gelu_new.wgsl"))?,
            add: Kernel::new(gpu, "add", include_str!("../../shaders/add.wgsl"))?,
        })
    }
}

/// Workgroups needed to cover `items` items, `per_group` at a time.
fn groups_for(items: usize, per_group: usize) -> u32 {
    items.div_ceil(per_group) as u32
}
