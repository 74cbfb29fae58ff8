// The epilogue of a linear layer, applied to v = (x · wᵀ)[t, n] + bias[n] (shared by the linear
// kernels through linear_output.wgsl, and by unfused_epilogue.wgsl):
//
//   EPILOGUE 0 (bias):      y = v
//   EPILOGUE 1 (gelu):      y = gelu_new(v)          (c_fc: mlp.hook_pre → mlp.hook_post)
//   EPILOGUE 2 (residual):  y = resid + v            (out_proj, c_proj: the sublayer output added
//                                                     to the residual stream)
//
// gelu_new(v) = 0.5 · v · (1 + tanh(√(2/π) · (v + 0.044715 · v³))), in the operation order of
// HF's NewGELUActivation. The tanh argument is clamped to [-15, 15] first: tanh(±15) is ±1 in
// f32, some backends compute tanh through exp and return NaN for large arguments, and for v³
// overflowing to ±inf the clamp still gives ±15 — so every finite v gives a finite result.
// Written once, on four values at a time; a scalar store uses one of the four. EPILOGUE is a
// pipeline constant: a kernel carries only its own epilogue, with no branch on it at run time.

override EPILOGUE: u32;

const EPILOGUE_BIAS: u32 = 0u;
const EPILOGUE_GELU: u32 = 1u;
const EPILOGUE_RESIDUAL: u32 = 2u;
const SQRT_2_OVER_PI: f32 = 0.7978845608028654;

fn gelu_new(v: vec4<f32>) -> vec4<f32> {
    let inner = clamp(SQRT_2_OVER_PI * (v + 0.044715 * (v * v * v)), vec4<f32>(-15.0), vec4<f32>(15.0));
    return 0.5 * v * (1.0 + tanh(inner));
}

// y for four values v (bias added); resid is the residual stream there (read only by the
// residual epilogue).
fn epilogue(v: vec4<f32>, resid: vec4<f32>) -> vec4<f32> {
    switch EPILOGUE {
        case EPILOGUE_GELU: {
            return gelu_new(v);
        }
        case EPILOGUE_RESIDUAL: {
            return resid + v;
        }
        default: {
            return v;
        }
    }
}
