// Residual add:  sum[i] = a[i] + b[i]  over n elements (the residual stream plus a sublayer's output).
//
// Work split: one invocation per element, 256 per workgroup, on the flat 2-D grid of grid_1d.

struct Params {
    n: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read_write> sum: array<f32>;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) groups: vec3<u32>,
        @builtin(local_invocation_index) lane: u32) {
    let i = (wid.y * groups.x + wid.x) * 256u + lane;
    if (i < params.n) {
        sum[i] = a[i] + b[i];
    }
}
