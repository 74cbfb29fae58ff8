// LayerNorm over each row (token) of x for CPU Vulkan drivers (lavapipe), reading x as texels;
// the same math as layernorm.wgsl and layernorm_cpu.wgsl (torch.nn.LayerNorm):
//
//   mean_t = Σ_c x[t, c] / width
//   var_t  = Σ_c (x[t, c] − mean_t)² / width          (biased, two passes for accuracy)
//   y[t, c] = (x[t, c] − mean_t) / √(var_t + eps) · gamma[c] + beta[c]
//
// For widths that are a multiple of 4 (src/kernels/layernorm.rs falls back to
// layernorm_cpu.wgsl otherwise). x_tex holds x as a row-major texel matrix (n_tokens high,
// width / 4 texels wide: TexelLayout::Rows in src/kernels/texels.rs); gamma, beta and y are read
// and written four columns at a time as vec4s.
// Work split: one workgroup of 8 invocations per row — on a CPU driver, one 8-lane SIMD register.
// Lane l reads texels l, l + 8, l + 16, …: the columns c ≡ 4l + i (mod 32), i = 0..3. It sums
// them into two vec4 partial sums by the parity of the texel's group of 8, so that the 8 lanes
// hold 64 partial sums, one per column c mod 64 as layernorm.wgsl's 64 invocations do; a lane
// folds its own 8 (c with c + 32, then within its four columns) and subgroupAdd combines the
// lanes: no workgroup memory and no barriers.
// Why texels: on lavapipe a storage-buffer load runs lane by lane, while a texel read brings the
// 8 lanes four values each (docs/cpu-driver.md).
// It needs subgroups of at least 8 lanes holding the workgroup on lanes 0..7, like linear_cpu.wgsl.
// Rows are on the flat 2-D grid of grid_1d.

struct Params {
    n_tokens: u32,
    width: u32,
    eps: f32,
    _pad0: u32,
}

// A deliberate error, 0 unless `neoprobe verify --inject-fault layernorm` asks (as in
// layernorm_rows.wgsl).
override FAULT: f32 = 0.0;

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var x_tex: texture_storage_2d<rgba32float, read>;
@group(0) @binding(2) var<storage, read> gamma: array<vec4<f32>>;
@group(0) @binding(3) var<storage, read> beta: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read_write> y: array<vec4<f32>>;

// A lane's 8 partial sums (even: texels of even groups of 8, odd: of odd groups), folded
// pairwise.
fn fold(even: vec4<f32>, odd: vec4<f32>) -> f32 {
    let s = even + odd;
    return (s.x + s.z) + (s.y + s.w);
}

@compute @workgroup_size(8)
fn main(@builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) groups: vec3<u32>,
        @builtin(subgroup_invocation_id) lane: u32) {
    let t = wid.y * groups.x + wid.x;
    // The whole workgroup leaves together, so the subgroup sums below see all 8 lanes.
    if (t >= params.n_tokens) {
        return;
    }
    let k4 = params.width / 4u;
    var even = vec4<f32>(0.0);
    var odd = vec4<f32>(0.0);
    for (var j = lane; j < k4; j = j + 16u) {
        even = even + textureLoad(x_tex, vec2<u32>(j, t));
        if (j + 8u < k4) {
            odd = odd + textureLoad(x_tex, vec2<u32>(j + 8u, t));
        }
    }
    let mean = subgroupAdd(fold(even, odd)) / f32(params.width);
    even = vec4<f32>(0.0);
    odd = vec4<f32>(0.0);
    for (var j = lane; j < k4; j = j + 16u) {
        let d = textureLoad(x_tex, vec2<u32>(j, t)) - mean;
        even = even + d * d;
        if (j + 8u < k4) {
            let e = textureLoad(x_tex, vec2<u32>(j + 8u, t)) - mean;
            odd = odd + e * e;
        }
    }
    let variance = subgroupAdd(fold(even, odd)) / f32(params.width);
    let inv_std = (1.0 + FAULT) / sqrt(variance + params.eps);
    for (var j = lane; j < k4; j = j + 8u) {
        y[t * k4 + j] = (textureLoad(x_tex, vec2<u32>(j, t)) - mean) * inv_std * gamma[j] + beta[j];
    }
}
