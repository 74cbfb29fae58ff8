// Linear layer tuned for CPU Vulkan drivers (lavapipe), same math as linear.wgsl:
//
//   y[t, n] = Σ_k x[t, k] · w[n, k] + bias[n]      (then the epilogue of linear_output.wgsl)
//
// x_tex is a row-major texel matrix (n_tokens high, k4 = ceil(n_in / 4) texels wide, written by
// rows_to_texture.wgsl or copied) and w_tex the weight in the lane-packed layout
// (TexelLayout::LanePacked in src/kernels/texels.rs, which places the texels), read as storage
// textures. params and the epilogue are in linear_output.wgsl; bias_row and store_row, which load
// and store four consecutive outputs, in linear_rows.wgsl (any n_out) or linear_rows_vec4.wgsl
// (n_out a multiple of 4: one vec4 access each).
//
// A CPU driver runs the 8 invocations of a workgroup as the 8 lanes of one SIMD register, so this
// kernel is written for exactly that: one subgroup of 8 lanes per workgroup.
// Work split: a workgroup computes 2 · TOKEN_PAIRS consecutive tokens (token group g_t) × 32
// consecutive outputs (output group g_n); lane l owns the four outputs n = 32 · g_n + 4 · l + o
// (o = 0..3) for all the tokens, one vec4 accumulator per token. The tile is chosen per layer
// (CpuTile in src/kernels/variants.rs): TOKEN_PAIRS is filled in before compilation, and the
// pipeline constant OUTPUTS_FIRST says which grid axis runs along the outputs. k advances 8
// texels (32 values of k) per iteration:
// - each lane reads its 4 rows' texels kb .. kb + 7 (32 reads; in the lane-packed layout the 8
//   lanes' texels for one (j, o) are 8 neighbouring texels, so the reads stream through memory);
// - then two tokens at a time, lane l reads texel kb + l of each token's row, and for j = 0..8
//   subgroupBroadcast(·, j) hands every lane texel kb + j of both (a register shuffle), which
//   the lane multiplies into both tokens' accumulators with its own four rows' texel kb + j.
// Per iteration a lane makes 32 + 2 · TOKEN_PAIRS texel reads and 256 · TOKEN_PAIRS broadcasts
// for 2 · TOKEN_PAIRS · 4 · 32 multiply-adds; each pair's two accumulators stay in registers for
// their 256 multiply-adds, and every weight value read from the stack serves both.
//
// Why the code has this shape (docs/cpu-driver.md has the measurements): on lavapipe a
// storage-texture read of 8 lanes' texels is inlined where a sampled fetch is a call, and a
// storage-buffer access runs lane by lane; a broadcast from a constant lane is a register shuffle;
// the driver keeps loops rolled and puts arrays indexed by loop counters in memory, hence the
// `// unroll` blocks (src/kernels/unroll.rs); two tokens per block give eight independent chains
// of additions; and consecutive workgroups share the operand that fits the cache (CpuTile).
// It needs subgroups of at least 8 lanes holding the workgroup's invocations on lanes 0..7.
// Tokens past n_tokens compute on clamped rows and store nothing; k past n_in reads x as zero
// (whatever w holds there is multiplied by zero); rows past n_out are zero in w_tex.

@group(0) @binding(1) var x_tex: texture_storage_2d<rgba32float, read>;
@group(0) @binding(2) var w_tex: texture_storage_2d<rgba32float, read>;

// Texels of a weight row per texture row in the lane-packed layout (PACKED_CHUNK in
// src/kernels/texels.rs).
const PACKED_CHUNK: u32 = 1024u;

// Whether grid x runs along the output groups (and grid y along the token groups) or the reverse.
override OUTPUTS_FIRST: bool;

@compute @workgroup_size(8)
fn main(@builtin(workgroup_id) wid: vec3<u32>,
        @builtin(local_invocation_index) invocation: u32,
        @builtin(subgroup_invocation_id) lane: u32) {
    set_owner(wid, invocation);
    let k4 = (params.n_in + 3u) / 4u;
    let n_chunks = (k4 + PACKED_CHUNK - 1u) / PACKED_CHUNK;
    let token_group = select(wid.x, wid.y, OUTPUTS_FIRST);
    let output_group = select(wid.y, wid.x, OUTPUTS_FIRST);
    let t0 = token_group * (2u * {TOKEN_PAIRS}u);
    let n = output_group * 32u + 4u * lane;
    // Pair p holds tokens t0 + 2p (a) and t0 + 2p + 1 (b).
    // unroll p in 0..{TOKEN_PAIRS}
    let x_row_{p}a = min(t0 + 2u * {p}u, params.n_tokens - 1u);
    let x_row_{p}b = min(t0 + 2u * {p}u + 1u, params.n_tokens - 1u);
    var acc_{p}a = vec4<f32>(0.0);
    var acc_{p}b = vec4<f32>(0.0);
    // end unroll
    for (var kb = 0u; kb < k4; kb = kb + 8u) {
        // Texel kb + j of row n + o is at (8 · (kb + j mod PACKED_CHUNK) + lane,
        // (4 · g_n + o) · n_chunks + (kb + j) / PACKED_CHUNK); kb .. kb + 7 share a chunk.
        let w_col = 8u * (kb % PACKED_CHUNK) + lane;
        let w_row = 4u * output_group * n_chunks + kb / PACKED_CHUNK;
        // unroll j in 0..8
        // unroll o in 0..4
        let w{o}_{j} = textureLoad(w_tex, vec2<u32>(w_col + 8u * {j}u, w_row + {o}u * n_chunks));
        // end unroll
        // end unroll
        let own_col = min(kb + lane, k4 - 1u);
        let own_in_range = kb + lane < k4;
        // unroll p in 0..{TOKEN_PAIRS}
        {
            let x_own_a = select(vec4<f32>(0.0), textureLoad(x_tex, vec2<u32>(own_col, x_row_{p}a)), own_in_range);
            let x_own_b = select(vec4<f32>(0.0), textureLoad(x_tex, vec2<u32>(own_col, x_row_{p}b)), own_in_range);
            // This pass's 32 values of k are summed on their own, then added to the running
            // sums: blocked summation, whose rounding grows with 32 + n_in / 32 terms rather
            // than with n_in.
            var a = vec4<f32>(0.0);
            var b = vec4<f32>(0.0);
            // unroll j in 0..8
            {
                let xa = subgroupBroadcast(x_own_a, {j}u);
                let xb = subgroupBroadcast(x_own_b, {j}u);
                // Component c of texel kb + j is k = 4 · (kb + j) + c; w_c holds w[n + o, k].
                // unroll c in 0..4
                {
                    let w_c = vec4<f32>(w0_{j}[{c}], w1_{j}[{c}], w2_{j}[{c}], w3_{j}[{c}]);
                    a = a + xa[{c}] * w_c;
                    b = b + xb[{c}] * w_c;
                }
                // end unroll
            }
            // end unroll
            acc_{p}a = acc_{p}a + a;
            acc_{p}b = acc_{p}b + b;
        }
        // end unroll
    }
    if (n >= params.n_out) {
        return;
    }
    let bias4 = bias_row(n);
    // unroll p in 0..{TOKEN_PAIRS}
    if (t0 + 2u * {p}u < params.n_tokens) {
        store_row(t0 + 2u * {p}u, n, acc_{p}a + bias4);
    }
    if (t0 + 2u * {p}u + 1u < params.n_tokens) {
        store_row(t0 + 2u * {p}u + 1u, n, acc_{p}b + bias4);
    }
    // end unroll
}
