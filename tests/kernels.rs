//! Every kernel of every variant against the CPU reference (`neoprobe::reference`, f64
//! accumulation), on random shapes chosen by proptest and values drawn from a seeded RNG. Each
//! test runs once per variant, under the variant's name (`simple::`, `cpu::`, `tiled::`: the
//! `variant_tests!` at the end).
//!
//! Tolerances are relative to an error scale computed from each case's own inputs (how large the
//! f32 rounding of that computation can get), times a constant set a small factor above the
//! largest ratio measured over many cases. Each constant's comment gives the measured maximum and
//! a bug it still catches. Run with `--nocapture` to see the measured ratios of every case, and
//! with `PROPTEST_CASES=n` to run more cases. The bounds were measured on lavapipe and hold on
//! an NVIDIA H200 through Vulkan too (subgroups of 32), where 800 cases per property gave the
//! maxima linear 2.91 (simple), attention 0.49, layernorm 2.57, gelu_new 1.37.
//!
//! Every output buffer is filled with a sentinel NaN and followed by a guard region: an output
//! element left unwritten, or a write past the end, is a failure of its own.

mod common;

use common::{gpu, kernels};
use neoprobe::gpu::Recorder;
use neoprobe::kernels::{AttentionShape, Epilogue, GpuLayerNorm, GpuPositions, Kernels, Rows, Variant};
use neoprobe::model::Batch;
use neoprobe::reference;
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

// The bounds and error scales (their derivations and measurements: docs/fidelity.md) are the
// library's, shared with `neoprobe verify`.
use neoprobe::verify::bounds::{
    attention_scale, gelu_scale, layernorm_scale, linear_scale, ATTENTION_BOUND, EPS, GELU_BOUND,
    LAYERNORM_BOUND, LINEAR_BOUND,
};

/// Proptest settings: `cases` by default (kept small: every case runs on the GPU, which is a
/// software rasteriser on CI), `PROPTEST_CASES` overrides it.
fn config(cases: u32) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(cases);
    ProptestConfig {
        cases,
        max_shrink_iters: 200,
        // Failing cases are kept in tests/kernels.proptest-regressions and rerun first.
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource("proptest-regressions"))),
        ..ProptestConfig::default()
    }
}

// ---------------------------------------------------------------------------------------------
// Values and buffers

fn rng(seed: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed)
}

/// `n` draws of N(mean, sigma²) (Box–Muller, both values of each pair), rounded to f32.
fn normals(rng: &mut ChaCha8Rng, n: usize, mean: f64, sigma: f64) -> Vec<f32> {
    let mut values = Vec::with_capacity(n + 1);
    while values.len() < n {
        let u1: f64 = rng.random();
        let u2: f64 = rng.random();
        let r = (-2.0 * (1.0 - u1).ln()).sqrt();
        let (sin, cos) = (std::f64::consts::TAU * u2).sin_cos();
        values.push((mean + sigma * r * cos) as f32);
        values.push((mean + sigma * r * sin) as f32);
    }
    values.truncate(n);
    values
}

fn upload(label: &str, data: &[f32]) -> wgpu::Buffer {
    gpu().upload(label, bytemuck::cast_slice(data)).unwrap()
}

fn upload_u32(label: &str, data: &[u32]) -> wgpu::Buffer {
    gpu().upload(label, bytemuck::cast_slice(data)).unwrap()
}

/// A NaN no kernel computes: marks output elements not (yet) written.
const SENTINEL: f32 = f32::from_bits(0x7fc0_beef);
/// Elements after every output that a kernel must leave alone.
const GUARD: usize = 37;

/// An output buffer of `n` elements plus the guard, all sentinel.
fn output(label: &str, n: usize) -> wgpu::Buffer {
    upload(label, &vec![SENTINEL; n + GUARD])
}

/// The `n` outputs of `buffer`; an error if one was never written or the guard was touched.
fn read_output(buffer: &wgpu::Buffer, n: usize) -> Result<Vec<f32>, String> {
    let mut values = gpu().read(buffer, n + GUARD).unwrap();
    let guard = values.split_off(n);
    if let Some(i) = guard.iter().position(|g| g.to_bits() != SENTINEL.to_bits()) {
        return Err(format!(
            "wrote past the end of its {n}-element output: element {} = {}",
            n + i,
            guard[i]
        ));
    }
    if let Some(i) = values.iter().position(|v| v.to_bits() == SENTINEL.to_bits()) {
        return Err(format!("left output element {i} of {n} unwritten"));
    }
    Ok(values)
}

/// Compares `got` with `want` element by element: |got − want| ≤ `bound` · `scale(i)`.
/// Returns the largest |got − want| / scale(i) seen (what the bounds were chosen from); the error
/// names the worst element through `at(i)`. A non-finite `got` where `want` is finite fails.
fn check(
    got: &[f32],
    want: &[f32],
    bound: f64,
    scale: impl Fn(usize) -> f64,
    at: impl Fn(usize) -> String,
) -> Result<f64, String> {
    assert_eq!(got.len(), want.len());
    let mut worst = (0.0f64, 0usize);
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        if !g.is_finite() && w.is_finite() {
            return Err(format!("{} is {g}, reference {w}", at(i)));
        }
        let ratio = (g as f64 - w as f64).abs() / scale(i);
        if ratio > worst.0 || ratio.is_nan() {
            worst = (ratio, i);
        }
    }
    let (ratio, i) = worst;
    if ratio.is_nan() || ratio > bound {
        return Err(format!(
            "{}: got {:e}, reference {:e}: error {:.3e} = {ratio:.2} × its error scale {:.3e}, bound {bound}",
            at(i),
            got[i],
            want[i],
            (got[i] as f64 - want[i] as f64).abs(),
            scale(i),
        ));
    }
    Ok(ratio)
}

/// Runs `record` on a fresh recorder and waits for it.
fn run(record: impl FnOnce(&mut Recorder)) {
    let mut rec = Recorder::new(gpu(), false);
    record(&mut rec);
    rec.finish().unwrap();
}

/// A log-uniform draw between 10^lo and 10^hi, as a strategy.
fn log_uniform(lo: f64, hi: f64) -> impl Strategy<Value = f64> {
    (lo..hi).prop_map(|e| 10f64.powf(e))
}

// ---------------------------------------------------------------------------------------------
// linear

