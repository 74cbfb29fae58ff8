//! The figures of `explain`: the dot product's terms, and c_fc's output as the kernel's tiles.

use super::Explanation;
use crate::figures::{diverging_color, font, plot_err, render};
use crate::text::sig;
use anyhow::Result;
use plotters::prelude::*;
use std::path::Path;

/// Tokens drawn in the contributions figure (a longer word shows its first ones).
const DRAWN_TOKENS: usize = 6;

/// Per token, two panels: the products x[k]·w[k] sorted from largest to smallest (one bar each),
/// and the f32 running sum over k in the kernel's order with the GPU's final value (bias
/// included) marked.
pub fn contributions_png(path: &Path, e: &Explanation) -> Result<()> {
    let tokens: Vec<_> = e.tokens.iter().take(DRAWN_TOKENS).collect();
    let (width, panel) = (1400u32, 300u32);
    let height = 60 + panel * tokens.len() as u32;
    render(
        path,
        (width, height),
        |_| {},
        |root| {
            let (title, body) = root.split_vertically(60);
            title
                .titled(
                    &format!("neuron {} of block {} for {:?}: the terms of x · w", e.neuron, e.layer, e.word),
                    font(24),
                )
                .map_err(plot_err)?;
            for (row, t) in body.split_evenly((tokens.len(), 1)).iter().zip(&tokens) {
                let (left, right) = row.split_horizontally(width / 2);
                let mut sorted = t.products.clone();
                sorted.sort_by(|a, b| b.total_cmp(a));
                let extent = sorted.iter().fold(1e-12f64, |m, v| m.max(v.abs()));
                let mut chart = ChartBuilder::on(&left)
                    .caption(format!("token {} {:?}: x[k]·w[k], sorted", t.row, t.text), font(18))
                    .margin(10)
                    .x_label_area_size(30)
                    .y_label_area_size(70)
                    .build_cartesian_2d(0..sorted.len(), -extent..extent)
                    .map_err(plot_err)?;
                chart.configure_mesh().disable_x_mesh().label_style(font(14)).draw().map_err(plot_err)?;
                chart
                    .draw_series(sorted.iter().enumerate().map(|(i, &v)| {
                        let color = diverging_color(v, extent);
                        Rectangle::new([(i, 0.0), (i + 1, v)], color.filled())
                    }))
                    .map_err(plot_err)?;

                let mut sum = 0.0f32;
                let mut points = Vec::with_capacity(t.x.len());
                // The slices of a split sum one after another: how their partial sums then add up.
                let order: Vec<usize> =
                    t.dispatch.order.blocks(t.x.len()).into_iter().flatten().flatten().collect();
                for (i, &k) in order.iter().enumerate() {
                    sum += t.x[k] * t.w[k];
                    points.push((i, sum as f64));
                }
                let (lo, hi) =
                    points.iter().fold((0.0f64, 0.0f64), |(lo, hi), &(_, v)| (lo.min(v), hi.max(v)));
                let (lo, hi) = (lo.min(t.pre_gpu as f64), hi.max(t.pre_gpu as f64));
                let pad = (hi - lo).max(1e-6) * 0.08;
                let mut chart = ChartBuilder::on(&right)
                    .caption(
                        format!(
                            "running sum in the kernel's order → pre = {} (bias {})",
                            sig(t.pre_gpu as f64, 4),
                            sig(t.bias as f64, 3)
                        ),
                        font(18),
                    )
                    .margin(10)
                    .x_label_area_size(30)
                    .y_label_area_size(70)
                    .build_cartesian_2d(0..points.len() + 1, lo - pad..hi + pad)
                    .map_err(plot_err)?;
                chart.configure_mesh().label_style(font(14)).draw().map_err(plot_err)?;
                chart
                    .draw_series(LineSeries::new(points.iter().copied(), BLUE.stroke_width(2)))
                    .map_err(plot_err)?;
                chart
                    .draw_series(std::iter::once(Circle::new(
                        (points.len(), t.pre_gpu as f64),
                        5,
                        RED.filled(),
                    )))
                    .map_err(plot_err)?;
            }
            Ok(())
        },
    )
}

/// c_fc's output `[tokens, n_out]` laid out as the kernel's workgroup tiles: each tile a
/// rectangle (past the last token, the part of a tile that holds no token is hatched grey), the
/// tile of the workgroup that owns the explained output filled, the output itself marked.
pub fn tiles_png(path: &Path, e: &Explanation) -> Result<()> {
    let first = &e.tokens[0].dispatch;
    let (tile_tokens, tile_outputs) = (first.tile[0], first.tile[1]);
    let n_tokens = e.tokens.len();
    let rows = n_tokens.div_ceil(tile_tokens) * tile_tokens;
    let (width, height) = (1400u32, 320u32);
    render(
        path,
        (width, height),
        |_| {},
        |root| {
            let mut chart = ChartBuilder::on(root)
            .caption(
                format!(
                    "c_fc output [{n_tokens} tokens × {}] in {} tiles of {tile_tokens} tokens × {tile_outputs} outputs \
                     ({}); neuron {} of token 0",
                    e.n_out,
                    e.n_out.div_ceil(tile_outputs) * rows / tile_tokens,
                    first.kernel,
                    e.neuron
                ),
                font(20),
            )
            .margin(15)
            .x_label_area_size(35)
            .y_label_area_size(60)
            .build_cartesian_2d(0..e.n_out, 0..rows)
            .map_err(plot_err)?;
            chart
                .configure_mesh()
                .disable_mesh()
                .x_desc("output (neuron)")
                .y_desc("token")
                .label_style(font(14))
                .draw()
                .map_err(plot_err)?;
            let owner_t0 = (e.tokens[0].row / tile_tokens) * tile_tokens;
            let owner_n0 = (e.neuron / tile_outputs) * tile_outputs;
            let grey = RGBColor(225, 225, 225);
            for t0 in (0..rows).step_by(tile_tokens) {
                for n0 in (0..e.n_out).step_by(tile_outputs) {
                    let n1 = (n0 + tile_outputs).min(e.n_out);
                    let owned = t0 == owner_t0 && n0 == owner_n0;
                    if t0 + tile_tokens > n_tokens {
                        let empty = [(n0, n_tokens.max(t0)), (n1, t0 + tile_tokens)];
                        chart
                            .draw_series(std::iter::once(Rectangle::new(empty, grey.filled())))
                            .map_err(plot_err)?;
                    }
                    let style = if owned { RGBColor(255, 190, 60).filled() } else { BLACK.stroke_width(1) };
                    let cells = [(n0, t0), (n1, (t0 + tile_tokens).min(rows))];
                    chart.draw_series(std::iter::once(Rectangle::new(cells, style))).map_err(plot_err)?;
                    if owned {
                        chart
                            .draw_series(std::iter::once(Rectangle::new(cells, BLACK.stroke_width(2))))
                            .map_err(plot_err)?;
                    }
                }
            }
            let cell = [(e.neuron, e.tokens[0].row), (e.neuron + 1, e.tokens[0].row + 1)];
            chart.draw_series(std::iter::once(Rectangle::new(cell, RED.filled()))).map_err(plot_err)?;
            Ok(())
        },
    )
}
