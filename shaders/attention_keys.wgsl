// Shared by attention.wgsl and attention_cpu.wgsl (appended to each when
// compiled): their parameters, the one rule for which keys a query sees, and which query an
// invocation computes.
//
// Query t sees the keys j of its own sequence with j ≤ t and, on a local layer (window > 0),
// t − window < j: j runs from first_key(t) = max(seq_start[t], t + 1 − window) to t. This is
// HF's mask: `bias = tril(ones)`, and on local layers `bias ^= tril(bias, -window_size)`.

struct Params {
    n_tokens: u32,
    n_heads: u32,
    head_dim: u32,
    window: u32,   // 0 on global layers
    width: u32,    // n_heads · head_dim
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(2) var<storage, read> seq_start: array<u32>;
@group(0) @binding(3) var<storage, read_write> z: array<vec4<f32>>;

// A deliberate error, 0 unless `neoprobe verify --inject-fault attention` asks: every score is
// scaled by 1 + FAULT (see `scaled`), so that verify's tests can show its checks fail.
override FAULT: f32 = 0.0;

fn scaled(score: f32) -> f32 {
    return score * (1.0 + FAULT);
}

// The widest head kept in registers, in vec4s (head_dim ≤ 128).
const MAX_HEAD_DIM4: u32 = 32u;

fn first_key(t: u32) -> u32 {
    let start = seq_start[t];
    if (params.window > 0u && t + 1u > start + params.window) {
        return t + 1u - params.window;
    }
    return start;
}

// An attention invocation's work: query token t with head h, keys first_key(t) ..= t. Items are
// numbered t · n_heads + h over 64-invocation workgroups on the flat 2-D grid of grid_1d;
// `valid` is false for the invocations past the last item.
struct Query {
    valid: bool,
    t: u32,
    h: u32,
    first: u32,
}

fn query_of(wid: vec3<u32>, groups: vec3<u32>, lane: u32) -> Query {
    let item = (wid.y * groups.x + wid.x) * 64u + lane;
    if (item >= params.n_tokens * params.n_heads) {
        return Query(false, 0u, 0u, 0u);
    }
    let t = item / params.n_heads;
    return Query(true, t, item % params.n_heads, first_key(t));
}
