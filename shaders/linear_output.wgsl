// The output stage of every linear kernel (appended to linear.wgsl, linear_cpu.wgsl and
// linear_tiled.wgsl when they are compiled), with the parameters and output
// bindings they share. A kernel computes the dot product (x · wᵀ)[t, n] and hands it to
// store_output, which adds the bias and applies the epilogue to v = (x · wᵀ)[t, n] + bias[n] at
// i = t · n_out + n; a kernel that has added the bias itself hands v to store_biased (or, four
// outputs at a time, to store_row of linear_rows.wgsl or linear_rows_vec4.wgsl). Fusing the
// epilogues here saves the separate passes over memory that a GELU kernel and a residual-add
// kernel would make.
//
//   EPILOGUE 0 (bias):      y[i] = v
//   EPILOGUE 1 (gelu):      y[i] = gelu_new(v)                  (mlp.hook_post)
//   EPILOGUE 2 (residual):  y[i] = aux_in[i] + v                (the new residual stream)
//   and with WRITE_AUX:     aux_out[i] = v                      (gelu: mlp.hook_pre; residual: the
//                                                                sublayer output, attn_out or mlp_out)
//
// EPILOGUE and WRITE_AUX are pipeline constants (src/kernels/linear.rs makes one pipeline per
// combination it is asked for), so a kernel carries only its own epilogue: no branch on it at
// run time, and aux_out is written only when a hook asks for v. The epilogue itself (gelu_new,
// the residual add) is epilogue.wgsl, compiled before this file; unfused_epilogue.wgsl runs the
// same code on its own where an intervention changes v in between.
// RECORD_OWNER (off unless asked for) makes every store write, instead of y and v, who stored
// the output: y[i] = the workgroup (wid.x + 65536 · wid.y) and aux_out[i] = the invocation
// (local_invocation_index), as u32 bits. It is how the geometry `neoprobe explain` states is
// checked against the kernel itself; each kernel's main hands its ids to set_owner first.
// Bindings: params (0), the kernel's x (1) and w (2), bias [n_out] (3), y [n_tokens, n_out] (4),
// aux_in and aux_out [n_tokens, n_out] (5, 6; a 16-byte placeholder when the epilogue does not
// use them).

struct Params {
    n_tokens: u32,
    n_in: u32,
    n_out: u32,
    _pad: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> y: array<f32>;
@group(0) @binding(5) var<storage, read> aux_in: array<f32>;
@group(0) @binding(6) var<storage, read_write> aux_out: array<f32>;

override WRITE_AUX: bool;
override RECORD_OWNER: bool = false;
// A deliberate error, 0 unless `neoprobe verify --inject-fault linear` asks: every v is scaled by
// 1 + FAULT, so that verify's tests can show its checks fail on a faulty kernel.
override FAULT: f32 = 0.0;

var<private> owner_workgroup: u32;
var<private> owner_invocation: u32;

fn set_owner(wid: vec3<u32>, invocation: u32) {
    owner_workgroup = wid.x + 65536u * wid.y;
    owner_invocation = invocation;
}

fn store_output(t: u32, n: u32, dot_product: f32) {
    store_biased(t, n, dot_product + bias[n]);
}

// store_output for a kernel that has already added bias[n] (loaded once for many tokens).
fn store_biased(t: u32, n: u32, exact_v: f32) {
    let v = exact_v * (1.0 + FAULT);
    let i = t * params.n_out + n;
    if (RECORD_OWNER) {
        y[i] = bitcast<f32>(owner_workgroup);
        aux_out[i] = bitcast<f32>(owner_invocation);
        return;
    }
    var resid = 0.0;
    if (EPILOGUE == EPILOGUE_RESIDUAL) {
        resid = aux_in[i];
    }
    y[i] = epilogue(vec4<f32>(v), vec4<f32>(resid)).x;
    if (WRITE_AUX) {
        aux_out[i] = v;
    }
}
