// The output stage of every linear kernel (appended to linear.wgsl, linear_texture.wgsl and
// linear_cpu.wgsl when they are compiled), with the parameters and output bindings they share. A
// kernel computes the dot product (x · wᵀ)[t, n] and hands it to store_output, which adds the
// bias and applies the epilogue to v = (x · wᵀ)[t, n] + bias[n] at i = t · n_out + n; a kernel
// that has added the bias itself hands v to store_biased (or, four outputs at a time, to
// store_row of linear_rows.wgsl or linear_rows_vec4.wgsl). Fusing the epilogues here saves the
// separate passes over memory that a GELU kernel and a residual-add kernel would make.
//
//   epilogue 0 (bias):      y[i] = v
//   epilogue 1 (gelu):      aux_out[i] = v  (mlp.hook_pre),   y[i] = gelu_new(v)  (mlp.hook_post)
//   epilogue 2 (residual):  y[i] = v  (the sublayer output),  aux_out[i] = aux_in[i] + v  (the new
//                           residual stream)
//
// gelu_new(v) = 0.5 · v · (1 + tanh(√(2/π) · (v + 0.044715 · v³))), in the operation order of
// HF's NewGELUActivation. The tanh argument is clamped to [-15, 15] first: tanh(±15) is ±1 in
// f32, some backends compute tanh through exp and return NaN for large arguments, and for v³
// overflowing to ±inf the clamp still gives ±15 — so every finite v gives a finite result.
// The epilogue is written once, on four outputs at a time (`epilogue`); a scalar store uses one
// of the four.
// Bindings: params (0), the kernel's x (1) and w (2), bias [n_out] (3), y [n_tokens, n_out] (4),
// aux_in and aux_out [n_tokens, n_out] (5, 6; a 16-byte placeholder when the epilogue does not
// use them).

struct Params {
    n_tokens: u32,
    n_in: u32,
    n_out: u32,
    epilogue: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> y: array<f32>;
@group(0) @binding(5) var<storage, read> aux_in: array<f32>;
@group(0) @binding(6) var<storage, read_write> aux_out: array<f32>;

const EPILOGUE_BIAS: u32 = 0u;
const EPILOGUE_GELU: u32 = 1u;
const EPILOGUE_RESIDUAL: u32 = 2u;
const SQRT_2_OVER_PI: f32 = 0.7978845608028654;

fn gelu_new(v: vec4<f32>) -> vec4<f32> {
    let inner = clamp(SQRT_2_OVER_PI * (v + 0.044715 * (v * v * v)), vec4<f32>(-15.0), vec4<f32>(15.0));
    return 0.5 * v * (1.0 + tanh(inner));
}

// What the epilogue stores for four outputs v (bias added): y, and aux_out (unused by the bias
// epilogue). aux_in is the residual stream there (read only by the residual epilogue).
struct EpilogueOut {
    y: vec4<f32>,
    aux_out: vec4<f32>,
}

fn epilogue(v: vec4<f32>, aux_in: vec4<f32>) -> EpilogueOut {
    switch params.epilogue {
        case EPILOGUE_GELU: {
            return EpilogueOut(gelu_new(v), v);
        }
        case EPILOGUE_RESIDUAL: {
            return EpilogueOut(v, aux_in + v);
        }
        default: {
            return EpilogueOut(v, v);
        }
    }
}

fn store_output(t: u32, n: u32, dot_product: f32) {
    store_biased(t, n, dot_product + bias[n]);
}

// store_output for a kernel that has already added bias[n] (loaded once for many tokens).
fn store_biased(t: u32, n: u32, v: f32) {
    let i = t * params.n_out + n;
    var resid = 0.0;
    if (params.epilogue == EPILOGUE_RESIDUAL) {
        resid = aux_in[i];
    }
    let out = epilogue(vec4<f32>(v), vec4<f32>(resid));
    y[i] = out.y.x;
    if (params.epilogue != EPILOGUE_BIAS) {
        aux_out[i] = out.aux_out.x;
    }
}
