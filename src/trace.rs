//! `neoprobe trace`: every dispatch of the forward as the GPU sees it — the module that asked for
//! it, the kernel, its grid, the work it does, and how long it took.

use crate::engine::{Engine, LoadedModel, ModelSource};
use crate::figures::{font, plot_err, render};
use crate::gpu::Trace;
use crate::hub::FetchOptions;
use crate::kernels::Variant;
use crate::model::{Batch, Hook, ModelDir};
use crate::notes::Notes;
use crate::out_dir::{check_out_dir, Staging};
use crate::output;
use crate::text::sig;
use crate::tokenize::{read_text, read_word_list, WordSource};
use anyhow::{bail, Result};
use plotters::prelude::*;
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

pub const TRACE_PNG: &str = "trace.png";
pub const TRACE_JSON: &str = "trace.json";
pub const OUTPUT_FILES: [&str; 2] = [TRACE_PNG, TRACE_JSON];

/// What the traced forward runs.
#[derive(Clone, Debug)]
pub enum TraceInput {
    /// The challenge's 200 words, each alone, in one packed batch.
    ChallengeWords,
    /// A word list: each word alone.
    Words(PathBuf),
    /// A text, whole, as one sequence (cut to the model's positions).
    Text(PathBuf),
}

#[derive(Clone, Debug)]
pub struct TraceArgs {
    pub model: ModelSource,
    pub fetch: FetchOptions,
    pub input: TraceInput,
    /// The forward stops at this hook (default: the challenge's).
    pub hook: String,
    pub variant: Option<Variant>,
    pub out_dir: PathBuf,
    pub force: bool,
}

/// The trace: what `--json` prints and `trace.json` holds.
#[derive(Clone, Debug, Serialize)]
pub struct TraceReport {
    pub adapter: String,
    pub variant: String,
    /// "gpu_timestamps", or "wall_clock" (each dispatch submitted alone and waited for).
    pub timing: String,
    pub model: String,
    pub hook: String,
    pub n_tokens: usize,
    pub dispatches: Vec<Dispatch>,
    /// Σ of the dispatches' seconds.
    pub total_seconds: f64,
    /// With wall-clock timing: the copies between dispatches (texel operands, read-backs).
    pub copy_seconds: f64,
}

/// One dispatch of the forward.
#[derive(Clone, Debug, Serialize)]
pub struct Dispatch {
    pub module: String,
    /// The kernel's file in `shaders/`.
    pub kernel: String,
    pub shapes: String,
    pub grid: [u32; 3],
    pub workgroup_size: u32,
    pub flops: f64,
    /// Bytes read plus bytes written, each operand once.
    pub bytes: f64,
    pub bytes_read: f64,
    pub bytes_written: f64,
    /// FLOPs per byte.
    pub intensity: f64,
    pub seconds: f64,
    /// Of the total of all dispatches.
    pub share: f64,
    pub gflops: f64,
}

impl TraceReport {
    fn new(
        trace: Trace,
        adapter: String,
        variant: Variant,
        model: String,
        hook: Hook,
        n_tokens: usize,
    ) -> Self {
        let total: f64 = trace.entries.iter().map(|e| e.seconds).sum();
        let dispatches = trace
            .entries
            .into_iter()
            .map(|e| {
                let bytes = e.work.bytes_read + e.work.bytes_written;
                Dispatch {
                    module: e.module,
                    kernel: format!("{}.wgsl", e.kernel),
                    shapes: e.work.shapes,
                    grid: e.grid,
                    workgroup_size: e.work.workgroup_size,
                    flops: e.work.flops,
                    bytes,
                    bytes_read: e.work.bytes_read,
                    bytes_written: e.work.bytes_written,
                    intensity: if bytes > 0.0 { e.work.flops / bytes } else { 0.0 },
                    seconds: e.seconds,
                    share: if total > 0.0 { e.seconds / total } else { 0.0 },
                    gflops: if e.seconds > 0.0 { e.work.flops / e.seconds / 1e9 } else { 0.0 },
                }
            })
            .collect();
        TraceReport {
            adapter,
            variant: variant.to_string(),
            timing: if trace.wall_clock { "wall_clock" } else { "gpu_timestamps" }.to_string(),
            model,
            hook: hook.to_string(),
            n_tokens,
            dispatches,
            total_seconds: total,
            copy_seconds: trace.copy_seconds,
        }
    }
}

