// Copies a row-major f32 matrix into an rgba32float texture, four consecutive columns per texel:
//
//   texels[t][i] = (m[t, 4i], m[t, 4i+1], m[t, 4i+2], m[t, 4i+3])     (columns ≥ width read as 0)
//
// The texture kernels read their operands this way because, on CPU Vulkan drivers such as
// lavapipe, a texel fetch costs about as much as one scalar storage-buffer load but brings four
// values (measured: storage-buffer loads run lane by lane there).
// Layouts: m [n_rows, width] f32; texels in one of two layouts (their texture sizes are made by
// TexelLayout::extent in src/kernels/texels.rs), each row k4 = ceil(width / 4) texels long:
// - rows (0): texel i of row t at (i, t);
// - lane-packed (1), the weights of linear_cpu.wgsl: rows are taken in groups of 32 (a
//   workgroup's outputs), row n = 32 · g + 4 · l + o being output o of lane l. Texel i of row n
//   is at (8 · (i mod PACKED_CHUNK) + l, (4 · g + o) · n_chunks + i / PACKED_CHUNK), with
//   n_chunks = ceil(k4 / PACKED_CHUNK): the 8 lanes' texels i of one o sit side by side, so a
//   workgroup reads its weights as 4 sequential streams, and a row longer than PACKED_CHUNK
//   texels continues on the next texture rows so the texture stays narrow.
// Work split: one invocation per texel, 256 per workgroup, on the flat 2-D grid of grid_1d.

struct Params {
    n_rows: u32,
    width: u32,
    texel_layout: u32,
    _pad: u32,
}

const LAYOUT_LANE_PACKED: u32 = 1u;
// Must match PACKED_CHUNK in linear_cpu.wgsl and src/kernels/texels.rs.
const PACKED_CHUNK: u32 = 1024u;

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
    let texel = i % texels_per_row;
    var at = vec2<u32>(texel, row);
    if (params.texel_layout == LAYOUT_LANE_PACKED) {
        let n_chunks = (texels_per_row + PACKED_CHUNK - 1u) / PACKED_CHUNK;
        let lane = (row % 32u) / 4u;
        let o = row % 4u;
        at = vec2<u32>(8u * (texel % PACKED_CHUNK) + lane, (4u * (row / 32u) + o) * n_chunks + texel / PACKED_CHUNK);
    }
    textureStore(texels, at, v);
}
