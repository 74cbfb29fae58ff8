// Causal self-attention of GPT-Neo for CPU Vulkan drivers (lavapipe): the math of
// attention.wgsl in one pass over the keys, with an online softmax:
//
//   for j = first_key(t) ..= t  (attention_keys.wgsl):
//     s = q_t · k_j  (unscaled);  m' = max(m, s);  r = exp(m − m');  p = exp(s − m')
//     total = total · r + p;  acc = acc · r + p · v_j;  m = m'
//   z_t = acc / total
//
// q, k and v are read from the qkv texel matrix (n_tokens high, 3·width/4 texels wide; see
// rows_to_texture.wgsl) as a storage texture, and the head's vec4s (d4 = head_dim / 4 of them, at
// most MAX_HEAD_DIM4) are `// unroll` blocks (src/kernels/unroll.rs) guarded by e < d4, so that q
// and the running sum stay in registers: on a CPU driver, arrays indexed by a loop counter live
// in memory (see linear_cpu.wgsl). Pipelines are made per head size with HEAD_DIM4 fixed (an
// override constant), so that d4 is a constant and the driver drops the guards and the blocks
// past d4.
// seq_start [n_tokens] u32 and z [n_tokens, width] are row-major storage buffers; head_dim is a
// multiple of 4, at most 128.
// Bindings: params (0, attention_keys.wgsl), qkv texels (1), seq_start (2), z (3).
// Work split: one invocation per (query token, head), 64 per workgroup, on the flat 2-D grid of
// grid_1d.

@group(0) @binding(1) var qkv: texture_storage_2d<rgba32float, read>;

// head_dim / 4, fixed at pipeline creation; 0: taken from params at run time.
override HEAD_DIM4: u32 = 0u;

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
    let d4 = select(params.head_dim / 4u, HEAD_DIM4, HEAD_DIM4 > 0u);
    let q_col = h * d4;
    let k_col = params.width / 4u + h * d4;
    let v_col = 2u * params.width / 4u + h * d4;

    // unroll e in 0..32
    var q_{e} = vec4<f32>(0.0);
    var acc_{e} = vec4<f32>(0.0);
    if ({e}u < d4) {
        q_{e} = textureLoad(qkv, vec2<u32>(q_col + {e}u, t));
    }
    // end unroll
    var running_max = -3.4028235e38;
    var total = 0.0;
    for (var j = first; j <= t; j = j + 1u) {
        var s = 0.0;
        // unroll e in 0..32
        if ({e}u < d4) {
            s = s + dot(q_{e}, textureLoad(qkv, vec2<u32>(k_col + {e}u, j)));
        }
        // end unroll
        s = scaled(s);
        let new_max = max(running_max, s);
        let rescale = exp(running_max - new_max);
        let p = exp(s - new_max);
        total = total * rescale + p;
        // unroll e in 0..32
        if ({e}u < d4) {
            acc_{e} = acc_{e} * rescale + p * textureLoad(qkv, vec2<u32>(v_col + {e}u, j));
        }
        // end unroll
        running_max = new_max;
    }
    let out4 = t * (params.width / 4u) + h * d4;
    // unroll e in 0..32
    if ({e}u < d4) {
        z[out4 + {e}u] = acc_{e} / total;
    }
    // end unroll
}
