// LayerNorm over each row (token) of x for CPU Vulkan drivers (lavapipe); the same math as
// layernorm.wgsl (torch.nn.LayerNorm):
//
//   mean_t = Σ_c x[t, c] / width
//   var_t  = Σ_c (x[t, c] − mean_t)² / width          (biased, two passes for accuracy)
//   y[t, c] = (x[t, c] − mean_t) / √(var_t + eps) · gamma[c] + beta[c]
//
// Parameters, bindings and the last step (store_normalized) are in layernorm_rows.wgsl.
// Work split: one workgroup of 8 invocations per row — on a CPU driver, one 8-lane SIMD register.
// Each invocation keeps the 8 partial sums that invocations lane, lane + 8, …, lane + 56 of
// layernorm.wgsl would (columns c ≡ lane + 8i mod 64), folds them in that kernel's tree order,
// and subgroupAdd combines the 8 lanes: no workgroup memory and no barriers. layernorm.wgsl's
// 64 invocations per row need a barrier at every step of their tree reduction, and on lavapipe
// each barrier switches between the workgroup's 8 SIMD strands (docs/cpu-driver.md). The 64
// partial sums keep the rounding of layernorm.wgsl: one running sum per lane fails the layernorm
// test's case of 922 values near 1000.
// It needs subgroups of at least 8 lanes holding the workgroup on lanes 0..7, like linear_cpu.wgsl.
// Rows are on the flat 2-D grid of grid_1d.

// The partial sums of one lane (see above), folded as layernorm.wgsl's tree folds its 64.
struct Partials {
    s0: f32, s1: f32, s2: f32, s3: f32, s4: f32, s5: f32, s6: f32, s7: f32,
}

fn fold(p: Partials) -> f32 {
    return ((p.s0 + p.s4) + (p.s2 + p.s6)) + ((p.s1 + p.s5) + (p.s3 + p.s7));
}

@compute @workgroup_size(8)
fn main(@builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) groups: vec3<u32>,
        @builtin(subgroup_invocation_id) lane: u32) {
    let t = wid.y * groups.x + wid.x;
    // The whole workgroup leaves together, so the subgroup sums below see all 8 lanes.
    if (t >= params.n_tokens) {
        return;
    }
    let row = t * params.width;
    var sums = Partials(0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0);
    for (var c = lane; c < params.width; c = c + 64u) {
        // unroll i in 0..8
        if (c + 8u * {i}u < params.width) {
            sums.s{i} = sums.s{i} + x[row + c + 8u * {i}u];
        }
        // end unroll
    }
    let mean = subgroupAdd(fold(sums)) / f32(params.width);
    var squares = Partials(0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0);
    for (var c = lane; c < params.width; c = c + 64u) {
        // unroll i in 0..8
        if (c + 8u * {i}u < params.width) {
            let d = x[row + c + 8u * {i}u] - mean;
            squares.s{i} = squares.s{i} + d * d;
        }
        // end unroll
    }
    let variance = subgroupAdd(fold(squares)) / f32(params.width);
    let inv_std = (1.0 + FAULT) / sqrt(variance + params.eps);
    store_normalized(row, lane, 8u, mean, inv_std);
}
