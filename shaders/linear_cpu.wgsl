// Linear layer tuned for CPU Vulkan drivers (lavapipe), same math as linear.wgsl:
//
//   y[t, n] = Σ_k x[t, k] · w[n, k] + bias[n]      (then the epilogue of linear_output.wgsl)
//
// x_tex and w_tex are texel matrices (rows_to_texture.wgsl), read as storage textures: x is
// n_tokens high, w is n_out high, both k4 = ceil(n_in / 4) texels wide. params, bias and y are
// declared in linear_output.wgsl.
//
// A CPU driver runs the 8 invocations of a workgroup as the 8 lanes of one SIMD register, so this
// kernel is written for exactly that: one subgroup of 8 lanes per workgroup.
// Work split: a workgroup computes 16 consecutive tokens × 16 consecutive outputs; lane l owns
// outputs n0 = 16 · wid.y + l and n1 = n0 + 8 for all 16 tokens, 32 accumulators in registers.
// k advances 8 texels (32 values of k) per iteration: lane l fetches texel kb + l of each of the
// 16 token rows, then for j = 0..8, subgroupBroadcast(·, j) hands every lane texel kb + j of each
// token row (a register shuffle), which the lane multiplies with its own w texels kb + j of rows
// n0 and n1. Per iteration a lane makes 16 + 16 texel reads for 16 · 2 · 32 multiply-adds.
//
// What the shape of the code comes from (measured on lavapipe):
// - a storage-texture read of 8 lanes' texels is inlined (≈ 20 cycles) where a sampled-texture
//   fetch calls a generic sampling function (≈ 63), and a storage-buffer load runs lane by lane
//   (≈ 25 cycles per lane and value);
// - a broadcast from a constant lane is a register shuffle; a shuffle by a loop counter is not;
// - the driver keeps loops rolled and puts arrays indexed by loop counters in memory, so the
//   token and lane loops are written as `// unroll` blocks, expanded before compilation
//   (src/kernels/unroll.rs);
// - 16 tokens × 2 outputs per lane measured at or near the fastest of 8–32 × 1–8 (smaller tiles
//   share fewer fetches, larger ones spill registers);
// - workgroups advance along tokens first (grid x), so consecutive workgroups reuse the same 16
//   weight rows from the cache.
// It needs subgroups of at least 8 lanes holding the workgroup's invocations on lanes 0..7.
// Tokens past n_tokens compute on clamped rows and store nothing; k past n_in reads as zero.

@group(0) @binding(1) var x_tex: texture_storage_2d<rgba32float, read>;
@group(0) @binding(2) var w_tex: texture_storage_2d<rgba32float, read>;

@compute @workgroup_size(8)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(subgroup_invocation_id) lane: u32) {
    let k4 = (params.n_in + 3u) / 4u;
    let t0 = wid.x * 16u;
    let n0 = wid.y * 16u + lane;
    let n1 = n0 + 8u;
    let w_row0 = min(n0, params.n_out - 1u);
    let w_row1 = min(n1, params.n_out - 1u);
    // unroll r in 0..16
    let x_row_{r} = min(t0 + {r}u, params.n_tokens - 1u);
    var acc_{r} = vec2<f32>(0.0);
    // end unroll
    for (var kb = 0u; kb < k4; kb = kb + 8u) {
        let own_col = min(kb + lane, k4 - 1u);
        let own_in_range = kb + lane < k4;
        // unroll r in 0..16
        let x_own_{r} = select(vec4<f32>(0.0), textureLoad(x_tex, vec2<u32>(own_col, x_row_{r})), own_in_range);
        // end unroll
        // unroll j in 0..8
        {
            let col = min(kb + {j}u, k4 - 1u);
            let w0 = textureLoad(w_tex, vec2<u32>(col, w_row0));
            let w1 = textureLoad(w_tex, vec2<u32>(col, w_row1));
            // unroll r in 0..16
            let x_{r} = subgroupBroadcast(x_own_{r}, {j}u);
            acc_{r} = acc_{r} + vec2<f32>(dot(x_{r}, w0), dot(x_{r}, w1));
            // end unroll
        }
        // end unroll
    }
    // A storage-buffer access runs lane by lane here: load each lane's two biases once.
    let bias0 = bias[w_row0];
    let bias1 = bias[w_row1];
    // unroll r in 0..16
    if (t0 + {r}u < params.n_tokens) {
        if (n0 < params.n_out) {
            store_biased(t0 + {r}u, n0, acc_{r}.x + bias0);
        }
        if (n1 < params.n_out) {
            store_biased(t0 + {r}u, n1, acc_{r}.y + bias1);
        }
    }
    // end unroll
}