#[derive(Clone, Debug)]
struct LinearCase {
    n_tokens: usize,
    n_in: usize,
    n_out: usize,
    /// How many row blocks the weight is uploaded in (q, k and v are three).
    n_parts: usize,
    /// Blocks of equal size (as q, k, v) rather than cut at random rows (some possibly empty).
    equal_parts: bool,
    bias: bool,
    epilogue: EpilogueKind,
    seed: u64,
}

/// Which epilogue of shaders/linear_output.wgsl a case runs.
#[derive(Clone, Copy, Debug, PartialEq)]
enum EpilogueKind {
    Bias,
    Gelu,
    Residual,
}

fn linear_case() -> impl Strategy<Value = LinearCase> {
    let epilogue =
        prop_oneof![Just(EpilogueKind::Bias), Just(EpilogueKind::Gelu), Just(EpilogueKind::Residual)];
    (
        1usize..=70,
        1usize..=300,
        1usize..=300,
        1usize..=4,
        any::<bool>(),
        any::<bool>(),
        epilogue,
        any::<u64>(),
    )
        .prop_map(|(n_tokens, n_in, n_out, n_parts, equal_parts, bias, epilogue, seed)| LinearCase {
            n_tokens,
            n_in,
            n_out,
            n_parts,
            equal_parts,
            bias,
            epilogue,
            seed,
        })
}

/// Runs one linear case; returns its largest error ratio.
fn check_linear(variant: Variant, case: &LinearCase) -> Result<f64, String> {
    let LinearCase { n_tokens, n_in, n_out, n_parts, equal_parts, bias, epilogue, seed } = *case;
    let mut rng = rng(seed);
    let x = normals(&mut rng, n_tokens * n_in, 0.0, 1.0);
    let w = normals(&mut rng, n_out * n_in, 0.0, 1.0 / (n_in as f64).sqrt());
    let b = if bias { normals(&mut rng, n_out, 0.0, 1.0) } else { vec![0.0; n_out] };
    // Row blocks, in order: equal (the last takes the remainder) or cut at random rows.
    let mut cuts: Vec<usize> = if equal_parts {
        (1..n_parts).map(|p| p * n_out / n_parts).collect()
    } else {
        (1..n_parts).map(|_| rng.random_range(0..=n_out)).collect()
    };
    cuts.push(0);
    cuts.push(n_out);
    cuts.sort();
    let parts: Vec<&[u8]> =
        cuts.windows(2).map(|c| bytemuck::cast_slice(&w[c[0] * n_in..c[1] * n_in])).collect();

    let want = reference::linear(&x, &w, &b, n_in);
    let scale: Vec<f64> = (0..n_tokens * n_out)
        .map(|i| {
            let (t, n) = (i / n_out, i % n_out);
            linear_scale(&x[t * n_in..(t + 1) * n_in], &w[n * n_in..(n + 1) * n_in], b[n])
        })
        .collect();
    let k = kernels(variant);
    let fail = |e: String| format!("linear {variant} {case:?} (cuts {cuts:?}): {e}");
    let layer = k
        .upload_linear(gpu(), "w", &parts, bias.then(|| bytemuck::cast_slice(&b[..])), n_in)
        .map_err(|e| fail(format!("{e:#}")))?;
    if layer.n_out != n_out {
        return Err(fail(format!("upload_linear made {} outputs", layer.n_out)));
    }
    let x_buf = upload("x", &x);
    let scratch = k.scratch(gpu(), n_tokens, &[n_in]).unwrap();
    let resid = normals(&mut rng.clone(), n_tokens * n_out, 0.0, 1.0);
    let resid_buf = upload("resid", &resid);
    // Runs the case's epilogue into fresh outputs, with its optional output `v` written or
    // not: (y, aux_out).
    let linear = |write_aux: bool| {
        let (y, aux_out) = (output("y", n_tokens * n_out), output("aux out", n_tokens * n_out));
        let aux = write_aux.then_some(&aux_out);
        let epilogue = match epilogue {
            EpilogueKind::Bias => Epilogue::Bias,
            EpilogueKind::Gelu => Epilogue::Gelu { pre: aux },
            EpilogueKind::Residual => Epilogue::Residual { resid: &resid_buf, sublayer: aux },
        };
        run(|rec| {
            let rows = Rows { n_tokens, scratch: &scratch };
            k.linear(rec, &layer, &x_buf, &y, epilogue, rows).expect("linear pipeline")
        });
        (y, aux_out)
    };
    let (y, aux_out) = linear(true);
    let y_got = read_output(&y, n_tokens * n_out).map_err(fail)?;
    // The linear part v: y, or for the GELU and residual epilogues the v they store beside y.
    let linear_got = match epilogue {
        EpilogueKind::Bias => y_got.clone(),
        _ => read_output(&aux_out, n_tokens * n_out).map_err(fail)?,
    };
    let ratio = check(
        &linear_got,
        &want,
        LINEAR_BOUND,
        |i| scale[i],
        |i| format!("x·wᵀ + b [token {}, out {}]", i / n_out, i % n_out),
    )
    .map_err(fail)?;
    // The epilogue proper, on the GPU's own linear values.
    match epilogue {
        EpilogueKind::Bias => {}
        EpilogueKind::Gelu => {
            let want_y = reference::gelu_new(&linear_got);
            check(
                &y_got,
                &want_y,
                GELU_BOUND,
                |i| gelu_scale(linear_got[i]),
                |i| format!("gelu_new(v[{i}] = {:e})", linear_got[i]),
            )
            .map_err(fail)?;
        }
        EpilogueKind::Residual => {
            let want_sum = reference::add(&resid, &linear_got);
            if let Some(i) = (0..y_got.len()).find(|&i| y_got[i].to_bits() != want_sum[i].to_bits()) {
                return Err(fail(format!("resid + v [{i}] = {:e}, reference {:e}", y_got[i], want_sum[i])));
            }
        }
    }
    // Without its optional output (a pipeline of its own) the kernel writes the same y.
    if epilogue != EpilogueKind::Bias {
        let (y_alone, _) = linear(false);
        let y_alone = read_output(&y_alone, n_tokens * n_out).map_err(fail)?;
        if let Some(i) = (0..y_got.len()).find(|&i| y_alone[i].to_bits() != y_got[i].to_bits()) {
            return Err(fail(format!(
                "y[{i}] = {:e} without the optional output, {:e} with it",
                y_alone[i], y_got[i]
            )));
        }
    }
    println!("measure linear {variant} {n_tokens}×{n_in}→{n_out}: ratio {ratio:.3}");
    Ok(ratio)
}

