// gelu_new, GPT-Neo's activation (the tanh approximation of GELU), elementwise:
//
//   y = 0.5 · x · (1 + tanh(√(2/π) · (x + 0.044715 · x³)))
//
// written in the same operation order as HF's NewGELUActivation. The tanh argument is clamped to
// [-15, 15] first: tanh(±15) is ±1 in f32, and some backends compute tanh through exp and return
// NaN for large arguments. For x³ overflowing to ±inf the clamp still gives ±15, so every finite
// x gives a finite y.
//
// Work split: one invocation per element, 256 per workgroup, on the flat 2-D grid of grid_1d.

struct Params {
    n: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> y: array<f32>;

const SQRT_2_OVER_PI: f32 = 0.7978845608028654;

fn gelu_new(v: f32) -> f32 {
    let inner = clamp(SQRT_2_OVER_PI * (v + 0.044715 * (v * v * v)), -15.0, 15.0);
    return 0.5 * v * (1.0 + tanh(inner));
}

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) groups: vec3<u32>,
        @builtin(local_invocation_index) lane: u32) {
    let i = (wid.y * groups.x + wid.x) * 256u + lane;
    if (i < params.n) {
        y[i] = gelu_new(x[i]);
    }
}
