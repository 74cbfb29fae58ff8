// The end of every linear kernel (appended to linear.wgsl and linear_texture.wgsl when they are
// compiled): what happens to v = (x · wᵀ)[t, n] + bias[n] at
// flat index i = t · n_out + n. Fusing these here saves the separate passes over memory that a
// GELU kernel and a residual-add kernel would make.
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
// The including kernel declares `params` (with an `epilogue` field) and `y`; aux_in and aux_out
// are bound to a 4-byte placeholder when the epilogue does not use them.

@group(0) @binding(5) var<storage, read> aux_in: array<f32>;
@group(0) @binding(6) var<storage, read_write> aux_out: array<f32>;

const EPILOGUE_GELU: u32 = 1u;
const EPILOGUE_RESIDUAL: u32 = 2u;
const SQRT_2_OVER_PI: f32 = 0.7978845608028654;

fn gelu_new(v: f32) -> f32 {
    let inner = clamp(SQRT_2_OVER_PI * (v + 0.044715 * (v * v * v)), -15.0, 15.0);
    return 0.5 * v * (1.0 + tanh(inner));
}

fn store_output(i: u32, v: f32) {
    switch params.epilogue {
        case EPILOGUE_GELU: {
            aux_out[i] = v;
            y[i] = gelu_new(v);
        }
        case EPILOGUE_RESIDUAL: {
            y[i] = v;
            aux_out[i] = aux_in[i] + v;
        }
        default: {
            y[i] = v;
        }
    }
}
