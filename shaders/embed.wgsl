// Embedding: the residual stream entering block 0.
//
//   hidden[t, c] = token_rows[t, c] + wpe[position[t], c]
//
// token_rows holds the wte rows of the batch's tokens, gathered on the host (the whole wte table,
// 50257 × 768 floats, never goes to the GPU). position[t] is token t's index inside its own
// sequence: sequences are packed end to end and positions restart at 0 for each.
//
// Layouts (row-major f32): token_rows [n_tokens, width], wpe [n_positions, width],
// position [n_tokens] u32, hidden [n_tokens, width].
// Work split: one invocation per element of hidden, 256 per workgroup, workgroups on the flat
// 2-D grid of grid_1d (index = wid.y * num_workgroups.x + wid.x).

struct Params {
    n_tokens: u32,
    width: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> token_rows: array<f32>;
@group(0) @binding(2) var<storage, read> wpe: array<f32>;
@group(0) @binding(3) var<storage, read> position: array<u32>;
@group(0) @binding(4) var<storage, read_write> hidden: array<f32>;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) groups: vec3<u32>,
        @builtin(local_invocation_index) lane: u32) {
    let i = (wid.y * groups.x + wid.x) * 256u + lane;
    if (i >= params.n_tokens * params.width) {
        return;
    }
    let t = i / params.width;
    let c = i % params.width;
    hidden[i] = token_rows[i] + wpe[position[t] * params.width + c];
}
