// bias_row and store_row for linear_cpu.wgsl when n_out is a multiple of 4: four consecutive
// outputs n .. n + 3 (n a multiple of 4) of one token at a time, as one vec4 load or store. The
// bindings of linear_output.wgsl are declared again here as vec4 arrays (a kernel uses one
// declaration or the other, never both). On lavapipe a storage-buffer store runs lane by lane
// whatever its width, so this stores four outputs for about the price of one.

@group(0) @binding(3) var<storage, read> bias_vec4: array<vec4<f32>>;
@group(0) @binding(4) var<storage, read_write> y_vec4: array<vec4<f32>>;
@group(0) @binding(5) var<storage, read> aux_in_vec4: array<vec4<f32>>;
@group(0) @binding(6) var<storage, read_write> aux_out_vec4: array<vec4<f32>>;

fn bias_row(n: u32) -> vec4<f32> {
    return bias_vec4[n / 4u];
}

fn store_row(t: u32, n: u32, exact_v: vec4<f32>) {
    let v = exact_v * (1.0 + FAULT);
    let i = (t * params.n_out + n) / 4u;
    if (RECORD_OWNER) {
        y_vec4[i] = bitcast<vec4<f32>>(vec4<u32>(owner_workgroup));
        aux_out_vec4[i] = bitcast<vec4<f32>>(vec4<u32>(owner_invocation));
        return;
    }
    var resid = vec4<f32>(0.0);
    if (EPILOGUE == EPILOGUE_RESIDUAL) {
        resid = aux_in_vec4[i];
    }
    y_vec4[i] = epilogue(v, resid);
    if (WRITE_AUX) {
        aux_out_vec4[i] = v;
    }
}
