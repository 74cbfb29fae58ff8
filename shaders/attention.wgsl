// Causal self-attention of GPT-Neo, per head, over sequences packed end to end:
//
//   s_j  = q_t · k_j                        (no 1/√head_dim scaling: GPT-Neo has none)
//   p_j  = exp(s_j − max_j s_j) / Σ_j exp(s_j − max_j s_j)
//   z_t  = Σ_j p_j v_j
//
// over the keys j = first_key(t) ..= t that query t may see (attention_keys.wgsl: its own
// sequence, causal, and on local layers the last `window` positions).
//
// Layouts (row-major f32): qkv [n_tokens, 3·width] holds q, k and v side by side in each row
// (columns [0, width), [width, 2·width), [2·width, 3·width)); head h owns columns
// [h·head_dim, (h+1)·head_dim) of each. seq_start [n_tokens] u32 is the index of the first
// token of t's sequence. z [n_tokens, width] is the heads' outputs, merged the same way.
// head_dim must be a multiple of 4 and at most 128.
//
// Bindings: params (0, attention_keys.wgsl), qkv (1), seq_start (2), z (3).
// This is the plain version: one invocation per (query token, head) walks its keys twice: once
// for the maximum score, once for the softmax weights and the weighted sum of values. 64
// invocations per workgroup, on the flat 2-D grid of grid_1d.

@group(0) @binding(1) var<storage, read> qkv: array<vec4<f32>>;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) groups: vec3<u32>,
        @builtin(local_invocation_index) lane: u32) {
    let query = query_of(wid, groups, lane);
    if (!query.valid) {
        return;
    }
    let t = query.t;
    let h = query.h;
    let first = query.first;
    let d4 = params.head_dim / 4u;         // head width in vec4s
    let row4 = 3u * params.width / 4u;     // qkv row length in vec4s
    let k_col4 = params.width / 4u + h * d4;
    let v_col4 = 2u * params.width / 4u + h * d4;

    var q: array<vec4<f32>, MAX_HEAD_DIM4>;
    for (var e = 0u; e < d4; e = e + 1u) {
        q[e] = qkv[t * row4 + h * d4 + e];
    }

    var max_score = -3.4028235e38;
    for (var j = first; j <= t; j = j + 1u) {
        var s = 0.0;
        for (var e = 0u; e < d4; e = e + 1u) {
            s = s + dot(q[e], qkv[j * row4 + k_col4 + e]);
        }
        max_score = max(max_score, scaled(s));
    }

    var acc: array<vec4<f32>, MAX_HEAD_DIM4>;
    for (var e = 0u; e < d4; e = e + 1u) {
        acc[e] = vec4<f32>(0.0);
    }
    var total = 0.0;
    for (var j = first; j <= t; j = j + 1u) {
        var s = 0.0;
        for (var e = 0u; e < d4; e = e + 1u) {
            s = s + dot(q[e], qkv[j * row4 + k_col4 + e]);
        }
        let p = exp(scaled(s) - max_score);
        total = total + p;
        for (var e = 0u; e < d4; e = e + 1u) {
            acc[e] = acc[e] + p * qkv[j * row4 + v_col4 + e];
        }
    }
    let out4 = t * (params.width / 4u) + h * d4;
    for (var e = 0u; e < d4; e = e + 1u) {
        z[out4 + e] = acc[e] / total;
    }
}
