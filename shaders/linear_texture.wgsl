// Linear layer, tuned for CPU Vulkan drivers (lavapipe), same math as linear.wgsl:
//
//   y[t, n] = Σ_k x[t, k] · w[n, k] + bias[n]      (then the epilogue of linear_output.wgsl)
//
// x and w are read from rgba32float textures holding four consecutive k per texel (see
// rows_to_texture.wgsl): x_tex is n_tokens high, w_tex is n_out high, both ceil(n_in / 4) wide.
// params, bias and y are declared in linear_output.wgsl.
//
// Work split: a workgroup of 64 invocations covers TOKENS = 8 consecutive tokens and 64 · 2
// consecutive outputs; each invocation keeps the 8 × 2 accumulators of its own two outputs in
// registers. All lanes of a subgroup need the same x texels, so k advances in blocks of
// subgroup_size texels: each lane fetches one x texel per token and subgroupShuffle hands it to
// the others; w texels are each lane's own. Per 8 · 2 · 4 multiply-adds a lane fetches 2 w texels
// and 8 / subgroup_size x texels. Lanes past n_out or tokens past n_tokens compute on clamped
// fetches and store nothing (they must stay to take part in the shuffles).

@group(0) @binding(1) var x_tex: texture_2d<f32>;
@group(0) @binding(2) var w_tex: texture_2d<f32>;

const TOKENS: u32 = 8u;

// This lane's texel of column block kb for token row tb + r (zero past the row's end).
fn own_x(kb: u32, lane: u32, k4: u32, row: u32) -> vec4<f32> {
    let col = kb + lane;
    if (col < k4 && row < params.n_tokens) {
        return textureLoad(x_tex, vec2<u32>(col, row), 0);
    }
    return vec4<f32>(0.0);
}

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>,
        @builtin(local_invocation_index) lane: u32,
        @builtin(subgroup_invocation_id) sg_lane: u32,
        @builtin(subgroup_size) sg_size: u32) {
    let tb = wid.y * TOKENS;
    let n0 = (wid.x * 64u + lane) * 2u;
    let k4 = (params.n_in + 3u) / 4u;
    var acc0 = vec2<f32>(0.0);
    var acc1 = vec2<f32>(0.0);
    var acc2 = vec2<f32>(0.0);
    var acc3 = vec2<f32>(0.0);
    var acc4 = vec2<f32>(0.0);
    var acc5 = vec2<f32>(0.0);
    var acc6 = vec2<f32>(0.0);
    var acc7 = vec2<f32>(0.0);
    for (var kb = 0u; kb < k4; kb = kb + sg_size) {
        let s0 = own_x(kb, sg_lane, k4, tb);
        let s1 = own_x(kb, sg_lane, k4, tb + 1u);
        let s2 = own_x(kb, sg_lane, k4, tb + 2u);
        let s3 = own_x(kb, sg_lane, k4, tb + 3u);
        let s4 = own_x(kb, sg_lane, k4, tb + 4u);
        let s5 = own_x(kb, sg_lane, k4, tb + 5u);
        let s6 = own_x(kb, sg_lane, k4, tb + 6u);
        let s7 = own_x(kb, sg_lane, k4, tb + 7u);
        let block = min(sg_size, k4 - kb);
        for (var j = 0u; j < block; j = j + 1u) {
            let w0 = textureLoad(w_tex, vec2<u32>(kb + j, n0), 0);
            let w1 = textureLoad(w_tex, vec2<u32>(kb + j, n0 + 1u), 0);
            let x0 = subgroupShuffle(s0, j);
            let x1 = subgroupShuffle(s1, j);
            let x2 = subgroupShuffle(s2, j);
            let x3 = subgroupShuffle(s3, j);
            let x4 = subgroupShuffle(s4, j);
            let x5 = subgroupShuffle(s5, j);
            let x6 = subgroupShuffle(s6, j);
            let x7 = subgroupShuffle(s7, j);
            acc0 = acc0 + vec2<f32>(dot(x0, w0), dot(x0, w1));
            acc1 = acc1 + vec2<f32>(dot(x1, w0), dot(x1, w1));
            acc2 = acc2 + vec2<f32>(dot(x2, w0), dot(x2, w1));
            acc3 = acc3 + vec2<f32>(dot(x3, w0), dot(x3, w1));
            acc4 = acc4 + vec2<f32>(dot(x4, w0), dot(x4, w1));
            acc5 = acc5 + vec2<f32>(dot(x5, w0), dot(x5, w1));
            acc6 = acc6 + vec2<f32>(dot(x6, w0), dot(x6, w1));
            acc7 = acc7 + vec2<f32>(dot(x7, w0), dot(x7, w1));
        }
    }
    let accs = array<vec2<f32>, 8>(acc0, acc1, acc2, acc3, acc4, acc5, acc6, acc7);
    for (var r = 0u; r < TOKENS; r = r + 1u) {
        let t = tb + r;
        for (var c = 0u; c < 2u; c = c + 1u) {
            let n = n0 + c;
            if (t < params.n_tokens && n < params.n_out) {
                store_output(t, n, accs[r][c]);
            }
        }
    }
}
