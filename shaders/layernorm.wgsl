// LayerNorm over each row (token) of x, as torch.nn.LayerNorm:
//
//   mean_t = Σ_c x[t, c] / width
//   var_t  = Σ_c (x[t, c] − mean_t)² / width          (biased, two passes for accuracy)
//   y[t, c] = (x[t, c] − mean_t) / √(var_t + eps) · gamma[c] + beta[c]
//
// Parameters, bindings and the last step (store_normalized) are in layernorm_rows.wgsl.
// Work split: one workgroup of 64 invocations per row; each invocation sums a strided slice of
// the row, then a tree reduction in workgroup memory combines the 64 partial sums (once for the
// mean, once for the variance). Rows are on the flat 2-D grid of grid_1d.

const LANES: u32 = 64u;
var<workgroup> partial: array<f32, LANES>;

// Sums `value` over the workgroup; every invocation gets the total.
fn workgroup_sum(lane: u32, value: f32) -> f32 {
    partial[lane] = value;
    workgroupBarrier();
    for (var stride = LANES / 2u; stride > 0u; stride = stride / 2u) {
        if (lane < stride) {
            partial[lane] = partial[lane] + partial[lane + stride];
        }
        workgroupBarrier();
    }
    let total = partial[0];
    workgroupBarrier();
    return total;
}

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) groups: vec3<u32>,
        @builtin(local_invocation_index) lane: u32) {
    let t = wid.y * groups.x + wid.x;
    // The whole workgroup leaves together, so the barriers below stay uniform.
    if (t >= params.n_tokens) {
        return;
    }
    let row = t * params.width;
    var sum = 0.0;
    for (var c = lane; c < params.width; c = c + LANES) {
        sum = sum + x[row + c];
    }
    let mean = workgroup_sum(lane, sum) / f32(params.width);
    var squares = 0.0;
    for (var c = lane; c < params.width; c = c + LANES) {
        let d = x[row + c] - mean;
        squares = squares + d * d;
    }
    let variance = workgroup_sum(lane, squares) / f32(params.width);
    let inv_std = (1.0 + FAULT) / sqrt(variance + params.eps);
    store_normalized(row, lane, LANES, mean, inv_std);
}
