//! Figures of the challenge (drawn with the shared helpers of `crate::figures`).

use super::causal::CausalTest;
use super::stats::{median, neuron_means, quantile, NeuronStats, WordActivations};
use crate::figures::{diverging_color, font, nice_step, plot_err, render, Area};
use crate::text::sig;
use anyhow::{ensure, Result};
use plotters::coord::CoordTranslate;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use plotters::style::FontTransform;
use rand::{Rng, SeedableRng};
use std::path::Path;

/// The legend box of the point figures, in their upper right corner.
fn draw_legend<'a, DB: DrawingBackend + 'a, CT: CoordTranslate>(
    chart: &mut ChartContext<'a, DB, CT>,
) -> Result<()> {
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font(font(18))
        .draw()
        .map_err(plot_err)
}

/// The pixel geometry of `heatmap.png`: one block of `cell_w × cell_h` pixels per (word, neuron),
/// words top to bottom in category order, a `gap`-pixel dark separator between categories.
#[derive(Debug, Clone, PartialEq)]
pub struct HeatmapLayout {
    pub width: u32,
    pub height: u32,
    /// Left and top pixel of the cell area.
    pub left: u32,
    pub top: u32,
    pub cell_w: u32,
    pub cell_h: u32,
    pub gap: u32,
    /// Words per category.
    pub counts: Vec<usize>,
    pub n_neurons: usize,
}

impl HeatmapLayout {
    const LEFT: u32 = 190;
    const RIGHT: u32 = 210;
    const TOP: u32 = 80;
    const BOTTOM: u32 = 90;
    const GAP: u32 = 3;
    /// Target size of the cell area; cells are whole pixels, at least one per neuron and word.
    const TARGET_W: u32 = 1400;
    const TARGET_H: u32 = 800;

    pub fn new(counts: &[usize], n_neurons: usize) -> Self {
        let n_words: usize = counts.iter().sum();
        let cell_w = (Self::TARGET_W / n_neurons.max(1) as u32).max(1);
        let cell_h = (Self::TARGET_H / n_words.max(1) as u32).clamp(1, 60);
        let gaps = Self::GAP * counts.len().saturating_sub(1) as u32;
        let plot_w = cell_w * n_neurons as u32;
        let plot_h = cell_h * n_words as u32 + gaps;
        Self {
            width: Self::LEFT + plot_w + Self::RIGHT,
            height: Self::TOP + plot_h + Self::BOTTOM,
            left: Self::LEFT,
            top: Self::TOP,
            cell_w,
            cell_h,
            gap: Self::GAP,
            counts: counts.to_vec(),
            n_neurons,
        }
    }

    pub fn for_acts(acts: &WordActivations) -> Self {
        let counts: Vec<usize> = acts.categories.iter().map(|c| c.words.len()).collect();
        Self::new(&counts, acts.width)
    }

    /// Width and height of the cell area in pixels.
    pub fn plot_size(&self) -> (u32, u32) {
        let n_words: usize = self.counts.iter().sum();
        let gaps = self.gap * self.counts.len().saturating_sub(1) as u32;
        (self.cell_w * self.n_neurons as u32, self.cell_h * n_words as u32 + gaps)
    }

    /// Top pixel row of word `i` of category `c`.
    pub fn row_top(&self, c: usize, i: usize) -> u32 {
        let before: usize = self.counts[..c].iter().sum();
        self.top + (before + i) as u32 * self.cell_h + c as u32 * self.gap
    }

    /// Left pixel column of `neuron`.
    pub fn col_left(&self, neuron: usize) -> u32 {
        self.left + neuron as u32 * self.cell_w
    }
}

/// The colour-scale limit of the heatmap: the 99th percentile of |activation| (1 if that is 0).
pub fn heatmap_clip(acts: &WordActivations) -> f64 {
    let abs: Vec<f64> = acts.rows.iter().map(|v| (*v as f64).abs()).collect();
    let clip = quantile(&abs, 0.99);
    if clip > 0.0 && clip.is_finite() {
        clip
    } else {
        1.0
    }
}

/// `heatmap.png` with a generic title; see [`heatmap_png_titled`].
pub fn heatmap_png(path: &Path, acts: &WordActivations) -> Result<()> {
    heatmap_png_titled(path, acts, &format!("Activations: {} words × {} neurons", acts.n_words(), acts.width))
}

