// bias_row and store_row for linear_cpu.wgsl with any n_out: four consecutive outputs n .. n + 3
// of one token at a time, through the scalar bindings and store_biased of linear_output.wgsl,
// skipping outputs past n_out. (linear_rows_vec4.wgsl does the same with one vec4 access when
// n_out is a multiple of 4.)

fn bias_row(n: u32) -> vec4<f32> {
    var b = vec4<f32>(0.0);
    for (var c = 0u; c < 4u; c = c + 1u) {
        if (n + c < params.n_out) {
            b[c] = bias[n + c];
        }
    }
    return b;
}

fn store_row(t: u32, n: u32, v: vec4<f32>) {
    for (var c = 0u; c < 4u; c = c + 1u) {
        if (n + c < params.n_out) {
            store_biased(t, n + c, v[c]);
        }
    }
}
