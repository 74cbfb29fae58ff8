// A linear layer's epilogue on its own (epilogue.wgsl is compiled after this file), for the
// forward's one case where it cannot be fused: an intervention on v itself — mlp.hook_pre
// (before GELU), attn_out or mlp_out (before the residual add). The linear kernel then stores v
// with the plain epilogue, the intervention changes it in place, and this kernel finishes:
//
//   EPILOGUE 1 (gelu):      y[i] = gelu_new(v[i])
//   EPILOGUE 2 (residual):  y[i] = resid[i] + v[i]
//
// The code is the fused epilogue's, so an unchanged v gives the fused kernel's bits.
// Layouts (row-major): v, resid, y [n_tokens · width] f32 (resid read only by the residual
// epilogue; the gelu pipeline binds any buffer there).
// Work split: one invocation per value, 256 per workgroup, workgroups on the flat 2-D grid of
// grid_1d (index = wid.y * num_workgroups.x + wid.x).

struct Params {
    n: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read> v: array<f32>;
@group(0) @binding(2) var<storage, read> resid: array<f32>;
@group(0) @binding(3) var<storage, read_write> y: array<f32>;

@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) groups: vec3<u32>,
        @builtin(local_invocation_index) lane: u32) {
    let i = (wid.y * groups.x + wid.x) * 256u + lane;
    if (i >= params.n) {
        return;
    }
    var r = 0.0;
    if (EPILOGUE == EPILOGUE_RESIDUAL) {
        r = resid[i];
    }
    y[i] = epilogue(vec4<f32>(v[i]), vec4<f32>(r)).x;
}