/// Words × neurons heatmap: one pixel-exact block per (word, neuron) (one pixel column per
/// neuron when there are more than 1400 neurons), words grouped by category with a dark
/// separator and the category names on the left; diverging colours centred at 0, clipped at the
/// 99th percentile of |activation|, with a colour bar.
pub fn heatmap_png_titled(path: &Path, acts: &WordActivations, title: &str) -> Result<()> {
    acts.validate()?;
    ensure!(acts.n_words() > 0, "no words to draw");
    let layout = HeatmapLayout::for_acts(acts);
    let clip = heatmap_clip(acts);
    let (plot_w, plot_h) = layout.plot_size();
    let (img_w, img_h) = (layout.width, layout.height);
    let bar_x = layout.left + plot_w + 40;
    let bar_w = 28u32;

    let paint = |buf: &mut [u8]| {
        let stride = img_w as usize * 3;
        let mut fill = |x0: u32, y0: u32, w: u32, h: u32, c: RGBColor| {
            for y in y0..y0 + h {
                let row = &mut buf[y as usize * stride..(y as usize + 1) * stride];
                for x in x0..x0 + w {
                    row[x as usize * 3..x as usize * 3 + 3].copy_from_slice(&[c.0, c.1, c.2]);
                }
            }
        };
        for (c, cat) in acts.categories.iter().enumerate() {
            for i in 0..cat.words.len() {
                let y = layout.row_top(c, i);
                for (j, v) in acts.row(c, i).iter().enumerate() {
                    let color = diverging_color(*v as f64, clip);
                    fill(layout.col_left(j), y, layout.cell_w, layout.cell_h, color);
                }
            }
            if c > 0 {
                // The separator spans the cells and reaches into the label margin.
                let y = layout.row_top(c, 0) - layout.gap;
                fill(12, y, layout.left - 12 + plot_w, layout.gap, RGBColor(20, 20, 20));
            }
        }
        for dy in 0..plot_h {
            let value = clip * (1.0 - 2.0 * dy as f64 / (plot_h.max(2) - 1) as f64);
            fill(bar_x, layout.top + dy, bar_w, 1, diverging_color(value, clip));
        }
    };

    let draw = |root: &Area| -> Result<()> {
        let (l, t) = (layout.left as i32, layout.top as i32);
        let (r, b) = (l + plot_w as i32, t + plot_h as i32);
        root.draw(&Text::new(title.to_string(), (l, 24), font(26).pos(Pos::new(HPos::Left, VPos::Center))))
            .map_err(plot_err)?;
        root.draw(&Text::new(
            "rows: words (grouped by category); columns: neurons; blue < 0 < red".to_string(),
            (l, 56),
            font(17).pos(Pos::new(HPos::Left, VPos::Center)),
        ))
        .map_err(plot_err)?;
        // Frame just outside the cell area, so no cell is covered.
        root.draw(&Rectangle::new([(l - 1, t - 1), (r, b)], BLACK.stroke_width(1))).map_err(plot_err)?;
        // x ticks on neuron centres.
        let step = nice_step(layout.n_neurons as f64, 12).max(1.0) as usize;
        for j in (0..layout.n_neurons).step_by(step) {
            let x = layout.col_left(j) as i32 + layout.cell_w as i32 / 2;
            root.draw(&PathElement::new(vec![(x, b), (x, b + 6)], BLACK)).map_err(plot_err)?;
            root.draw(&Text::new(
                j.to_string(),
                (x, b + 10),
                font(16).pos(Pos::new(HPos::Center, VPos::Top)),
            ))
            .map_err(plot_err)?;
        }
        root.draw(&Text::new(
            "neuron index".to_string(),
            ((l + r) / 2, b + 52),
            font(20).pos(Pos::new(HPos::Center, VPos::Top)),
        ))
        .map_err(plot_err)?;
        // Category names (rotated) and, when rows are tall enough, the words themselves.
        for (c, cat) in acts.categories.iter().enumerate() {
            let n = cat.words.len();
            if n == 0 {
                continue;
            }
            let y0 = layout.row_top(c, 0) as i32;
            let y1 = (layout.row_top(c, n - 1) + layout.cell_h) as i32;
            root.draw(&Text::new(
                format!("{} ({n})", cat.name),
                (30, (y0 + y1) / 2),
                font(22).transform(FontTransform::Rotate270).pos(Pos::new(HPos::Center, VPos::Center)),
            ))
            .map_err(plot_err)?;
            root.draw(&PathElement::new(vec![(48, y0 + 1), (48, y1 - 1)], BLACK.stroke_width(2)))
                .map_err(plot_err)?;
            if layout.cell_h >= 11 {
                let size = (layout.cell_h - 2).min(15);
                for (i, word) in cat.words.iter().enumerate() {
                    let y = (layout.row_top(c, i) + layout.cell_h / 2) as i32;
                    root.draw(&Text::new(
                        word.clone(),
                        (l - 6, y),
                        font(size).pos(Pos::new(HPos::Right, VPos::Center)),
                    ))
                    .map_err(plot_err)?;
                }
            }
        }
        // Colour bar: frame, ticks, label.
        let (bx0, bx1) = (bar_x as i32, (bar_x + bar_w) as i32);
        root.draw(&Rectangle::new([(bx0 - 1, t - 1), (bx1, b)], BLACK.stroke_width(1))).map_err(plot_err)?;
        for k in 0..5 {
            let frac = k as f64 / 4.0;
            let value = clip * (1.0 - 2.0 * frac);
            let y = t + (frac * (plot_h.max(2) - 1) as f64).round() as i32;
            root.draw(&PathElement::new(vec![(bx1, y), (bx1 + 6, y)], BLACK)).map_err(plot_err)?;
            root.draw(&Text::new(
                sig(value, 3),
                (bx1 + 10, y),
                font(16).pos(Pos::new(HPos::Left, VPos::Center)),
            ))
            .map_err(plot_err)?;
        }
        root.draw(&Text::new(
            format!("activation, clipped at ±{} (99th pct of |x|)", sig(clip, 3)),
            (bx1 + 95, (t + b) / 2),
            font(17).transform(FontTransform::Rotate90).pos(Pos::new(HPos::Center, VPos::Center)),
        ))
        .map_err(plot_err)?;
        Ok(())
    };
    render(path, (img_w, img_h), paint, draw)
}

