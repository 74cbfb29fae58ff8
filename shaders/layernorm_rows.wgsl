// The parameters, bindings and last step of the layernorm kernels (appended to layernorm.wgsl
// and layernorm_cpu.wgsl when they are compiled):
//
//   y[t, c] = (x[t, c] − mean_t) · inv_std_t · gamma[c] + beta[c]
//
// Layouts (row-major f32): x, y [n_tokens, width]; gamma, beta [width].

struct Params {
    n_tokens: u32,
    width: u32,
    eps: f32,
    _pad0: u32,
}

// A deliberate error, 0 unless `neoprobe verify --inject-fault layernorm` asks: 1/√(var + eps)
// is scaled by 1 + FAULT, so that verify's tests can show its checks fail.
override FAULT: f32 = 0.0;

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> gamma: array<f32>;
@group(0) @binding(3) var<storage, read> beta: array<f32>;
@group(0) @binding(4) var<storage, read_write> y: array<f32>;

// Normalizes columns first, first + stride, … of the row that starts at x[row].
fn store_normalized(row: u32, first: u32, stride: u32, mean: f32, inv_std: f32) {
    for (var c = first; c < params.width; c = c + stride) {
        y[row + c] = (x[row + c] - mean) * inv_std * gamma[c] + beta[c];
    }
}
