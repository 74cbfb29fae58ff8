// Linear layer (torch.nn.Linear) on HF's weight layout [out, in]:
//
//   y[t, n] = Σ_k x[t, k] · w[n, k] + bias[n]      (then the epilogue of linear_output.wgsl)
//
// Layouts (row-major f32 storage buffers): x [n_tokens, n_in], w [n_out, n_in]; params, bias and
// y are declared in linear_output.wgsl.
// This is the plain version, kept as the readable definition and the baseline for the tuned
// variants: one invocation per output element, looping over k in f32 in blocks of BLOCK.
// Work split: a workgroup covers 64 consecutive outputs n of one token t; the
// ceil(n_out / 64) · n_tokens workgroups lie on the flat 2-D grid of grid_1d.

// Blocked summation: each BLOCK consecutive products are summed on their own and the block sums
// added in order, so the rounding error grows with BLOCK + n_in / BLOCK terms rather than with
// n_in (docs/fidelity.md).
const BLOCK: u32 = 32u;

@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> w: array<f32>;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) groups: vec3<u32>,
        @builtin(local_invocation_index) lane: u32) {
    set_owner(wid, lane);
    let group = wid.y * groups.x + wid.x;
    let groups_per_token = (params.n_out + 63u) / 64u;
    let t = group / groups_per_token;
    let n = (group % groups_per_token) * 64u + lane;
    if (t >= params.n_tokens || n >= params.n_out) {
        return;
    }
    var acc = 0.0;
    for (var k0 = 0u; k0 < params.n_in; k0 = k0 + BLOCK) {
        var block = 0.0;
        for (var k = k0; k < min(k0 + BLOCK, params.n_in); k = k + 1u) {
            block = block + x[t * params.n_in + k] * w[n * params.n_in + k];
        }
        acc = acc + block;
    }
    store_output(t, n, acc);
}