/// Size of `top_neurons.png` and `offsets.png`.
pub const FIGURE_SIZE: (u32, u32) = (1600, 1000);

/// Point colours per category (category 0 first).
const CATEGORY_COLORS: [RGBColor; 6] = [
    RGBColor(214, 96, 39),
    RGBColor(33, 102, 172),
    RGBColor(27, 158, 119),
    RGBColor(117, 112, 179),
    RGBColor(231, 41, 138),
    RGBColor(102, 102, 102),
];

/// The `k` neurons with the largest |t| (ties by index; NaN last), most extreme first.
pub fn top_by_abs_t(stats: &[NeuronStats], k: usize) -> Vec<&NeuronStats> {
    let mut order: Vec<&NeuronStats> = stats.iter().collect();
    order.sort_by(|a, b| {
        let key = |s: &NeuronStats| if s.t.is_nan() { -1.0 } else { s.t.abs() };
        key(b).total_cmp(&key(a)).then(a.neuron.cmp(&b.neuron))
    });
    order.truncate(k);
    order
}

/// For the `k` neurons with the largest |t|: one column per neuron with every word as a jittered
/// point, one cloud and colour per category, the category mean as a black bar, and the neuron
/// index and t below the column.
pub fn top_neurons_png(path: &Path, acts: &WordActivations, stats: &[NeuronStats], k: usize) -> Result<()> {
    acts.validate()?;
    ensure!(k > 0, "top_neurons_png needs k ≥ 1");
    ensure!(!stats.is_empty(), "no neuron statistics to plot");
    ensure!(
        stats.iter().all(|s| s.neuron < acts.width),
        "statistics name a neuron beyond the activation width {}",
        acts.width
    );
    let top = top_by_abs_t(stats, k);
    let n_cat = acts.categories.len();
    // Values per column and category.
    let values: Vec<Vec<Vec<f64>>> =
        top.iter().map(|s| (0..n_cat).map(|c| acts.neuron_values(c, s.neuron)).collect()).collect();
    let all = values.iter().flatten().flatten();
    let (lo, hi) = all.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &v| (lo.min(v), hi.max(v)));
    let (lo, hi) = if lo.is_finite() && hi > lo {
        let pad = 0.06 * (hi - lo);
        (lo - pad, hi + pad)
    } else if lo.is_finite() {
        (lo - 1.0, lo + 1.0)
    } else {
        (-1.0, 1.0)
    };
    let names: Vec<&str> = acts.categories.iter().map(|c| c.name.as_str()).collect();
    let contrast = if n_cat >= 2 { format!("{} − {}", names[0], names[1]) } else { String::new() };
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0x5eed);

    let draw = |root: &Area| -> Result<()> {
        let mut chart = ChartBuilder::on(root)
            .caption(format!("The {} neurons with the largest |Welch t| ({contrast})", top.len()), font(28))
            .margin(20)
            .margin_right(40)
            .x_label_area_size(80)
            .y_label_area_size(90)
            .build_cartesian_2d(0f64..top.len() as f64, lo..hi)
            .map_err(plot_err)?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .disable_x_axis()
            .y_desc("activation")
            .axis_desc_style(font(20))
            .y_label_style(font(16))
            .light_line_style(WHITE)
            .bold_line_style(RGBColor(225, 225, 225))
            .draw()
            .map_err(plot_err)?;
        for i in 1..top.len() {
            let x = i as f64;
            chart
                .draw_series(std::iter::once(PathElement::new(
                    vec![(x, lo), (x, hi)],
                    RGBColor(170, 170, 170),
                )))
                .map_err(plot_err)?;
        }
        if lo < 0.0 && hi > 0.0 {
            chart
                .draw_series(std::iter::once(PathElement::new(
                    vec![(0.0, 0.0), (top.len() as f64, 0.0)],
                    BLACK.mix(0.5),
                )))
                .map_err(plot_err)?;
        }
        let slot = 1.0 / n_cat as f64;
        for c in 0..n_cat {
            let color = CATEGORY_COLORS[c % CATEGORY_COLORS.len()];
            let mut points = Vec::new();
            for (col, per_cat) in values.iter().enumerate() {
                let centre = col as f64 + (c as f64 + 0.5) * slot;
                for &v in &per_cat[c] {
                    let jitter = (rng.random::<f64>() - 0.5) * slot * 0.6;
                    points.push((centre + jitter, v));
                }
            }
            chart
                .draw_series(points.into_iter().map(|p| Circle::new(p, 4, color.mix(0.75).filled())))
                .map_err(plot_err)?
                .label(format!("{} ({} words)", names[c], acts.categories[c].words.len()))
                .legend(move |(x, y)| Circle::new((x + 10, y), 6, color.filled()));
            // The category mean of every column, as a short black bar.
            for (col, per_cat) in values.iter().enumerate() {
                if per_cat[c].is_empty() {
                    continue;
                }
                let centre = col as f64 + (c as f64 + 0.5) * slot;
                let mean = per_cat[c].iter().sum::<f64>() / per_cat[c].len() as f64;
                chart
                    .draw_series(std::iter::once(PathElement::new(
                        vec![(centre - 0.4 * slot, mean), (centre + 0.4 * slot, mean)],
                        BLACK.stroke_width(3),
                    )))
                    .map_err(plot_err)?;
            }
        }
        draw_legend(&mut chart)?;
        for (col, s) in top.iter().enumerate() {
            let (x, y) = chart.backend_coord(&(col as f64 + 0.5, lo));
            root.draw(&Text::new(
                format!("neuron {}", s.neuron),
                (x, y + 12),
                font(18).pos(Pos::new(HPos::Center, VPos::Top)),
            ))
            .map_err(plot_err)?;
            root.draw(&Text::new(
                format!("t = {}", sig(s.t, 3)),
                (x, y + 38),
                font(16).pos(Pos::new(HPos::Center, VPos::Top)),
            ))
            .map_err(plot_err)?;
        }
        Ok(())
    };
    render(path, FIGURE_SIZE, |_| {}, draw)
}

