// An intervention on a hook's values, in place, before anything downstream reads them:
//
//   y[rows[i], cols[j]] = keep · y[rows[i], cols[j]] + scale · source[i · source_stride + cols[j] - col_base]
//
// for every selected row i (a token of the batch) and selected column j. The kinds are settings
// of keep, scale and source: zero ablation (0, 0), setting a value or the column means (0, 1, a
// row of values), scaling (f, 0), steering (1, s, the vector) and patching (0, 1, one row of the
// other run per selected token: source_stride = the hook's width).
//
// Layouts (row-major): y [n_tokens, row_width] f32, of which the hook is the columns
// col_base..col_base + width (q, k and v share the qkv rows); rows [n_rows] u32 (tokens of the
// batch); cols [n_cols] u32 (columns of y, col_base included); source f32, [width] when
// source_stride is 0, else [n_rows, width].
// Work split: one invocation per (selected row, selected column), row-major over i then j, 64 per
// workgroup, workgroups on the flat 2-D grid of grid_1d (index = wid.y * num_workgroups.x + wid.x).

struct Params {
    n_rows: u32,
    n_cols: u32,
    row_width: u32,
    col_base: u32,
    source_stride: u32,
    keep: f32,
    scale: f32,
    _pad: u32,
}

@group(0) @binding(0) var<uniform> params: Params;
@group(0) @binding(1) var<storage, read_write> y: array<f32>;
@group(0) @binding(2) var<storage, read> rows: array<u32>;
@group(0) @binding(3) var<storage, read> cols: array<u32>;
@group(0) @binding(4) var<storage, read> source: array<f32>;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wid: vec3<u32>,
        @builtin(num_workgroups) groups: vec3<u32>,
        @builtin(local_invocation_index) lane: u32) {
    let k = (wid.y * groups.x + wid.x) * 64u + lane;
    if (k >= params.n_rows * params.n_cols) {
        return;
    }
    let i = k / params.n_cols;
    let c = cols[k % params.n_cols];
    let at = rows[i] * params.row_width + c;
    let given = source[i * params.source_stride + c - params.col_base];
    // keep = 0 replaces the value outright (a NaN or inf in y does not survive a zero ablation).
    var kept = 0.0;
    if (params.keep != 0.0) {
        kept = params.keep * y[at];
    }
    y[at] = kept + params.scale * given;
}