pub struct TraceOutcome {
    pub report: TraceReport,
    pub files: Vec<PathBuf>,
}

/// Runs the forward of `args.input` up to `args.hook` once to compile and warm up, then once
/// traced, and writes `trace.png` and `trace.json`.
pub fn trace(args: &TraceArgs, notes: &dyn Notes) -> Result<TraceOutcome> {
    check_out_dir(&args.out_dir, args.force, &OUTPUT_FILES, "trace's files")?;
    let resolved = args.model.resolve(&args.fetch, notes)?;
    let (model, plan, hook) = LoadedModel::load_for_hook(&ModelDir::open(&resolved.dir)?, &args.hook)?;
    let config = &model.config;
    let sequences = match &args.input {
        TraceInput::ChallengeWords => {
            let mut words = WordSource::verbs().read()?;
            words.extend(WordSource::nouns().read()?);
            words.iter().map(|w| model.tokenizer.encode_word(&w.word, false)).collect::<Result<Vec<_>>>()?
        }
        TraceInput::Words(path) => read_word_list(path)?
            .iter()
            .map(|w| model.tokenizer.encode_word(&w.word, false))
            .collect::<Result<Vec<_>>>()?,
        TraceInput::Text(path) => {
            let mut ids = model.tokenizer.encode(&read_text(path)?)?;
            if ids.is_empty() {
                bail!("text {} gives no tokens", path.display());
            }
            ids.truncate(config.max_position_embeddings);
            vec![ids]
        }
    };
    let batch = Batch::pack(&sequences, config.max_position_embeddings)?;
    let engine = Engine::new(&model.weights, args.variant, model.load_time)?;
    let variant = engine.kernels.variant;
    notes.step(&format!(
        "{} tokens up to {hook} on {} ({variant})",
        batch.n_tokens(),
        engine.gpu.adapter_name()
    ));
    // A first forward compiles what the plan's hooks need, so that no compile is timed.
    engine.forward(&batch, &plan, false)?;
    let (_, trace) = engine.forward_traced(&batch, &plan)?;
    let report =
        TraceReport::new(trace, engine.gpu.adapter_name(), variant, resolved.label, hook, batch.n_tokens());

    let staging = Staging::create(&args.out_dir)?;
    trace_png(&staging.file(TRACE_PNG), &report)?;
    let json = serde_json::to_string_pretty(&report)?;
    output::write_atomic(&staging.file(TRACE_JSON), |f| Ok(f.write_all(json.as_bytes())?))?;
    let files = staging.publish(&args.out_dir, &OUTPUT_FILES)?;
    Ok(TraceOutcome { report, files })
}

fn ms(seconds: f64) -> String {
    format!("{} ms", sig(seconds * 1e3, 3))
}