/// The model's own linear shapes over 37 tokens (GPT-Neo-125M: hidden 768, MLP 3072).
fn linear_matches_reference_at_model_shapes(variant: Variant) {
    let cases = [
        // q, k, v stacked, no bias.
        LinearCase {
            n_tokens: 37,
            n_in: 768,
            n_out: 2304,
            n_parts: 3,
            equal_parts: true,
            bias: false,
            epilogue: EpilogueKind::Bias,
            seed: 1,
        },
        // c_fc, out_proj, c_proj.
        LinearCase {
            n_tokens: 37,
            n_in: 768,
            n_out: 3072,
            n_parts: 1,
            equal_parts: true,
            bias: true,
            epilogue: EpilogueKind::Gelu,
            seed: 2,
        },
        LinearCase {
            n_tokens: 37,
            n_in: 768,
            n_out: 768,
            n_parts: 1,
            equal_parts: true,
            bias: true,
            epilogue: EpilogueKind::Residual,
            seed: 3,
        },
        LinearCase {
            n_tokens: 37,
            n_in: 3072,
            n_out: 768,
            n_parts: 1,
            equal_parts: true,
            bias: true,
            epilogue: EpilogueKind::Residual,
            seed: 4,
        },
    ];
    for case in &cases {
        check_linear(variant, case).unwrap_or_else(|e| panic!("{e}"));
    }
}

/// Inputs wider than 4096 (GPT-Neo 1.3B's c_proj takes 8192): the `cpu` variant's lane-packed
/// weights continue such rows on further texture rows (shaders/rows_to_texture.wgsl), which the
/// random cases, at most 300 wide, never reach. One case stores vec4s (36 outputs), one scalars
/// (37, the last row group partial).
fn linear_matches_reference_past_one_packed_chunk(variant: Variant) {
    let cases = [(17, 8192, 36, EpilogueKind::Gelu, 5), (3, 4099, 37, EpilogueKind::Residual, 6)];
    for (n_tokens, n_in, n_out, epilogue, seed) in cases {
        let case =
            LinearCase { n_tokens, n_in, n_out, n_parts: 1, equal_parts: true, bias: true, epilogue, seed };
        check_linear(variant, &case).unwrap_or_else(|e| panic!("{e}"));
    }
}

/// The `cpu` variant's linear kernel runs 32-token tiles for inputs up to 1024 wide and 16-token
/// tiles, workgroups advancing along the outputs, for wider ones (`CpuTile` in
/// src/kernels/linear.rs): both sides of that line, with 33 tokens (a last tile of one token
/// either way) and 36 or 37 outputs (vec4 and scalar stores).
fn linear_matches_reference_on_both_sides_of_the_cpu_tile_change(variant: Variant) {
    let cases = [(33, 1024, 36, EpilogueKind::Residual, 7), (33, 1025, 37, EpilogueKind::Gelu, 8)];
    for (n_tokens, n_in, n_out, epilogue, seed) in cases {
        let case =
            LinearCase { n_tokens, n_in, n_out, n_parts: 2, equal_parts: false, bias: true, epilogue, seed };
        check_linear(variant, &case).unwrap_or_else(|e| panic!("{e}"));
    }
}

/// The geometry the variant table states (`LinearSplit::owner`: which workgroup and invocation
/// store each output) is the kernel's own: with RECORD_OWNER the kernel writes, for every output,
/// the ids of the invocation that stored it. Shapes that are multiples of no tile size, on both
/// sides of the `cpu` tile change, and one whose grid folds past 65 535 workgroups for `simple`.
fn linear_owners_match_the_table(variant: Variant) {
    let split = variant.spec().linear_split;
    for (n_tokens, n_in, n_out) in
        [(37, 45, 71), (70, 1025, 37), (3, 5, 130), (33, 1024, 36), (1100, 3, 3001)]
    {
        let k = kernels(variant);
        let w = normals(&mut rng(31), n_out * n_in, 0.0, 1.0);
        let layer = k.upload_linear(gpu(), "w", &[bytemuck::cast_slice(&w)], None, n_in).unwrap();
        let x_buf = upload("x", &normals(&mut rng(32), n_tokens * n_in, 0.0, 1.0));
        let scratch = k.scratch(gpu(), n_tokens, &[n_in]).unwrap();
        let n = n_tokens * n_out;
        let (workgroups, invocations) = (output("workgroups", n), output("invocations", n));
        run(|rec| {
            let rows = Rows { n_tokens, scratch: &scratch };
            k.linear_owners(rec, &layer, &x_buf, &workgroups, &invocations, rows).expect("linear pipeline")
        });
        let fail = |e: String| panic!("{variant} {n_tokens}×{n_in}→{n_out}: {e}");
        let workgroups = read_output(&workgroups, n).unwrap_or_else(fail);
        let invocations = read_output(&invocations, n).unwrap_or_else(fail);
        for i in 0..n {
            let (t, out) = (i / n_out, i % n_out);
            let owner = split.owner(t, out, n_tokens, n_in, n_out);
            let (wg, inv) = (workgroups[i].to_bits(), invocations[i].to_bits());
            let recorded = ([wg % 65536, wg / 65536], inv);
            assert_eq!(
                recorded,
                (owner.workgroup, owner.invocation),
                "{variant} {n_tokens}×{n_in}→{n_out}: output (token {t}, neuron {out}) was stored by \
                 workgroup {:?} invocation {inv}; the table says {owner:?}",
                recorded.0
            );
        }
    }
}

