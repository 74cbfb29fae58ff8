//! neoprobe: a GPT-Neo forward pass written as WGSL compute kernels run through wgpu, with
//! TransformerLens-style hook points read back to the host, and the grammar-tuning challenge
//! (do block-8 MLP neurons prefer nouns or verbs?) built on it.

pub mod batching;
pub mod bench;
pub mod challenge;
pub mod engine;
pub mod error;
pub mod explain;
pub mod extract;
pub mod figures;
pub mod gpu;
pub mod hub;
pub mod input_arrays;
pub mod kernels;
pub mod model;
pub mod notes;
pub mod out_dir;
pub mod output;
pub mod pages;
pub mod patch;
pub mod pool;
pub mod reference;
pub mod session;
pub mod stream_out;
pub mod sweep;
pub mod text;
pub mod tokenize;
pub mod trace;
pub mod verify;
