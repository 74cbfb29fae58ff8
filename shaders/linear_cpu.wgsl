// Linear layer tuned for CPU Vulkan drivers (lavapipe), same math as linear.wgsl:
//
//   y[t, n] = Σ_k x[t, k] · w[n, k] + bias[n]      (then the epilogue of linear_output.wgsl)
//
// x_tex is a row-major texel matrix (n_tokens high, k4 = ceil(n_in / 4) texels wide, written by
// rows_to_texture.wgsl) and w_tex the weight in the lane-packed layout (TexelLayout::LanePacked
// in src/kernels/texels.rs, which places the texels), read as storage textures. params and the
// epilogue are in linear_output.wgsl; bias_row and store_row, which load and store four
// consecutive outputs, in linear_rows.wgsl (any n_out) or linear_rows_vec4.wgsl (n_out a
// multiple of 4: one vec4 access each).
//
// A CPU driver runs the 8 invocations of a workgroup as the 8 lanes of one SIMD register, so this
// kernel is written for exactly that: one subgroup of 8 lanes per workgroup.
// Work split: a workgroup computes 16 consecutive tokens × 32 consecutive outputs; lane l owns
// the four outputs n = 32 · wid.y + 4 · l + o (o = 0..3) for all 16 tokens, one vec4 accumulator
// per token. k advances 8 texels (32 values of k) per iteration:
// - each lane reads its 4 rows' texels kb .. kb + 7 (32 reads; in the lane-packed layout the 8
//   lanes' texels for one (j, o) are 8 neighbouring texels, so the reads stream through memory);
// - then token by token, lane l reads texel kb + l of the token's row, and for j = 0..8
//   subgroupBroadcast(·, j) hands every lane texel kb + j (a register shuffle), which the lane
//   multiplies into its accumulator with its own four rows' texel kb + j.
// Per iteration a lane makes 32 + 16 texel reads and 128 broadcasts for 16 · 4 · 32
// multiply-adds, and each token's accumulator stays in registers for its 128 multiply-adds.
//
// What the shape of the code comes from (measured on lavapipe):
// - a storage-texture read of 8 lanes' texels is inlined (≈ 20 cycles) where a sampled-texture
//   fetch calls a generic sampling function (≈ 63); a storage-buffer access runs lane by lane,
//   and a vec4 store costs little more than a scalar one (the output stage fell from about 16%
//   of the kernel's time with four scalar stores per token to about 5% with one vec4 store);
// - a broadcast from a constant lane is a register shuffle; a shuffle by a loop counter is not;
// - the driver keeps loops rolled and puts arrays indexed by loop counters in memory, so the
//   token, lane and row loops are written as `// unroll` blocks, expanded before compilation
//   (src/kernels/unroll.rs);
// - token by token (rather than lane by lane across all 16 tokens) keeps each accumulator in
//   registers and takes the weights from the stack as memory operands; with 4 outputs per lane
//   a lane's outputs are one vec4 to store. 16 tokens × 4 outputs measured at or near the
//   fastest of 8–64 tokens × 2–8 outputs;
// - the time follows the arithmetic, not the texel reads: tiles of 8, 12 and 16 tokens measured
//   alike, and a variant doing twice the arithmetic per texel read took 2.3 times as long;
// - workgroups advance along tokens first (grid x), so consecutive workgroups reuse the same 32
//   weight rows from the cache.
// It needs subgroups of at least 8 lanes holding the workgroup's invocations on lanes 0..7.
// Tokens past n_tokens compute on clamped rows and store nothing; k past n_in reads x as zero
// (whatever w holds there is multiplied by zero); rows past n_out are zero in w_tex.

@group(0) @binding(1) var x_tex: texture_storage_2d<rgba32float, read>;
@group(0) @binding(2) var w_tex: texture_storage_2d<rgba32float, read>;

// Texels of a weight row per texture row in the lane-packed layout (PACKED_CHUNK in
// src/kernels/texels.rs).
const PACKED_CHUNK: u32 = 1024u;

@compute @workgroup_size(8)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(subgroup_invocation_id) lane: u32) {
    let k4 = (params.n_in + 3u) / 4u;
    let n_chunks = (k4 + PACKED_CHUNK - 1u) / PACKED_CHUNK;
    let t0 = wid.x * 16u;
    let n = wid.y * 32u + 4u * lane;
    // unroll r in 0..16
    let x_row_{r} = min(t0 + {r}u, params.n_tokens - 1u);
    var acc_{r} = vec4<f32>(0.0);
    // end unroll
    for (var kb = 0u; kb < k4; kb = kb + 8u) {
        // Texel kb + j of row n + o is at (8 · (kb + j mod PACKED_CHUNK) + lane,
        // (4 · wid.y + o) · n_chunks + (kb + j) / PACKED_CHUNK); kb .. kb + 7 share a chunk.
        let w_col = 8u * (kb % PACKED_CHUNK) + lane;
        let w_row = 4u * wid.y * n_chunks + kb / PACKED_CHUNK;
        // unroll j in 0..8
        // unroll o in 0..4
        let w{o}_{j} = textureLoad(w_tex, vec2<u32>(w_col + 8u * {j}u, w_row + {o}u * n_chunks));
        // end unroll
        // end unroll
        let own_col = min(kb + lane, k4 - 1u);
        let own_in_range = kb + lane < k4;
        // unroll r in 0..16
        {
            let x_own = select(vec4<f32>(0.0), textureLoad(x_tex, vec2<u32>(own_col, x_row_{r})), own_in_range);
            var acc = acc_{r};
            // unroll j in 0..8
            {
                let x = subgroupBroadcast(x_own, {j}u);
                acc = acc + x.x * vec4<f32>(w0_{j}.x, w1_{j}.x, w2_{j}.x, w3_{j}.x);
                acc = acc + x.y * vec4<f32>(w0_{j}.y, w1_{j}.y, w2_{j}.y, w3_{j}.y);
                acc = acc + x.z * vec4<f32>(w0_{j}.z, w1_{j}.z, w2_{j}.z, w3_{j}.z);
                acc = acc + x.w * vec4<f32>(w0_{j}.w, w1_{j}.w, w2_{j}.w, w3_{j}.w);
            }
            // end unroll
            acc_{r} = acc;
        }
        // end unroll
    }
    if (n >= params.n_out) {
        return;
    }
    let bias4 = bias_row(n);
    // unroll r in 0..16
    if (t0 + {r}u < params.n_tokens) {
        store_row(t0 + {r}u, n, acc_{r} + bias4);
    }
    // end unroll
}