/// Replaying the kernel's k order (`KOrder::replay`) in f32 gives the kernel's own output bit
/// for bit on a CPU driver, which does not contract multiply-adds. A GPU driver may contract
/// some or all of them: there the output is one of the two replays or within the linear bound
/// of the unfused one.
fn linear_replay_matches_the_kernel(variant: Variant) {
    let order = variant.spec().linear_split.k_order();
    let cpu_driver = gpu().info.device_type == wgpu::DeviceType::Cpu;
    for (n_tokens, n_in, n_out) in [(5, 768, 67), (3, 3072, 40), (2, 131, 9)] {
        let k = kernels(variant);
        let x = normals(&mut rng(41), n_tokens * n_in, 0.0, 1.0);
        let w = normals(&mut rng(42), n_out * n_in, 0.0, 0.05);
        let b = normals(&mut rng(43), n_out, 0.0, 0.1);
        let layer = k
            .upload_linear(gpu(), "w", &[bytemuck::cast_slice(&w)], Some(bytemuck::cast_slice(&b)), n_in)
            .unwrap();
        let x_buf = upload("x", &x);
        let scratch = k.scratch(gpu(), n_tokens, &[n_in]).unwrap();
        let y = output("y", n_tokens * n_out);
        run(|rec| {
            let rows = Rows { n_tokens, scratch: &scratch };
            k.linear(rec, &layer, &x_buf, &y, Epilogue::Bias, rows).expect("linear pipeline")
        });
        let got = read_output(&y, n_tokens * n_out).unwrap();
        for (i, got) in got.iter().enumerate() {
            let (t, n) = (i / n_out, i % n_out);
            let (x_row, w_row) = (&x[t * n_in..(t + 1) * n_in], &w[n * n_in..(n + 1) * n_in]);
            let what = format!("{variant} {n_tokens}×{n_in}→{n_out} (token {t}, neuron {n})");
            let (unfused, fused) =
                (order.replay(x_row, w_row, b[n], false), order.replay(x_row, w_row, b[n], true));
            if cpu_driver {
                assert_eq!(got.to_bits(), unfused.to_bits(), "{what}: kernel {got:e}, replay {unfused:e}");
            } else if got.to_bits() != unfused.to_bits() && got.to_bits() != fused.to_bits() {
                let scale: f64 = x_row.iter().zip(w_row).map(|(&a, &c)| (a as f64 * c as f64).abs()).sum();
                let error = (*got as f64 - unfused as f64).abs();
                assert!(
                    error <= LINEAR_BOUND * EPS * scale,
                    "{what}: kernel {got:e}, replays {unfused:e} / {fused:e}"
                );
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// attention

/// How long a local layer's window is, relative to the case's longest sequence.
#[derive(Clone, Copy, Debug)]
enum WindowKind {
    Global,
    One,
    /// 1 + ⌊u·(longest + 1)⌋: anywhere from 1 to longest + 1.
    Fraction(f64),
    /// longest + 1 + extra: longer than every sequence.
    Beyond(usize),
    /// Exactly this many keys.
    Exactly(usize),
}

impl WindowKind {
    fn resolve(self, longest: usize) -> Option<usize> {
        match self {
            WindowKind::Global => None,
            WindowKind::One => Some(1),
            WindowKind::Fraction(u) => Some(1 + (u * (longest + 1) as f64) as usize),
            WindowKind::Beyond(extra) => Some(longest + 1 + extra),
            WindowKind::Exactly(window) => Some(window),
        }
    }
}

#[derive(Clone, Debug)]
struct AttentionCase {
    n_heads: usize,
    head_dim: usize,
    lengths: Vec<usize>,
    window: WindowKind,
    /// Standard deviation of the scores q·k (how peaked the softmax is).
    score_std: f64,
    seed: u64,
}

/// The most tokens of an attention case (its cost is quadratic in a sequence's length).
const MAX_ATTENTION_TOKENS: usize = 600;

fn attention_case() -> impl Strategy<Value = AttentionCase> {
    let length = prop_oneof![6 => 1usize..=40, 3 => 1usize..=160, 1 => 1usize..=MAX_ATTENTION_TOKENS];
    let lengths = prop::collection::vec(length, 1..=5).prop_map(|lengths| {
        // At most MAX_ATTENTION_TOKENS in all: the last sequence that does not fit is cut short.
        let mut total = 0;
        let mut kept = Vec::new();
        for len in lengths {
            let len = len.min(MAX_ATTENTION_TOKENS - total);
            if len == 0 {
                break;
            }
            total += len;
            kept.push(len);
        }
        kept
    });
    let head_dim = prop_oneof![Just(64usize), Just(128), (1usize..=32).prop_map(|d4| 4 * d4)];
    let window = prop_oneof![
        2 => Just(WindowKind::Global),
        1 => Just(WindowKind::One),
        3 => (0.0..1.0).prop_map(WindowKind::Fraction),
        1 => (0usize..=5).prop_map(WindowKind::Beyond),
    ];
    let score_std = prop_oneof![Just(0.1), Just(1.0), Just(4.0), Just(30.0)];
    (1usize..=4, head_dim, lengths, window, score_std, any::<u64>()).prop_map(
        |(n_heads, head_dim, lengths, window, score_std, seed)| AttentionCase {
            n_heads,
            head_dim,
            lengths,
            window,
            score_std,
            seed,
        },
    )
}

/// Packs sequences of these lengths (token ids do not matter to attention).
fn pack(lengths: &[usize]) -> Batch {
    let sequences: Vec<Vec<u32>> = lengths.iter().map(|&n| vec![0; n]).collect();
    Batch::pack(&sequences, lengths.iter().copied().max().unwrap_or(1)).unwrap()
}

/// The attention kernel of `variant` on `qkv`; z `[n_tokens, width]`.
fn gpu_attention(
    k: &Kernels,
    qkv: &[f32],
    seq_start: &[u32],
    shape: AttentionShape,
) -> Result<Vec<f32>, String> {
    let width = shape.n_heads * shape.head_dim;
    let qkv_buf = upload("qkv", qkv);
    let starts = upload_u32("seq_start", seq_start);
    let z = output("z", shape.n_tokens * width);
    let scratch = k.scratch(gpu(), shape.n_tokens, &[3 * width]).unwrap();
    run(|rec| k.attention(rec, &qkv_buf, &starts, &z, shape, &scratch).expect("attention pipeline"));
    read_output(&z, shape.n_tokens * width)
}

/// q, k, v rows `[n_tokens, 3·width]`: q and k with N(0, σ²) entries, σ² = score_std / √head_dim,
/// so that q·k has standard deviation score_std; v N(0, 1).
fn qkv_values(
    rng: &mut ChaCha8Rng,
    n_tokens: usize,
    width: usize,
    head_dim: usize,
    score_std: f64,
) -> Vec<f32> {
    let sigma = (score_std / (head_dim as f64).sqrt()).sqrt();
    (0..n_tokens)
        .flat_map(|_| {
            let mut row = normals(rng, 2 * width, 0.0, sigma);
            row.extend(normals(rng, width, 0.0, 1.0));
            row
        })
        .collect()
}

fn check_attention(variant: Variant, case: &AttentionCase) -> Result<f64, String> {
    let AttentionCase { n_heads, head_dim, ref lengths, window, score_std, seed } = *case;
    let batch = pack(lengths);
    let n_tokens = batch.n_tokens();
    let width = n_heads * head_dim;
    let window = window.resolve(lengths.iter().copied().max().unwrap());
    let shape = AttentionShape { n_tokens, n_heads, head_dim, window };
    let qkv = qkv_values(&mut rng(seed), n_tokens, width, head_dim, score_std);
    let want = reference::attention(&qkv, &batch.seq_start, n_heads, head_dim, window);

    // Error scale per (query, head), from the keys the query sees.
    let row = |t: usize| &qkv[t * 3 * width..(t + 1) * 3 * width];
    let mut head_scale = vec![0.0f64; n_tokens * n_heads];
    for t in 0..n_tokens {
        let mut first = batch.seq_start[t] as usize;
        if let Some(w) = window {
            first = first.max((t + 1).saturating_sub(w));
        }
        for h in 0..n_heads {
            let cols = h * head_dim..(h + 1) * head_dim;
            let keys: Vec<&[f32]> =
                (first..=t).map(|j| &row(j)[width + cols.start..width + cols.end]).collect();
            let values: Vec<&[f32]> =
                (first..=t).map(|j| &row(j)[2 * width + cols.start..2 * width + cols.end]).collect();
            head_scale[t * n_heads + h] = attention_scale(&row(t)[cols.clone()], &keys, &values);
        }
    }
    let fail = |e: String| format!("attention {variant} {shape:?} lengths {lengths:?} ({case:?}): {e}");
    let got = gpu_attention(kernels(variant), &qkv, &batch.seq_start, shape).map_err(fail)?;
    let ratio = check(
        &got,
        &want,
        ATTENTION_BOUND,
        |i| head_scale[i / head_dim],
        |i| format!("z[token {}, head {}, dim {}]", i / width, i % width / head_dim, i % head_dim),
    )
    .map_err(fail)?;
    println!(
        "measure attention {variant} heads {n_heads} dim {head_dim} lengths {lengths:?} window {window:?} \
         score_std {score_std}: ratio {ratio:.3}"
    );
    Ok(ratio)
}

/// GPT-Neo-125M's attention shape (12 heads of 64) with its local window 256, on a sequence
/// longer than the window packed with short ones; and one wide head over 600 tokens.
fn attention_matches_reference_at_model_shapes(variant: Variant) {
    let cases = [
        AttentionCase {
            n_heads: 12,
            head_dim: 64,
            lengths: vec![300, 1, 2],
            window: WindowKind::Exactly(256),
            score_std: 4.0,
            seed: 5,
        },
        AttentionCase {
            n_heads: 1,
            head_dim: 128,
            lengths: vec![MAX_ATTENTION_TOKENS],
            window: WindowKind::Global,
            score_std: 1.0,
            seed: 6,
        },
    ];
    for case in &cases {
        check_attention(variant, case).unwrap_or_else(|e| panic!("{e}"));
    }
}

/// Scores rising steeply along the sequence: every key raises the running maximum (the online
/// softmax rescales at every step), or fall: the spread of scores overflows exp unless the
/// maximum is subtracted first (scores span ±110; e^89 is past f32).
fn attention_survives_scores_that_rise_at_every_key(variant: Variant) {
    let (n_heads, head_dim, n_tokens) = (2, 8, 90);
    let width = n_heads * head_dim;
    let mut rng = rng(7);
    let mut qkv = vec![0.0f32; n_tokens * 3 * width];
    for t in 0..n_tokens {
        for c in 0..width {
            let r = &mut qkv[t * 3 * width..(t + 1) * 3 * width];
            r[c] = 1.0; // q: all ones, so q·k_j = head_dim · k_j
                        // Head 0 rises by 2.5 per key (the newest key dominates), head 1 falls.
            let slope = if c < head_dim { 2.5 } else { -2.5 };
            r[width + c] = slope * (t as f32 - 45.0) / head_dim as f32;
        }
    }
    let v = normals(&mut rng, n_tokens * width, 0.0, 1.0);
    let v_max = v.iter().fold(0.0f64, |m, &x| m.max((x as f64).abs()));
    for t in 0..n_tokens {
        qkv[t * 3 * width + 2 * width..(t + 1) * 3 * width].copy_from_slice(&v[t * width..(t + 1) * width]);
    }
    for window in [None, Some(5)] {
        let starts = vec![0u32; n_tokens];
        let want = reference::attention(&qkv, &starts, n_heads, head_dim, window);
        let shape = AttentionShape { n_tokens, n_heads, head_dim, window };
        let got = gpu_attention(kernels(variant), &qkv, &starts, shape)
            .unwrap_or_else(|e| panic!("{variant} {shape:?}: {e}"));
        // Scores are exact small integers times 2.5 (exact in f32), so only exp and the sums
        // round: the same scale as the random cases with S = 0.
        let ratio = check(
            &got,
            &want,
            ATTENTION_BOUND,
            |_| EPS * v_max * (1.0 + (n_tokens as f64).sqrt()),
            |i| format!("z[token {}, column {}]", i / width, i % width),
        )
        .unwrap_or_else(|e| panic!("{variant} {shape:?}: {e}"));
        println!("measure attention-rise {variant} window {window:?}: ratio {ratio:.3}");
    }
}

/// Changing every q, k and v of the sequences before and after sequence B leaves B's output
/// bit for bit as it was: attention never crosses a sequence boundary, in either direction, even
/// with a window longer than every sequence.
fn attention_never_crosses_a_sequence_boundary(variant: Variant) {
    let (n_heads, head_dim) = (3, 16);
    let width = n_heads * head_dim;
    let lengths = [23, 17, 30];
    let batch = pack(&lengths);
    let n_tokens = batch.n_tokens();
    let b_rows = batch.sequence(1);
    let mut rng = rng(8);
    let before = qkv_values(&mut rng, n_tokens, width, head_dim, 1.0);
    let mut after = qkv_values(&mut rng, n_tokens, width, head_dim, 1.0);
    after[b_rows.start * 3 * width..b_rows.end * 3 * width]
        .copy_from_slice(&before[b_rows.start * 3 * width..b_rows.end * 3 * width]);
    for window in [None, Some(17), Some(100)] {
        let shape = AttentionShape { n_tokens, n_heads, head_dim, window };
        let k = kernels(variant);
        let z_before = gpu_attention(k, &before, &batch.seq_start, shape).unwrap();
        let z_after = gpu_attention(k, &after, &batch.seq_start, shape).unwrap();
        let b_cols = b_rows.start * width..b_rows.end * width;
        assert!(
            z_before[b_cols.clone()].iter().zip(&z_after[b_cols]).all(|(x, y)| x.to_bits() == y.to_bits()),
            "{variant} {shape:?}: sequence B (tokens {b_rows:?}) changed when only sequences A and C did"
        );
        // The other sequences' outputs did change: the test can see a change at all.
        assert_ne!(z_before[..b_rows.start * width], z_after[..b_rows.start * width]);
        assert_ne!(z_before[b_rows.end * width..], z_after[b_rows.end * width..]);
    }
}

// ---------------------------------------------------------------------------------------------
// layernorm

#[derive(Clone, Debug)]
struct LayernormCase {
    n_rows: usize,
    width: usize,
    eps: f32,
    /// Common offset of every value (+1000 makes a one-pass variance visible).
    offset: f64,
    /// Spread of the values about the offset.
    sigma: f64,
    /// Every row a single repeated value (variance 0: the output is β plus rounding / √eps).
    constant_rows: bool,
    seed: u64,
}

fn layernorm_case() -> impl Strategy<Value = LayernormCase> {
    let width = prop_oneof![
        1 => prop::sample::select(vec![1usize, 3, 63, 64, 65, 768]),
        3 => 1usize..=1000,
    ];
    let offset = prop_oneof![Just(0.0), Just(1000.0), Just(-1000.0), -2000.0..2000.0];
    (
        1usize..=50,
        width,
        log_uniform(-12.0, -1.0),
        offset,
        log_uniform(-2.0, 1.0),
        prop::bool::weighted(0.1),
        any::<u64>(),
    )
        .prop_map(|(n_rows, width, eps, offset, sigma, constant_rows, seed)| LayernormCase {
            n_rows,
            width,
            eps: eps as f32,
            offset,
            sigma,
            constant_rows,
            seed,
        })
}

fn check_layernorm(variant: Variant, case: &LayernormCase) -> Result<f64, String> {
    let LayernormCase { n_rows, width, eps, offset, sigma, constant_rows, seed } = *case;
    let mut rng = rng(seed);
    let x: Vec<f32> = if constant_rows {
        normals(&mut rng, n_rows, offset, sigma).iter().flat_map(|&v| vec![v; width]).collect()
    } else {
        normals(&mut rng, n_rows * width, offset, sigma)
    };
    let gamma = normals(&mut rng, width, 1.0, 0.5);
    let beta = normals(&mut rng, width, 0.0, 1.0);
    let want = reference::layernorm(&x, &gamma, &beta, eps);
    let scale = |i: usize| {
        let (row, c) = (i / width, i % width);
        layernorm_scale(&x[row * width..(row + 1) * width], gamma[c], beta[c], eps)
    };
    let fail = |e: String| format!("layernorm {variant} {case:?}: {e}");
    let k = kernels(variant);
    let x_buf = upload("x", &x);
    let ln =
        GpuLayerNorm::upload(gpu(), "ln", bytemuck::cast_slice(&gamma), bytemuck::cast_slice(&beta), eps)
            .unwrap();
    let y = output("y", n_rows * width);
    // `cpu` reads x as texels where the width is a multiple of 4 (the folded-grid case below,
    // 3 wide, has more rows than a texture may).
    let texel_widths: &[usize] = if width % 4 == 0 { &[width] } else { &[] };
    let scratch = k.scratch(gpu(), n_rows, texel_widths).unwrap();
    run(|rec| k.layernorm(rec, &ln, &x_buf, &y, Rows { n_tokens: n_rows, scratch: &scratch }));
    let got = read_output(&y, n_rows * width).map_err(fail)?;
    let ratio =
        check(&got, &want, LAYERNORM_BOUND, scale, |i| format!("y[row {}, column {}]", i / width, i % width))
            .map_err(fail)?;
    println!(
        "measure layernorm {variant} {n_rows}×{width} offset {offset:.0} sigma {sigma:.3}: ratio {ratio:.3}"
    );
    Ok(ratio)
}

// ---------------------------------------------------------------------------------------------
// gelu_new

/// A 1-wide linear layer with weight 1 and no bias, so v = x exactly, then the GELU epilogue:
/// (v as the GPU stored it, gelu_new(v)).
fn gpu_gelu(k: &Kernels, x: &[f32]) -> Result<(Vec<f32>, Vec<f32>), String> {
    let layer = k
        .upload_linear(gpu(), "one", &[bytemuck::bytes_of(&1.0f32)], None, 1)
        .map_err(|e| format!("{e:#}"))?;
    let x_buf = upload("x", x);
    let (y, pre) = (output("y", x.len()), output("pre", x.len()));
    let scratch = k.scratch(gpu(), x.len(), &[1]).unwrap();
    run(|rec| {
        let rows = Rows { n_tokens: x.len(), scratch: &scratch };
        k.linear(rec, &layer, &x_buf, &y, Epilogue::Gelu { pre: Some(&pre) }, rows).expect("linear pipeline")
    });
    Ok((read_output(&pre, x.len())?, read_output(&y, x.len())?))
}

fn check_gelu(variant: Variant, x: &[f32], what: &str) -> Result<f64, String> {
    let fail = |e: String| format!("gelu_new {variant} {what}: {e}");
    let (pre, got) = gpu_gelu(kernels(variant), x).map_err(fail)?;
    // v = x · 1 + 0 is exact, up to a driver flushing subnormal inputs to zero.
    if let Some(i) = (0..x.len()).find(|&i| pre[i] != x[i] && x[i].is_normal()) {
        return Err(fail(format!("v[{i}] = {:e}, not x = {:e}", pre[i], x[i])));
    }
    let want = reference::gelu_new(&pre);
    let ratio =
        check(&got, &want, GELU_BOUND, |i| gelu_scale(x[i]), |i| format!("gelu_new(x[{i}] = {:e})", x[i]))
            .map_err(fail)?;
    println!("measure gelu_new {variant} {what}: ratio {ratio:.3}");
    Ok(ratio)
}

fn gelu_new_is_finite_and_exact_at_extremes(variant: Variant) {
    let tiny = f32::from_bits(1); // the smallest subnormal
    let x = [
        1e4f32,
        -1e4,
        1e30,
        -1e30,
        3.4e38,
        -3.4e38,
        f32::MAX,
        -f32::MAX,
        0.0,
        -0.0,
        tiny,
        -tiny,
        f32::MIN_POSITIVE / 3.0,
        -f32::MIN_POSITIVE / 3.0,
        f32::MIN_POSITIVE,
        10.0,
        -10.0,
        20.0,
        -20.0,
        1e-20,
        -1e-20,
    ];
    check_gelu(variant, &x, "fixed extremes").unwrap_or_else(|e| panic!("{e}"));
    let (_, y) = gpu_gelu(kernels(variant), &x).unwrap();
    for (&x, &y) in x.iter().zip(&y) {
        assert!(y.is_finite(), "{variant}: gelu_new({x:e}) = {y}");
    }
    // Past the clamp tanh is exactly ±1: large positive x passes through, large negative
    // gives zero (of either sign).
    for i in 0..8 {
        let expected = if x[i] > 0.0 { x[i] } else { 0.0 };
        assert_eq!(y[i], expected, "{variant}: gelu_new({:e}) = {:e}", x[i], y[i]);
    }
    assert_eq!(y[8], 0.0, "{variant}: gelu_new(0)");
    assert_eq!(y[9], 0.0, "{variant}: gelu_new(-0)");
}

// ---------------------------------------------------------------------------------------------
// embed and add: one f32 addition per element, correctly rounded on both sides: exact.

#[derive(Clone, Debug)]
struct EmbedCase {
    lengths: Vec<usize>,
    width: usize,
    /// Rows of wpe beyond the longest sequence (positions never reach them).
    spare_positions: usize,
    seed: u64,
}

fn embed_case() -> impl Strategy<Value = EmbedCase> {
    let width = prop_oneof![1 => Just(768usize), 4 => 1usize..=300];
    (prop::collection::vec(1usize..=40, 1..=6), width, 0usize..=10, any::<u64>()).prop_map(
        |(lengths, width, spare_positions, seed)| EmbedCase { lengths, width, spare_positions, seed },
    )
}

/// Embeds `batch` on every variant; exact equality with the reference. Catches positions that do
/// not restart per sequence (the packed token index used as the wpe row), a wrong row stride.
fn check_embed(
    variant: Variant,
    batch: &Batch,
    width: usize,
    n_positions: usize,
    seed: u64,
    what: &str,
) -> Result<(), String> {
    let n_tokens = batch.n_tokens();
    let mut rng = rng(seed);
    let token_rows = normals(&mut rng, n_tokens * width, 0.0, 1.0);
    let wpe = normals(&mut rng, n_positions * width, 0.0, 1.0);
    let want = reference::embed(&token_rows, &wpe, &batch.positions, width);
    let k = kernels(variant);
    let (rows, positions) = (upload("token_rows", &token_rows), upload_u32("positions", &batch.positions));
    let table = GpuPositions::upload(gpu(), "wpe", bytemuck::cast_slice(&wpe), width).unwrap();
    let hidden = output("hidden", n_tokens * width);
    run(|rec| k.embed(rec, &table, &rows, &positions, &hidden, n_tokens));
    let got = read_output(&hidden, n_tokens * width).map_err(|e| format!("embed {variant} {what}: {e}"))?;
    if let Some(i) = (0..got.len()).find(|&i| got[i].to_bits() != want[i].to_bits()) {
        let t = i / width;
        return Err(format!(
            "embed {variant} {what}: hidden[token {t} (position {}), column {}] = {:e}, reference {:e}",
            batch.positions[t],
            i % width,
            got[i],
            want[i]
        ));
    }
    Ok(())
}

fn check_embed_case(variant: Variant, case: &EmbedCase) -> Result<(), String> {
    let longest = case.lengths.iter().copied().max().unwrap();
    let n_positions = longest + case.spare_positions;
    let sequences: Vec<Vec<u32>> = case.lengths.iter().map(|&n| vec![0; n]).collect();
    let batch = Batch::pack(&sequences, n_positions).unwrap();
    check_embed(variant, &batch, case.width, n_positions, case.seed, &format!("{case:?}"))
}

fn check_add(variant: Variant, n: usize, seed: u64) -> Result<(), String> {
    let mut rng = rng(seed);
    let a = normals(&mut rng, n, 0.0, 1.0);
    let b = normals(&mut rng, n, 0.0, 1.0);
    let want = reference::add(&a, &b);
    // A 1-wide linear layer with weight 1 and no bias (v = a exactly), then the residual
    // epilogue: sum = b + v.
    let k = kernels(variant);
    let layer = k.upload_linear(gpu(), "one", &[bytemuck::bytes_of(&1.0f32)], None, 1).unwrap();
    let (a_buf, b_buf) = (upload("a", &a), upload("b", &b));
    let sum = output("sum", n);
    let scratch = k.scratch(gpu(), n, &[1]).unwrap();
    run(|rec| {
        let residual = Epilogue::Residual { resid: &b_buf, sublayer: None };
        k.linear(rec, &layer, &a_buf, &sum, residual, Rows { n_tokens: n, scratch: &scratch })
            .expect("linear pipeline")
    });
    let got = read_output(&sum, n).map_err(|e| format!("add {variant} n {n}: {e}"))?;
    if let Some(i) = (0..n).find(|&i| got[i].to_bits() != want[i].to_bits()) {
        return Err(format!("add {variant} n {n}: sum[{i}] = {:e}, reference {:e}", got[i], want[i]));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Past 65 535 workgroups: grid_1d folds the workgroups into a 2-D grid, and every kernel must
// rebuild its flat index as wid.y · num_workgroups.x + wid.x and ignore the overhanging last row.
// Not attention: folding needs over 64 · 65 535 (query, head) items, a qkv of at least 201 MB,
// past lavapipe's 128 MiB storage binding.

/// Workgroups per grid dimension (WebGPU's default limit, where grid_1d folds).
const MAX_GROUPS: usize = 65_535;

fn kernels_cover_grids_folded_past_65535_workgroups(variant: Variant) {
    // embed: 256 elements per workgroup, over sequences of 2048 positions (GPT-Neo's).
    let width = 1000;
    let lengths = [2048, 2048, 2048, 2048, 2048, 2048, 2048, 2048, 416];
    let sequences: Vec<Vec<u32>> = lengths.iter().map(|&n| vec![0; n]).collect();
    let batch = Batch::pack(&sequences, 2048).unwrap();
    assert!(batch.n_tokens() * width > MAX_GROUPS * 256);
    check_embed(variant, &batch, width, 2048, 11, &format!("lengths {lengths:?} width {width}"))
        .unwrap_or_else(|e| panic!("{e}"));
    // layernorm: one workgroup per row.
    let case = LayernormCase {
        n_rows: MAX_GROUPS + 70,
        width: 3,
        eps: 1e-5,
        offset: 1000.0,
        sigma: 1.0,
        constant_rows: false,
        seed: 12,
    };
    check_layernorm(variant, &case).unwrap_or_else(|e| panic!("{e}"));
    // linear (simple): ⌈n_out / 64⌉ workgroups per token.
    let case = LinearCase {
        n_tokens: 600,
        n_in: 3,
        n_out: 7000,
        n_parts: 3,
        equal_parts: false,
        bias: true,
        epilogue: EpilogueKind::Gelu,
        seed: 13,
    };
    assert!(case.n_out.div_ceil(64) * case.n_tokens > MAX_GROUPS);
    check_linear(variant, &case).unwrap_or_else(|e| panic!("{e}"));
}

// ---------------------------------------------------------------------------------------------
// A recording submitted in parts (as a forward does every few blocks): each part must see the
// results of the parts before it, and every dispatch its own parameters, also past the first
// uniform buffer of parameter slots.

fn recordings_submitted_in_parts_keep_order_and_parameters(variant: Variant) {
    let (n, steps) = (97, 300);
    let mut rng = rng(21);
    let a = normals(&mut rng, n, 0.0, 1.0);
    let b = normals(&mut rng, n, 0.0, 1.0);
    // Step i adds a to the first n − i mod 3 elements of one buffer into the other (the
    // residual epilogue of a 1-wide linear layer with weight 1), so a dispatch given another
    // step's parameters covers the wrong elements.
    let mut want = [b.clone(), vec![SENTINEL; n]];
    for i in 0..steps {
        let (from, to) = (i % 2, (i + 1) % 2);
        for e in 0..n - i % 3 {
            want[to][e] = want[from][e] + a[e];
        }
    }
    let k = kernels(variant);
    let layer = k.upload_linear(gpu(), "one", &[bytemuck::bytes_of(&1.0f32)], None, 1).unwrap();
    let a_buf = upload("a", &a);
    let sums = [upload("sum 0", &b), output("sum 1", n)];
    let scratch = k.scratch(gpu(), n, &[1]).unwrap();
    let mut rec = Recorder::new(gpu(), false);
    for i in 0..steps {
        let residual = Epilogue::Residual { resid: &sums[i % 2], sublayer: None };
        let rows = Rows { n_tokens: n - i % 3, scratch: &scratch };
        k.linear(&mut rec, &layer, &a_buf, &sums[(i + 1) % 2], residual, rows).unwrap();
        if i % 7 == 6 {
            rec.submit_so_far();
        }
    }
    rec.finish().unwrap();
    for (buffer, want) in sums.iter().zip(&want) {
        let got = gpu().read(buffer, n).unwrap();
        if let Some(e) = (0..n).find(|&e| got[e].to_bits() != want[e].to_bits()) {
            panic!("{variant}: element {e} is {:e}, expected {:e}", got[e], want[e]);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The tests, once per variant, each under the variant's name: `cargo test --test kernels cpu::`
// runs one variant alone.

macro_rules! variant_tests {
    ($($name:ident => $variant:expr),+ $(,)?) => {$(
        mod $name {
            use super::*;

            const VARIANT: Variant = $variant;

            proptest! {
                #![proptest_config(config(24))]

                #[test]
                fn linear_matches_reference(case in linear_case()) {
                    check_linear(VARIANT, &case).map_err(TestCaseError::fail)?;
                }

                #[test]
                fn layernorm_matches_reference(case in layernorm_case()) {
                    check_layernorm(VARIANT, &case).map_err(TestCaseError::fail)?;
                }

                /// Values N(0, σ²) with σ from 10⁻³ to 10³, across the tanh's whole range.
                #[test]
                fn gelu_new_matches_reference(
                    n in 1usize..=5000,
                    sigma in log_uniform(-3.0, 3.0),
                    seed in any::<u64>(),
                ) {
                    let x = normals(&mut rng(seed), n, 0.0, sigma);
                    let what = format!("n {n} sigma {sigma:.3e} seed {seed}");
                    check_gelu(VARIANT, &x, &what).map_err(TestCaseError::fail)?;
                }

                #[test]
                fn embed_matches_reference_on_packed_sequences(case in embed_case()) {
                    check_embed_case(VARIANT, &case).map_err(TestCaseError::fail)?;
                }

                /// Exact: catches an element skipped or doubled at a workgroup edge (n not a
                /// multiple of 256).
                #[test]
                fn add_matches_reference(n in 1usize..=5000, seed in any::<u64>()) {
                    check_add(VARIANT, n, seed).map_err(TestCaseError::fail)?;
                }
            }

            proptest! {
                #![proptest_config(config(20))]

                #[test]
                fn attention_matches_reference(case in attention_case()) {
                    check_attention(VARIANT, &case).map_err(TestCaseError::fail)?;
                }
            }

            #[test]
            fn linear_at_model_shapes() {
                linear_matches_reference_at_model_shapes(VARIANT);
            }

            #[test]
            fn linear_past_one_packed_chunk() {
                linear_matches_reference_past_one_packed_chunk(VARIANT);
            }

            #[test]
            fn linear_on_both_sides_of_the_cpu_tile_change() {
                linear_matches_reference_on_both_sides_of_the_cpu_tile_change(VARIANT);
            }

            #[test]
            fn attention_at_model_shapes() {
                attention_matches_reference_at_model_shapes(VARIANT);
            }

            #[test]
            fn attention_with_scores_rising_at_every_key() {
                attention_survives_scores_that_rise_at_every_key(VARIANT);
            }

            #[test]
            fn attention_within_sequences() {
                attention_never_crosses_a_sequence_boundary(VARIANT);
            }

            #[test]
            fn gelu_new_at_extremes() {
                gelu_new_is_finite_and_exact_at_extremes(VARIANT);
            }

            #[test]
            fn grids_folded_past_65535_workgroups() {
                kernels_cover_grids_folded_past_65535_workgroups(VARIANT);
            }

            #[test]
            fn linear_owners() {
                linear_owners_match_the_table(VARIANT);
            }

            #[test]
            fn linear_replay() {
                linear_replay_matches_the_kernel(VARIANT);
            }

            #[test]
            fn recording_submitted_in_parts() {
                recordings_submitted_in_parts_keep_order_and_parameters(VARIANT);
            }
        }
    )+};
}

variant_tests!(simple => Variant::Simple, cpu => Variant::Cpu, tiled => Variant::Tiled);

/// Every shipped variant has its module of tests above.
#[test]
fn every_variant_is_tested() {
    assert_eq!(Variant::ALL, [Variant::Simple, Variant::Cpu, Variant::Tiled]);
}
