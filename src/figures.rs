//! Figures rendered in memory with plotters and written atomically as PNG.
//!
//! Text uses the DejaVu Sans font embedded in the binary (no system fonts needed). Every figure
//! is drawn into an RGB buffer, encoded to PNG bytes and then written with
//! [`write_atomic`](crate::output::write_atomic), so a failure never leaves a partial file.

use crate::output::write_atomic;
use anyhow::{anyhow, ensure, Context, Result};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::{register_font, FontStyle};
use std::path::Path;
use std::sync::OnceLock;

/// The font family name under which the embedded font is registered.
const FONT_FAMILY: &str = "sans-serif";
static FONT_BYTES: &[u8] = include_bytes!("../data/fonts/DejaVuSans.ttf");

pub type Area<'a> = DrawingArea<BitMapBackend<'a>, Shift>;

/// Registers the embedded font once per process.
pub fn ensure_font() -> Result<()> {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    let ok = *REGISTERED.get_or_init(|| register_font(FONT_FAMILY, FontStyle::Normal, FONT_BYTES).is_ok());
    ensure!(ok, "the embedded font data/fonts/DejaVuSans.ttf could not be loaded");
    Ok(())
}

pub fn font(size: u32) -> TextStyle<'static> {
    (FONT_FAMILY, size).into_font().color(&BLACK)
}

pub fn plot_err<E: std::fmt::Display>(e: E) -> anyhow::Error {
    anyhow!("drawing failed: {e}")
}

/// Encodes an RGB8 buffer of `width × height` pixels as PNG bytes.
pub fn encode_png(rgb: &[u8], width: u32, height: u32) -> Result<Vec<u8>> {
    ensure!(
        rgb.len() == width as usize * height as usize * 3,
        "RGB buffer of {} bytes does not match {width}×{height}",
        rgb.len()
    );
    let mut bytes = Vec::new();
    {
        let mut encoder = png::Encoder::new(&mut bytes, width, height);
        encoder.set_color(png::ColorType::Rgb);
        encoder.set_depth(png::BitDepth::Eight);
        encoder.set_compression(png::Compression::Default);
        let mut writer = encoder.write_header().context("cannot encode PNG")?;
        writer.write_image_data(rgb).context("cannot encode PNG")?;
        writer.finish().context("cannot encode PNG")?;
    }
    Ok(bytes)
}

/// Renders a figure: `paint` may set raw pixels of the white RGB buffer first, then `draw` adds
/// plotters drawing on top; the result is encoded as PNG and written atomically to `path`.
pub fn render(
    path: &Path,
    (width, height): (u32, u32),
    paint: impl FnOnce(&mut [u8]),
    draw: impl FnOnce(&Area) -> Result<()>,
) -> Result<()> {
    ensure_font()?;
    let mut buf = vec![255u8; width as usize * height as usize * 3];
    paint(&mut buf);
    {
        let root = BitMapBackend::with_buffer(&mut buf, (width, height)).into_drawing_area();
        draw(&root)?;
        root.present().map_err(plot_err)?;
    }
    let bytes = encode_png(&buf, width, height)?;
    write_atomic(path, |w| Ok(w.write_all(&bytes)?))
        .with_context(|| format!("cannot write figure {}", path.display()))
}

/// Colour stops of a diverging blue–white–red map (ColorBrewer RdBu, reversed: negative blue).
const DIVERGING: [(u8, u8, u8); 11] = [
    (5, 48, 97),
    (33, 102, 172),
    (67, 147, 195),
    (146, 197, 222),
    (209, 229, 240),
    (247, 247, 247),
    (253, 219, 199),
    (244, 165, 130),
    (214, 96, 77),
    (178, 24, 43),
    (103, 0, 31),
];

/// The diverging colour of `value` on a scale clipped to `[-clip, clip]` (0 is white).
pub fn diverging_color(value: f64, clip: f64) -> RGBColor {
    let u = if clip > 0.0 && value.is_finite() { ((value / clip).clamp(-1.0, 1.0) + 1.0) / 2.0 } else { 0.5 };
    let pos = u * (DIVERGING.len() - 1) as f64;
    let i = (pos.floor() as usize).min(DIVERGING.len() - 2);
    let f = pos - i as f64;
    let (a, b) = (DIVERGING[i], DIVERGING[i + 1]);
    let mix = |x: u8, y: u8| (x as f64 + (y as f64 - x as f64) * f).round() as u8;
    RGBColor(mix(a.0, b.0), mix(a.1, b.1), mix(a.2, b.2))
}

/// A "nice" tick step (1, 2 or 5 × 10^k) giving about `target` ticks over `span`.
pub fn nice_step(span: f64, target: usize) -> f64 {
    if span <= 0.0 || !span.is_finite() {
        return 1.0;
    }
    let raw = span / target.max(1) as f64;
    let mag = 10f64.powf(raw.log10().floor());
    let norm = raw / mag;
    let nice = if norm < 1.5 {
        1.0
    } else if norm < 3.5 {
        2.0
    } else if norm < 7.5 {
        5.0
    } else {
        10.0
    };
    nice * mag
}