/// Histogram of the per-neuron mean activation over all words, with a line at 0, the median
/// marked, and the share of neurons with a negative mean in the title.
pub fn offsets_png(path: &Path, acts: &WordActivations) -> Result<()> {
    acts.validate()?;
    ensure!(acts.n_words() > 0, "no words to average");
    let means = neuron_means(acts);
    let med = median(&means);
    let negative = means.iter().filter(|m| **m < 0.0).count() as f64 / means.len() as f64;
    let (mut lo, mut hi) = means.iter().fold((0.0f64, 0.0f64), |(lo, hi), &m| (lo.min(m), hi.max(m)));
    if hi <= lo {
        lo -= 0.5;
        hi += 0.5;
    }
    let n_bins = 80usize;
    let width = (hi - lo) / n_bins as f64;
    let mut counts = vec![0usize; n_bins];
    for m in &means {
        let b = (((m - lo) / width).floor() as usize).min(n_bins - 1);
        counts[b] += 1;
    }
    let max_count = counts.iter().copied().max().unwrap_or(1).max(1);
    let pad = 0.02 * (hi - lo);
    let (x0, x1) = (lo - pad, hi + pad);
    let y1 = max_count as f64 * 1.12;

    let draw = |root: &Area| -> Result<()> {
        let mut chart = ChartBuilder::on(root)
            .caption(
                format!(
                    "Per-neuron mean activation over all {} words ({} neurons): {}% negative",
                    acts.n_words(),
                    acts.width,
                    sig(100.0 * negative, 3)
                ),
                font(28),
            )
            .margin(20)
            .margin_right(40)
            .x_label_area_size(70)
            .y_label_area_size(90)
            .build_cartesian_2d(x0..x1, 0f64..y1)
            .map_err(plot_err)?;
        chart
            .configure_mesh()
            .x_desc("mean activation of the neuron over all words")
            .y_desc("number of neurons")
            .y_label_formatter(&|v| format!("{v:.0}"))
            .axis_desc_style(font(20))
            .label_style(font(16))
            .x_label_formatter(&|v| sig(*v, 3))
            .light_line_style(WHITE)
            .bold_line_style(RGBColor(225, 225, 225))
            .draw()
            .map_err(plot_err)?;
        chart
            .draw_series(counts.iter().enumerate().filter(|(_, n)| **n > 0).map(|(b, n)| {
                let left = lo + b as f64 * width;
                Rectangle::new([(left, 0.0), (left + width, *n as f64)], RGBColor(70, 130, 180).filled())
            }))
            .map_err(plot_err)?
            .label("neurons per bin")
            .legend(|(x, y)| Rectangle::new([(x, y - 6), (x + 16, y + 6)], RGBColor(70, 130, 180).filled()));
        chart
            .draw_series(std::iter::once(PathElement::new(
                vec![(0.0, 0.0), (0.0, y1)],
                BLACK.stroke_width(2),
            )))
            .map_err(plot_err)?
            .label("zero")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], BLACK.stroke_width(2)));
        let red = RGBColor(200, 30, 30);
        chart
            .draw_series(DashedLineSeries::new(vec![(med, 0.0), (med, y1)], 10, 6, red.stroke_width(3)))
            .map_err(plot_err)?
            .label(format!("median = {}", sig(med, 3)))
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], red.stroke_width(3)));
        draw_legend(&mut chart)?;
        Ok(())
    };
    render(path, FIGURE_SIZE, |_| {}, draw)
}