/// The terminal table: every dispatch, then the totals per kernel and the five slowest.
pub fn render_table(r: &TraceReport) -> String {
    let mut out = String::new();
    let timing = if r.timing == "wall_clock" {
        "wall clock around each dispatch submitted alone"
    } else {
        "GPU timestamps"
    };
    let _ = writeln!(
        out,
        "{} dispatches of the forward of {} tokens up to {} on {} ({} kernels; times: {timing})",
        r.dispatches.len(),
        r.n_tokens,
        r.hook,
        r.adapter,
        r.variant
    );
    let _ = writeln!(
        out,
        "\n{:<30} {:<22} {:>16} {:>5} {:>10} {:>10} {:>7} {:>10} {:>6} {:>9}",
        "module", "kernel", "grid", "wg", "GFLOP", "MB", "FLOP/B", "time", "share", "GFLOP/s"
    );
    for d in &r.dispatches {
        let grid = format!("{}×{}×{}", d.grid[0], d.grid[1], d.grid[2]);
        let _ = writeln!(
            out,
            "{:<30} {:<22} {:>16} {:>5} {:>10} {:>10} {:>7} {:>10} {:>5}% {:>9}",
            d.module,
            d.kernel,
            grid,
            d.workgroup_size,
            sig(d.flops / 1e9, 3),
            sig(d.bytes / 1e6, 3),
            sig(d.intensity, 3),
            ms(d.seconds),
            sig(100.0 * d.share, 2),
            sig(d.gflops, 3)
        );
    }
    let mut by_kernel: BTreeMap<&str, (usize, f64, f64)> = BTreeMap::new();
    for d in &r.dispatches {
        let entry = by_kernel.entry(&d.kernel).or_default();
        *entry = (entry.0 + 1, entry.1 + d.seconds, entry.2 + d.flops);
    }
    let _ = writeln!(out, "\nper kernel:");
    for (kernel, (count, seconds, flops)) in &by_kernel {
        let _ = writeln!(
            out,
            "  {kernel:<22} {count:>3} dispatches, {}, {}% of the total, {} GFLOP/s",
            ms(*seconds),
            sig(100.0 * seconds / r.total_seconds.max(1e-300), 3),
            sig(flops / seconds.max(1e-300) / 1e9, 3)
        );
    }
    let mut slowest: Vec<&Dispatch> = r.dispatches.iter().collect();
    slowest.sort_by(|a, b| b.seconds.total_cmp(&a.seconds));
    let _ = writeln!(out, "\nslowest:");
    for d in slowest.iter().take(5) {
        let _ = writeln!(
            out,
            "  {:<30} {:<22} {} ({}%)",
            d.module,
            d.kernel,
            ms(d.seconds),
            sig(100.0 * d.share, 3)
        );
    }
    let _ = writeln!(out, "\ntotal {} in dispatches", ms(r.total_seconds));
    if r.timing == "wall_clock" {
        let _ = writeln!(out, "copies between them (texel operands, read-backs): {}", ms(r.copy_seconds));
    }
    out
}

/// The colour of a kernel in the figure.
fn kernel_color(kernel: &str) -> RGBColor {
    match kernel.split('.').next().unwrap_or("") {
        k if k.starts_with("linear") => RGBColor(44, 123, 182),
        k if k.starts_with("attention") => RGBColor(215, 48, 39),
        k if k.starts_with("layernorm") => RGBColor(26, 152, 80),
        _ => RGBColor(120, 120, 120),
    }
}

/// The dispatches in order as a timeline: each a bar as wide as its time, coloured by kernel,
/// its achieved GFLOP/s as its height.
fn trace_png(path: &Path, r: &TraceReport) -> Result<()> {
    let total = r.total_seconds.max(1e-12) * 1e3;
    let top = r.dispatches.iter().fold(1e-9f64, |m, d| m.max(d.gflops)) * 1.1;
    render(
        path,
        (1400, 520),
        |_| {},
        |root| {
            let mut chart = ChartBuilder::on(root)
                .caption(
                    format!(
                        "{} dispatches up to {} ({} tokens, {} kernels, {}): width = time, height = GFLOP/s",
                        r.dispatches.len(),
                        r.hook,
                        r.n_tokens,
                        r.variant,
                        if r.timing == "wall_clock" { "wall clock" } else { "GPU timestamps" }
                    ),
                    font(20),
                )
                .margin(15)
                .x_label_area_size(40)
                .y_label_area_size(70)
                .build_cartesian_2d(0.0..total, 0.0..top)
                .map_err(plot_err)?;
            chart
                .configure_mesh()
                .x_desc("time into the forward (ms)")
                .y_desc("GFLOP/s")
                .label_style(font(14))
                .draw()
                .map_err(plot_err)?;
            let mut at = 0.0;
            for d in &r.dispatches {
                let width = d.seconds * 1e3;
                let bar =
                    Rectangle::new([(at, 0.0), (at + width, d.gflops)], kernel_color(&d.kernel).filled());
                chart.draw_series(std::iter::once(bar)).map_err(plot_err)?;
                at += width;
            }
            for (name, color) in [
                ("linear", "linear.wgsl"),
                ("attention", "attention.wgsl"),
                ("layernorm", "layernorm.wgsl"),
                ("embed", "embed.wgsl"),
            ] {
                chart
                    .draw_series(std::iter::empty::<Rectangle<(f64, f64)>>())
                    .map_err(plot_err)?
                    .label(name)
                    .legend(move |(x, y)| {
                        Rectangle::new([(x, y - 6), (x + 14, y + 6)], kernel_color(color).filled())
                    });
            }
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::UpperRight)
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK)
                .label_font(font(16))
                .draw()
                .map_err(plot_err)
        },
    )
}
