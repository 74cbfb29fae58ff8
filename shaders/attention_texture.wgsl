// Causal self-attention of GPT-Neo, tuned for CPU Vulkan drivers (lavapipe); same math as
// attention.wgsl:
//
//   s_j = q_t · k_j  (unscaled),  z_t = Σ_j softmax(s)_j v_j  over j = first_key(t) ..= t
//   (attention_keys.wgsl).
//
// q, k and v are read as texels of the qkv texel matrix (n_tokens high, 3·width/4 texels wide;
// see rows_to_texture.wgsl), and the softmax is taken in a single pass over the keys with a
// running maximum m ("online softmax"): when a score raises m, the running sum of weights and the
// running weighted sum of values are both rescaled by exp(m_old − m_new), so each key is fetched
// once instead of twice.
// seq_start [n_tokens] u32 and z [n_tokens, width] are row-major storage buffers; head_dim is a
// multiple of 4, at most 128.
// Bindings: params (0, attention_keys.wgsl), qkv texels (1), seq_start (2), z (3).
// Work split: one invocation per (query token, head), 64 per workgroup, on the flat 2-D grid of
// grid_1d.

@group(0) @binding(1) var qkv: texture_2d<f32>;

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
    let d4 = params.head_dim / 4u;
    let q_col = h * d4;
    let k_col = params.width / 4u + h * d4;
    let v_col = 2u * params.width / 4u + h * d4;

    var q: array<vec4<f32>, MAX_HEAD_DIM4>;
    var acc: array<vec4<f32>, MAX_HEAD_DIM4>;
    for (var e = 0u; e < d4; e = e + 1u) {
        q[e] = textureLoad(qkv, vec2<u32>(q_col + e, t), 0);
        acc[e] = vec4<f32>(0.0);
    }
    var running_max = -3.4028235e38;
    var total = 0.0;
    for (var j = first; j <= t; j = j + 1u) {
        var s = 0.0;
        for (var e = 0u; e < d4; e = e + 1u) {
            s = s + dot(q[e], textureLoad(qkv, vec2<u32>(k_col + e, j), 0));
        }
        let new_max = max(running_max, s);
        let rescale = exp(running_max - new_max);
        let p = exp(s - new_max);
        total = total * rescale + p;
        for (var e = 0u; e < d4; e = e + 1u) {
            acc[e] = acc[e] * rescale + p * textureLoad(qkv, vec2<u32>(v_col + e, j), 0);
        }
        running_max = new_max;
    }
    let out4 = t * (params.width / 4u) + h * d4;
    for (var e = 0u; e < d4; e = e + 1u) {
        z[out4 + e] = acc[e] / total;
    }
}