/// `causal.png`: each ablated set as a point, its mean effect on the first category's words
/// across and on the second's up; the random sets grey, the two top sets coloured, the diagonal
/// where a set affects both alike.
pub fn causal_png(path: &Path, test: &CausalTest) -> Result<()> {
    let (a, b) = (&test.categories[0], &test.categories[1]);
    let point = |effects: &[f64]| (effects[0], effects[1]);
    let random: Vec<(f64, f64)> = test.random.iter().map(|r| point(r)).collect();
    let tops: Vec<(f64, f64)> = test.sets.iter().map(|s| point(&s.effects)).collect();
    let hi = random.iter().chain(&tops).fold(0.0f64, |hi, &(x, y)| hi.max(x).max(y));
    let hi = if hi > 0.0 && hi.is_finite() { hi * 1.1 } else { 1.0 };
    let colors = [RGBColor(200, 30, 30), RGBColor(40, 90, 200)];
    let draw = |root: &Area| -> Result<()> {
        let mut chart = ChartBuilder::on(root)
            .caption(
                format!(
                    "{}-ablating {} neurons at {}: mean KL of the next token after each word",
                    test.ablation, test.n_neurons, test.hook
                ),
                font(28),
            )
            .margin(20)
            .margin_right(40)
            .x_label_area_size(70)
            .y_label_area_size(110)
            .build_cartesian_2d(0f64..hi, 0f64..hi)
            .map_err(plot_err)?;
        chart
            .configure_mesh()
            .x_desc(format!("mean effect on the {a} (nats)"))
            .y_desc(format!("mean effect on the {b} (nats)"))
            .axis_desc_style(font(20))
            .label_style(font(16))
            .x_label_formatter(&|v| sig(*v, 3))
            .y_label_formatter(&|v| sig(*v, 3))
            .light_line_style(WHITE)
            .bold_line_style(RGBColor(225, 225, 225))
            .draw()
            .map_err(plot_err)?;
        chart
            .draw_series(DashedLineSeries::new(vec![(0.0, 0.0), (hi, hi)], 10, 6, BLACK.stroke_width(1)))
            .map_err(plot_err)?
            .label("equal effect")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], BLACK.stroke_width(1)));
        let grey = RGBColor(150, 150, 150);
        chart
            .draw_series(random.iter().map(|&p| Circle::new(p, 5, grey.filled())))
            .map_err(plot_err)?
            .label(format!("{} random sets", random.len()))
            .legend(move |(x, y)| Circle::new((x + 8, y), 5, grey.filled()));
        for (set, (&p, color)) in test.sets.iter().zip(tops.iter().zip(colors)) {
            chart
                .draw_series(std::iter::once(TriangleMarker::new(p, 12, color.filled())))
                .map_err(plot_err)?
                .label(format!(
                    "the {} {}-preferring neurons",
                    test.n_neurons, test.categories[set.preferring]
                ))
                .legend(move |(x, y)| TriangleMarker::new((x + 8, y), 8, color.filled()));
        }
        draw_legend(&mut chart)?;
        Ok(())
    };
    render(path, FIGURE_SIZE, |_| {}, draw)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::challenge::stats::neuron_stats;
    use crate::challenge::synthetic;

    /// Decodes a PNG file into (width, height, RGB bytes).
    fn decode(path: &Path) -> (u32, u32, Vec<u8>) {
        let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(path).unwrap()));
        let mut reader = decoder.read_info().unwrap();
        let mut buf = vec![0; reader.output_buffer_size()];
        let info = reader.next_frame(&mut buf).unwrap();
        assert_eq!(info.color_type, png::ColorType::Rgb);
        buf.truncate(info.buffer_size());
        (info.width, info.height, buf)
    }

    fn pixel(img: &(u32, u32, Vec<u8>), x: u32, y: u32) -> RGBColor {
        let k = (y as usize * img.0 as usize + x as usize) * 3;
        RGBColor(img.2[k], img.2[k + 1], img.2[k + 2])
    }

    /// The folder to write figures into: `NEOPROBE_FIG_DIR` when set (to look at them),
    /// otherwise a fresh temporary folder.
    fn out_dir() -> (Option<tempfile::TempDir>, std::path::PathBuf) {
        match std::env::var_os("NEOPROBE_FIG_DIR") {
            Some(d) => (None, d.into()),
            None => {
                let t = tempfile::tempdir().unwrap();
                let p = t.path().to_path_buf();
                (Some(t), p)
            }
        }
    }

    #[test]
    fn figures_are_written_as_pngs_of_the_expected_size() {
        let acts = synthetic::activations();
        let stats = neuron_stats(&acts).unwrap();
        let (_keep, dir) = out_dir();
        let (heat, top, off) =
            (dir.join("heatmap.png"), dir.join("top_neurons.png"), dir.join("offsets.png"));
        heatmap_png(&heat, &acts).unwrap();
        top_neurons_png(&top, &acts, &stats, 10).unwrap();
        offsets_png(&off, &acts).unwrap();
        let layout = HeatmapLayout::for_acts(&acts);
        let img = decode(&heat);
        assert_eq!((img.0, img.1), (layout.width, layout.height));
        for path in [&top, &off] {
            let img = decode(path);
            assert_eq!((img.0, img.1), FIGURE_SIZE, "{}", path.display());
            // The title was rendered with the embedded font: dark pixels in the top band.
            let dark = (0..60)
                .flat_map(|y| (0..img.0).map(move |x| (x, y)))
                .filter(|&(x, y)| pixel(&img, x, y).0 < 100)
                .count();
            assert!(dark > 200, "{}: only {dark} dark pixels in the title band", path.display());
        }
        // No temporary files are left next to the figures.
        if _keep.is_some() {
            assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 3);
        }
    }

    #[test]
    fn heatmap_cells_are_pixel_exact_and_categories_separated() {
        let acts = synthetic::activations();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("heatmap.png");
        heatmap_png(&path, &acts).unwrap();
        let img = decode(&path);
        let layout = HeatmapLayout::for_acts(&acts);
        let clip = heatmap_clip(&acts);
        for (c, i, j) in [(0, 0, 0), (0, 9, 49), (1, 0, synthetic::BAND_NEURON), (1, 9, 3), (0, 4, 7)] {
            let expected = diverging_color(acts.row(c, i)[j] as f64, clip);
            // Every pixel of the cell, corners included, has the cell's colour.
            let (x0, y0) = (layout.col_left(j), layout.row_top(c, i));
            for (dx, dy) in [
                (0, 0),
                (layout.cell_w - 1, 0),
                (0, layout.cell_h - 1),
                (layout.cell_w - 1, layout.cell_h - 1),
            ] {
                assert_eq!(pixel(&img, x0 + dx, y0 + dy), expected, "cell ({c}, {i}, {j})");
            }
        }
        // The band neuron is red, the offset background blue.
        let band = pixel(&img, layout.col_left(synthetic::BAND_NEURON), layout.row_top(0, 0));
        assert!(band.0 > band.2 + 50, "{band:?}");
        let background = pixel(&img, layout.col_left(0), layout.row_top(1, 5));
        assert!(background.2 > background.0 + 20, "{background:?}");
        // The separator between verbs and nouns is a dark line across the cells.
        let y = layout.row_top(1, 0) - 1;
        for j in [0, 25, 49] {
            let p = pixel(&img, layout.col_left(j), y);
            assert!(p.0 < 60 && p.1 < 60 && p.2 < 60, "separator at neuron {j}: {p:?}");
        }
    }

    #[test]
    fn real_size_heatmap_has_one_pixel_column_per_neuron() {
        let layout = HeatmapLayout::new(&[100, 100], 3072);
        assert_eq!(layout.cell_w, 1);
        assert_eq!(layout.plot_size().0, 3072);
        assert_eq!(layout.cell_h, 4);
        assert!(layout.height <= 1100, "{layout:?}");
        assert_eq!(layout.row_top(1, 0), layout.row_top(0, 99) + layout.cell_h + layout.gap);
    }

    #[test]
    fn diverging_scale_is_white_at_zero_and_clips() {
        assert_eq!(diverging_color(0.0, 2.0), RGBColor(247, 247, 247));
        assert_eq!(diverging_color(5.0, 2.0), RGBColor(103, 0, 31));
        assert_eq!(diverging_color(-5.0, 2.0), RGBColor(5, 48, 97));
        assert_eq!(diverging_color(f64::NAN, 2.0), RGBColor(247, 247, 247));
    }

    #[test]
    fn top_neurons_are_ranked_by_absolute_t() {
        let acts = synthetic::activations();
        let stats = neuron_stats(&acts).unwrap();
        let top: Vec<usize> = top_by_abs_t(&stats, 3).iter().map(|s| s.neuron).collect();
        let mut planted =
            vec![synthetic::VERB_NEURONS[0], synthetic::VERB_NEURONS[1], synthetic::NOUN_NEURON];
        let mut got = top.clone();
        planted.sort();
        got.sort();
        assert_eq!(got, planted);
        let ts: Vec<f64> = top_by_abs_t(&stats, 50).iter().map(|s| s.t.abs()).collect();
        assert!(ts.windows(2).all(|w| w[0] >= w[1]));
    }

    #[test]
    fn failed_figure_write_leaves_no_file() {
        let acts = synthetic::activations();
        let stats = neuron_stats(&acts).unwrap();
        let dir = tempfile::tempdir().unwrap();
        // The target names an existing folder: rendering succeeds, the final rename fails.
        let target = dir.path().join("heatmap.png");
        std::fs::create_dir(&target).unwrap();
        assert!(heatmap_png(&target, &acts).is_err());
        assert!(top_neurons_png(&target, &acts, &stats, 10).is_err());
        assert!(offsets_png(&target, &acts).is_err());
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, vec![std::ffi::OsString::from("heatmap.png")]);
        // A missing folder is an error too, and nothing is created.
        let missing = dir.path().join("no/such/folder/offsets.png");
        let err = offsets_png(&missing, &acts).unwrap_err();
        assert!(format!("{err:#}").contains("does not exist"), "{err:#}");
        assert!(!dir.path().join("no").exists());
        // Bad input is refused before anything is written.
        let empty = dir.path().join("top.png");
        assert!(top_neurons_png(&empty, &acts, &stats, 0).is_err());
        assert!(!empty.exists());
    }
}
