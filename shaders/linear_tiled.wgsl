// Linear layer, tuned for discrete GPUs; same math as linear.wgsl:
//
//   y[t, n] = Σ_k x[t, k] · w[n, k] + bias[n]      (then the epilogue of linear_epilogue.wgsl)
//
// Layouts (row-major f32 storage buffers): x [n_tokens, n_in], w [n_out, n_in] (HF's layout),
// bias [n_out], y [n_tokens, n_out].
// Work split: classic shared-memory tiling. A workgroup of 16 × 16 invocations computes a
// 64-token × 64-output tile of y; each invocation a 4 × 4 block of it in registers (tokens
// ty + 16i, outputs tx + 16j, so neighbouring invocations touch neighbouring addresses). k
// advances 16 at a time: the workgroup first stages the 64 × 16 slices of x and w in workgroup
// memory (each invocation loads 4 + 4 values, zero past the matrix edges), then every invocation
// runs 16 steps of 4 × 4 multiply-adds out of workgroup memory.
// Grid: x = ceil(n_out / 64), y = ceil(n_tokens / 64).

struct Params {
    n_tokens: u32,
    n_in: u32,
    n_out: u32,
    epilogue: u32,   // see linear_epilogue.wgsl
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> w: array<f32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> y: array<f32>;

const TILE: u32 = 64u;
const K_STEP: u32 = 16u;

var<workgroup> x_tile: array<array<f32, TILE>, K_STEP>;   // [k][token]
var<workgroup> w_tile: array<array<f32, TILE>, K_STEP>;   // [k][output]

@compute @workgroup_size(16, 16)
fn main(@builtin(workgroup_id) wid: vec3<u32>,
        @builtin(local_invocation_id) lid: vec3<u32>,
        @builtin(local_invocation_index) lane: u32) {
    let t0 = wid.y * TILE;
    let n0 = wid.x * TILE;
    var acc: array<array<f32, 4>, 4>;
    for (var i = 0u; i < 4u; i = i + 1u) {
        for (var j = 0u; j < 4u; j = j + 1u) {
            acc[i][j] = 0.0;
        }
    }
    for (var k0 = 0u; k0 < params.n_in; k0 = k0 + K_STEP) {
        // Stage: invocation `lane` loads 4 consecutive k of one row of each tile (64 rows × 16 k).
        let row = lane / 4u;
        let kq = (lane % 4u) * 4u;
        for (var e = 0u; e < 4u; e = e + 1u) {
            let k = k0 + kq + e;
            let t = t0 + row;
            let n = n0 + row;
            var xv = 0.0;
            var wv = 0.0;
            if (k < params.n_in && t < params.n_tokens) {
                xv = x[t * params.n_in + k];
            }
            if (k < params.n_in && n < params.n_out) {
                wv = w[n * params.n_in + k];
            }
            x_tile[kq + e][row] = xv;
            w_tile[kq + e][row] = wv;
        }
        workgroupBarrier();
        for (var kk = 0u; kk < K_STEP; kk = kk + 1u) {
            var xs: array<f32, 4>;
            var ws: array<f32, 4>;
            for (var i = 0u; i < 4u; i = i + 1u) {
                xs[i] = x_tile[kk][lid.y + 16u * i];
                ws[i] = w_tile[kk][lid.x + 16u * i];
            }
            for (var i = 0u; i < 4u; i = i + 1u) {
                for (var j = 0u; j < 4u; j = j + 1u) {
                    acc[i][j] = acc[i][j] + xs[i] * ws[j];
                }
            }
        }
        workgroupBarrier();
    }
    for (var i = 0u; i < 4u; i = i + 1u) {
        let t = t0 + lid.y + 16u * i;
        for (var j = 0u; j < 4u; j = j + 1u) {
            let n = n0 + lid.x + 16u * j;
            if (t < params.n_tokens && n < params.n_out) {
                store_output(t * params.n_out + n, acc[i][j] + bias[n]);
            }
        }
    }
}
