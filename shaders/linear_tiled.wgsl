// Linear layer tuned for GPUs, same math as linear.wgsl:
//
//   y[t, n] = Σ_k x[t, k] · w[n, k] + bias[n]      (then the epilogue of linear_output.wgsl)
//
// x [n_tokens, n_in] and w [n_out, n_in] are row-major f32 storage buffers, as in linear.wgsl
// (HF's weight layout, no conversion pass). params and the epilogue are in linear_output.wgsl;
// bias_row and store_row, which load and store four consecutive outputs, in linear_rows.wgsl
// (any n_out) or linear_rows_vec4.wgsl (n_out a multiple of 4: one vec4 access each).
//
// Work split: a workgroup computes a tile of 32 consecutive tokens × 32 consecutive outputs with
// K_SLICES slices of 64 invocations. The model's layers have few tokens (279 for the challenge)
// and few outputs (768 for out_proj and c_proj), so one slice per tile leaves most of a large GPU
// idle while it walks c_proj's 3072 values of k; the slices split k instead:
// - slice s takes the blocks s, s + K_SLICES, s + 2 · K_SLICES, … of BK = 16 consecutive k, so the
//   whole workgroup walks K_SLICES · 16 neighbouring k per step;
// - per block, the slice copies its x tile (32 tokens × 16 k) and w tile (32 outputs × 16 k) into
//   workgroup memory, transposed to k-major: lane l moves k = l mod 16 of rows l / 16 + 4 · j
//   (j = 0..7), so 16 neighbouring lanes read 64 consecutive bytes of a row. The next block's
//   values are fetched into registers while the current block is multiplied;
// - lane (ty, tx) = (l / 8, l mod 8) multiplies tokens 4 · ty .. + 3 by outputs 4 · tx .. + 3:
//   per k, one vec4 of x and one vec4 of w from workgroup memory for 16 multiply-adds into four
//   vec4 block sums (one per token; the k loop is unrolled so they stay in registers), which are
//   added to the slice's four vec4 sums once per block: blocked summation, whose rounding grows
//   with the block's 16 terms plus the number of blocks rather than with n_in;
// - at the end the slices' partial tiles meet in workgroup memory, and each of the 256 vec4s
//   of the tile (a token's four outputs) is summed over the slices in slice order, biased, and
//   handed to store_row by one invocation.
// A k-major tile row holds 8 vec4s of data and one of padding, so that the copy's 16 lanes of
// one row of x land in different memory banks. Tokens past n_tokens, outputs past n_out and k
// past n_in read as zero and store nothing.

@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> w: array<f32>;

const TILE: u32 = 32u;
const BK: u32 = 16u;
const K_SLICES: u32 = 4u;
const SLICE: u32 = 64u;
const WORKGROUP: u32 = K_SLICES * SLICE;
// vec4s per k in a transposed tile: TILE / 4 of data, one of padding.
const TILE_ROW: u32 = TILE / 4u + 1u;
// A slice's x tile, then its w tile.
const SLICE_VEC4S: u32 = 2u * BK * TILE_ROW;
// The output tile in vec4s (one token's four outputs each).
const TILE_VEC4S: u32 = TILE * TILE / 4u;

// The slices' x and w tiles while k is walked; their partial output tiles at the end
// (K_SLICES · TILE_VEC4S ≤ K_SLICES · SLICE_VEC4S).
var<workgroup> tiles: array<vec4<f32>, K_SLICES * SLICE_VEC4S>;

fn x_at(t: u32, k: u32) -> f32 {
    if (t < params.n_tokens && k < params.n_in) {
        return x[t * params.n_in + k];
    }
    return 0.0;
}

fn w_at(n: u32, k: u32) -> f32 {
    if (n < params.n_out && k < params.n_in) {
        return w[n * params.n_in + k];
    }
    return 0.0;
}

@compute @workgroup_size(WORKGROUP)
fn main(@builtin(workgroup_id) wid: vec3<u32>, @builtin(local_invocation_index) i: u32) {
    set_owner(wid, i);
    let n0 = wid.x * TILE;
    let t0 = wid.y * TILE;
    let slice = i / SLICE;
    let lane = i % SLICE;
    let x_tile = slice * SLICE_VEC4S;
    let w_tile = x_tile + BK * TILE_ROW;
    // The copy: this lane moves k = kb + copy_k of tile rows copy_row + 4 · j.
    let copy_k = lane % BK;
    let copy_row = lane / BK;
    // The multiply: this lane's tokens are the vec4 ty of an x tile row, its outputs the vec4 tx
    // of a w tile row.
    let ty = lane / 8u;
    let tx = lane % 8u;

    let n_blocks = (params.n_in + BK - 1u) / BK;
    let steps = (n_blocks + K_SLICES - 1u) / K_SLICES;
    var k = slice * BK + copy_k;
    // unroll j in 0..8
    var x_{j} = x_at(t0 + copy_row + 4u * {j}u, k);
    var w_{j} = w_at(n0 + copy_row + 4u * {j}u, k);
    // end unroll
    // unroll a in 0..4
    var acc_{a} = vec4<f32>(0.0);
    // end unroll
    for (var step = 0u; step < steps; step = step + 1u) {
        workgroupBarrier();
        // unroll j in 0..8
        tiles[x_tile + copy_k * TILE_ROW + {j}u][copy_row] = x_{j};
        tiles[w_tile + copy_k * TILE_ROW + {j}u][copy_row] = w_{j};
        // end unroll
        workgroupBarrier();
        k = k + K_SLICES * BK;
        // unroll j in 0..8
        x_{j} = x_at(t0 + copy_row + 4u * {j}u, k);
        w_{j} = w_at(n0 + copy_row + 4u * {j}u, k);
        // end unroll
        // The block's 16 products are summed on their own, then added to the slice's sums.
        // unroll a in 0..4
        var block_{a} = vec4<f32>(0.0);
        // end unroll
        // unroll q in 0..16
        {
            let xs = tiles[x_tile + {q}u * TILE_ROW + ty];
            let ws = tiles[w_tile + {q}u * TILE_ROW + tx];
            block_0 = block_0 + xs.x * ws;
            block_1 = block_1 + xs.y * ws;
            block_2 = block_2 + xs.z * ws;
            block_3 = block_3 + xs.w * ws;
        }
        // end unroll
        // unroll a in 0..4
        acc_{a} = acc_{a} + block_{a};
        // end unroll
    }
    workgroupBarrier();
    // unroll a in 0..4
    tiles[slice * TILE_VEC4S + (4u * ty + {a}u) * (TILE / 4u) + tx] = acc_{a};
    // end unroll
    workgroupBarrier();
    for (var v = i; v < TILE_VEC4S; v = v + WORKGROUP) {
        var sum = tiles[v];
        for (var s = 1u; s < K_SLICES; s = s + 1u) {
            sum = sum + tiles[s * TILE_VEC4S + v];
        }
        let t = t0 + v / (TILE / 4u);
        let n = n0 + 4u * (v % (TILE / 4u));
        if (t < params.n_tokens && n < params.n_out) {
            store_row(t, n, sum + bias_row(n));
        }
    }
}
