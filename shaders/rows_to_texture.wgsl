// Copies a row-major f32 matrix into an rgba32float texture, four consecutive columns per texel:
//
//   texels[t][i] = (m[t, 4i], m[t, 4i+1], m[t, 4i+2], m[t, 4i+3])     (columns ≥ width read as 0)
//
// The texel variant (`cpu`) reads its operands this way because, on CPU Vulkan drivers such as
// lavapipe, a storage-buffer load runs lane by lane while a texel read brings four values. Used
// only where a row is not whole, copy-aligned texels; otherwise a buffer-to-texture copy does it.
// Layouts: m [n_rows, width] f32; texels: texture n_rows high, ceil(width / 4) wide.
// Work split: one invocation per texel, 256 per workgroup, on the flat 2-D grid of grid_1d.

struct Params {
    n_rows: u32,
    width: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> m: array<f32>;
@group(0) @binding(2) var texels: texture_storage_2d<rgba32float, write>;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) groups: vec3<u32>,
        @builtin(local_invocation_index) lane: u32) {
    let texels_per_row = (params.width + 3u) / 4u;
    let i = (wid.y * groups.x + wid.x) * 256u + lane;
    if (i >= params.n_rows * texels_per_row) {
        return;
    }
    let row = i / texels_per_row;
    let col = (i % texels_per_row) * 4u;
    var v = vec4<f32>(0.0);
    for (var j = 0u; j < 4u; j = j + 1u) {
        if (col + j < params.width) {
            v[j] = m[row * params.width + col + j];
        }
    }
    textureStore(texels, vec2<u32>(i % texels_per_row, row), v);
}
