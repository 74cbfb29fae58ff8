//! The site's HTML, built as plain strings: `index.html` (every neuron in one table, sorted and
//! filtered by a small inline script), `neurons/N.html` (one page per neuron, no script) and
//! `style.css`. Every number a person reads is rounded ([`sig`]); the exact f32 is in the
//! element's `title` (shown on hover) or `data-v`, so that the pages can be checked against the
//! sweep's files.

use super::{Inputs, INDEX_HTML, NEURONS_DIR, STYLE_CSS};
use crate::sweep::corpus::{ContextLine, SampleLine};
use crate::sweep::sample::{bin_bounds, interval_bounds, HIST_BINS, INTERVALS, ZERO_BIN};
use crate::text::sig;
use anyhow::{Context, Result};
use std::collections::HashMap;
use std::fmt::Write as _;
use std::fs;
use std::path::Path;

/// Tokens shown before and after a context's peak.
pub const BEFORE: usize = 32;
pub const AFTER: usize = 16;
/// Top tokens shown in the index, and display bins of the histogram.
pub const INDEX_TOKENS: usize = 5;
pub const HIST_COLUMNS: usize = 60;

const STYLE: &str = include_str!("style.css");
const INDEX_JS: &str = include_str!("index.js");

/// Writes the site into `dir`; returns the number of pages and the bytes written.
pub fn write_site(dir: &Path, inputs: &Inputs) -> Result<(usize, u64)> {
    let neurons_dir = dir.join(NEURONS_DIR);
    fs::create_dir(&neurons_dir).with_context(|| format!("cannot create {}", neurons_dir.display()))?;
    fs::write(dir.join(STYLE_CSS), STYLE).with_context(|| format!("cannot write into {}", dir.display()))?;
    let site = Site::new(inputs);
    let index = site.index();
    fs::write(dir.join(INDEX_HTML), &index)
        .with_context(|| format!("cannot write into {}", dir.display()))?;
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(8);
    let width = inputs.width;
    let chunk = width.div_ceil(threads).max(1);
    let bytes = std::thread::scope(|scope| -> Result<u64> {
        let handles: Vec<_> = (0..width)
            .step_by(chunk)
            .map(|first| {
                let (site, neurons_dir) = (&site, &neurons_dir);
                scope.spawn(move || -> Result<u64> {
                    let mut bytes = 0;
                    for n in first..(first + chunk).min(width) {
                        let page = site.neuron_page(n);
                        let path = neurons_dir.join(format!("{n}.html"));
                        fs::write(&path, &page)
                            .with_context(|| format!("cannot write {}", path.display()))?;
                        bytes += page.len() as u64;
                    }
                    Ok(bytes)
                })
            })
            .collect();
        let mut total = 0;
        for h in handles {
            total += h.join().expect("a page writer panicked")?;
        }
        Ok(total)
    })?;
    Ok((width + 1, bytes + index.len() as u64 + STYLE.len() as u64))
}

/// Text made safe for HTML text and attribute values.
pub fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for ch in text.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(ch),
        }
    }
    out
}

/// A token as shown: line breaks as ↵, tabs as →, the rest as is (spaces kept by the style).
pub fn shown_token(text: &str) -> String {
    esc(&text.replace('\n', "↵").replace('\t', "→"))
}

fn num(x: f64) -> String {
    if x.is_nan() {
        "–".to_string()
    } else {
        sig(x, 3)
    }
}

/// The exact value for a `data-v` or `title`: the f32's shortest round-trip form.
fn exact(x: f32) -> String {
    format!("{x}")
}

/// The site's view of the inputs, per neuron.
struct Site<'a> {
    inputs: &'a Inputs,
    header: String,
    contexts: HashMap<usize, Vec<&'a ContextLine>>,
    samples: HashMap<usize, Vec<&'a SampleLine>>,
}

impl<'a> Site<'a> {
    fn new(inputs: &'a Inputs) -> Site<'a> {
        let mut header = format!("model <b>{}</b>", esc(&inputs.model));
        if let Some(r) = &inputs.revision {
            let _ = write!(header, " · revision {}", esc(r));
        }
        let _ = write!(header, " · hook <b>{}</b>", esc(&inputs.hook));
        if let Some(c) = &inputs.corpus_label {
            let _ = write!(header, " · corpus {}", esc(c));
        }
        let mut contexts: HashMap<usize, Vec<&ContextLine>> = HashMap::new();
        let mut samples: HashMap<usize, Vec<&SampleLine>> = HashMap::new();
        if let Some((_, c)) = &inputs.corpus {
            for line in &c.context_lines {
                contexts.entry(line.neuron).or_default().push(line);
            }
            for line in &c.sample_lines {
                samples.entry(line.neuron).or_default().push(line);
            }
        }
        Site { inputs, header, contexts, samples }
    }

    fn token_text(&self, id: u32) -> String {
        self.inputs.tokens.as_ref().map_or_else(|| format!("#{id}"), |t| t.token_text(id))
    }

    /// (top value − mean) / SD of the vocabulary sweep.
    fn selectivity(&self, n: usize) -> f64 {
        match &self.inputs.vocab {
            Some(v) => {
                let top = v.lists.top_values[n * v.lists.k] as f64;
                (top - v.mean[n] as f64) / v.std[n] as f64
            }
            None => f64::NAN,
        }
    }

    fn page_start(&self, title: &str, css: &str) -> String {
        format!(
            "<!doctype html>\n<html lang=en><head><meta charset=utf-8><meta name=viewport content=\"width=device-width\">\
             <title>{}</title><link rel=stylesheet href=\"{css}\"></head>\n<body>\n<header class=run>{}</header>\n",
            esc(title),
            self.header
        )
    }

    fn index(&self) -> String {
        let i = self.inputs;
        let mut s = self.page_start(&format!("neurons of {}", i.hook), STYLE_CSS);
        let _ = write!(
            s,
            "<h1>{} neurons of {}</h1>\n<p class=help>Click a column to sort (again to reverse); type to keep the rows whose neuron or tokens contain the text.{}</p>\n\
             <p><input id=filter type=search placeholder=\"filter: neuron or token\" aria-label=filter> <span id=shown></span></p>\n\
             <table id=neurons><thead><tr>",
            i.width,
            esc(&i.hook),
            if i.vocab.is_some() {
                " Selectivity is (top value alone − mean) / SD over the vocabulary, each token run alone."
            } else {
                ""
            }
        );
        let mut columns = vec![("neuron", "neuron")];
        if i.vocab.is_some() {
            columns.extend([
                ("selectivity", "selectivity"),
                ("mean", "mean alone"),
                ("sd", "SD alone"),
                ("max", "max alone"),
            ]);
        }
        if i.corpus.is_some() {
            columns.push(("corpus_max", "max in corpus"));
        }
        if i.challenge.is_some() {
            columns.extend([("t", "t"), ("q", "q (BH)")]);
        }
        for (key, label) in &columns {
            let _ = write!(s, "<th data-key={key}>{label}</th>");
        }
        if i.vocab.is_some() {
            s.push_str("<th>top tokens alone</th>");
        }
        s.push_str("</tr></thead>\n<tbody>\n");
        for n in 0..i.width {
            let _ = write!(s, "<tr id=n{n}><td data-v={n}><a href=\"{NEURONS_DIR}/{n}.html\">{n}</a></td>");
            let mut cell = |v: f64, exact_text: String| {
                let _ = write!(s, "<td data-v=\"{exact_text}\">{}</td>", num(v));
            };
            if let Some(v) = &i.vocab {
                let sel = self.selectivity(n);
                cell(sel, format!("{sel}"));
                cell(v.mean[n] as f64, exact(v.mean[n]));
                cell(v.std[n] as f64, exact(v.std[n]));
                let top = v.lists.top_values[n * v.lists.k];
                cell(top as f64, exact(top));
            }
            if let Some((_, c)) = &i.corpus {
                let top = c.top.list(n).first().map_or(f32::NAN, |e| e.value);
                cell(top as f64, exact(top));
            }
            if let Some(c) = &i.challenge {
                cell(c.t[n], format!("{}", c.t[n]));
                cell(c.q[n], format!("{}", c.q[n]));
            }
            if let Some(v) = &i.vocab {
                s.push_str("<td class=toks>");
                for (id, _) in v.lists.top(n).take(INDEX_TOKENS) {
                    let _ = write!(s, "<code>{}</code> ", shown_token(&self.token_text(id)));
                }
                s.push_str("</td>");
            }
            s.push_str("</tr>\n");
        }
        s.push_str("</tbody></table>\n<script>\n");
        s.push_str(INDEX_JS);
        s.push_str("</script>\n</body></html>\n");
        s
    }

    fn neuron_page(&self, n: usize) -> String {
        let i = self.inputs;
        let mut s = self.page_start(&format!("neuron {n} of {}", i.hook), &format!("../{STYLE_CSS}"));
        s.push_str("<nav>");
        let _ = write!(s, "<a href=\"../{INDEX_HTML}#n{n}\">all neurons</a>");
        if n > 0 {
            let _ = write!(s, " · <a rel=prev href=\"{}.html\">← neuron {}</a>", n - 1, n - 1);
        }
        if n + 1 < i.width {
            let _ = write!(s, " · <a rel=next href=\"{}.html\">neuron {} →</a>", n + 1, n + 1);
        }
        let _ = write!(s, "</nav>\n<h1>Neuron {n} <small>of {}</small></h1>\n", esc(&i.hook));
        self.stats(&mut s, n);
        // The colour scale of every context on the page: the neuron's largest |activation| shown.
        let contexts = self.contexts.get(&n).map_or(&[][..], |v| &v[..]);
        let samples = self.samples.get(&n).map_or(&[][..], |v| &v[..]);
        let scale = contexts
            .iter()
            .map(|c| c.value.abs())
            .chain(samples.iter().map(|c| c.value.abs()))
            .fold(0f32, f32::max)
            .max(f32::MIN_POSITIVE);
        if i.corpus.is_some() {
            s.push_str("<section id=contexts><h2>Top contexts</h2>\n<p class=help>The corpus sequences where the neuron peaks highest; each token coloured by the neuron's activation there (orange above zero, blue below; hover for the value), the peak outlined.</p>\n");
            for c in contexts {
                context_html(
                    &mut s,
                    &format!("data-rank={}", c.rank),
                    c.value,
                    c.position,
                    &c.activations,
                    &c.tokens,
                    scale,
                );
            }
            s.push_str("</section>\n");
            self.histogram(&mut s, n);
            self.samples_html(&mut s, n, samples, scale);
        }
        if let Some(v) = &i.vocab {
            s.push_str("<section id=alone><h2>Tokens alone</h2>\n<p class=help>Every token of the vocabulary run as a one-token sequence.</p><div class=cols>");
            self.token_list(&mut s, "top", "highest", v.lists.top(n));
            self.token_list(&mut s, "bottom", "lowest", v.lists.bottom(n));
            s.push_str("</div></section>\n");
        }
        if let Some(l) = &i.logits {
            s.push_str("<section id=logits><h2>Tokens it promotes and suppresses</h2>\n<p class=help>Direct effect on the logits of one unit of activation (through c_proj, ln_f's scale and the unembedding).</p><div class=cols>");
            self.token_list(&mut s, "promotes", "promotes", l.lists.top(n));
            self.token_list(&mut s, "suppresses", "suppresses", l.lists.bottom(n));
            s.push_str("</div></section>\n");
        }
        if let Some(c) = &i.challenge {
            s.push_str("<section id=challenge><h2>The challenge's words</h2>\n<p class=help>Each word's value (its tokens pooled), highest first.</p><div class=cols>");
            let width = i.width;
            let wscale = c
                .categories
                .iter()
                .flat_map(|cat| (0..cat.words.len()).map(move |w| cat.values[w * width + n].abs()))
                .fold(0f32, f32::max)
                .max(f32::MIN_POSITIVE);
            for cat in &c.categories {
                let mut words: Vec<(f32, &str)> = cat
                    .words
                    .iter()
                    .enumerate()
                    .map(|(w, word)| (cat.values[w * width + n], word.as_str()))
                    .collect();
                words.sort_by(|a, b| b.0.total_cmp(&a.0));
                let _ = write!(
                    s,
                    "<div><h3>{}</h3><ol class=words data-category=\"{}\">",
                    esc(&cat.name),
                    esc(&cat.name)
                );
                for (v, word) in words {
                    let _ = write!(
                        s,
                        "<li><i class={} style=\"--a:{:.2}\" title=\"{}\">{}</i> <span class=v>{}</span></li>",
                        if v < 0.0 { "n" } else { "t" },
                        (v.abs() / wscale).min(1.0),
                        exact(v),
                        esc(word),
                        num(v as f64)
                    );
                }
                s.push_str("</ol></div>");
            }
            s.push_str("</div></section>\n");
        }
        s.push_str("</body></html>\n");
        s
    }

    fn stats(&self, s: &mut String, n: usize) {
        let i = self.inputs;
        let mut rows: Vec<(&str, &str, String, f64)> = Vec::new();
        if let Some(v) = &i.vocab {
            let top = v.lists.top_values[n * v.lists.k];
            let sel = self.selectivity(n);
            rows.push(("selectivity", "selectivity", format!("{sel}"), sel));
            rows.push(("mean", "mean alone", exact(v.mean[n]), v.mean[n] as f64));
            rows.push(("sd", "SD alone", exact(v.std[n]), v.std[n] as f64));
            rows.push(("max", "max alone", exact(top), top as f64));
        }
        if let Some((_, c)) = &i.corpus {
            if let Some(e) = c.top.list(n).first() {
                rows.push(("corpus_max", "max in corpus", exact(e.value), e.value as f64));
            }
        }
        if let Some(c) = &i.challenge {
            rows.push(("t", "t", format!("{}", c.t[n]), c.t[n]));
            rows.push(("q", "q (BH)", format!("{}", c.q[n]), c.q[n]));
        }
        s.push_str("<dl class=stats>");
        for (key, label, exact_text, v) in rows {
            let _ = write!(
                s,
                "<div><dt>{label}</dt><dd id=stat-{key} data-v=\"{exact_text}\">{}</dd></div>",
                num(v)
            );
        }
        s.push_str("</dl>\n");
    }

    fn token_list(&self, s: &mut String, id: &str, title: &str, list: impl Iterator<Item = (u32, f32)>) {
        let _ = write!(s, "<div><h3>{title}</h3><table class=tokens id={id}><tbody>");
        for (token, v) in list {
            let _ = write!(
                s,
                "<tr data-id={token}><td class=tok><code>{}</code></td><td class=v title=\"{}\">{}</td></tr>",
                shown_token(&self.token_text(token)),
                exact(v),
                num(v as f64)
            );
        }
        s.push_str("</tbody></table></div>");
    }

    fn histogram(&self, s: &mut String, n: usize) {
        let Some((_, c)) = &self.inputs.corpus else { return };
        let counts = c.lists.histograms.neuron(n);
        let total: i64 = counts.iter().sum();
        let (Some(first), Some(last)) =
            (counts.iter().position(|&c| c > 0), counts.iter().rposition(|&c| c > 0))
        else {
            return;
        };
        let positive: i64 = counts[ZERO_BIN + 1..].iter().sum();
        let lo = bin_bounds(first).0.max(-256.0);
        let hi = bin_bounds(last).1.min(256.0);
        let span = (hi - lo).max(f32::MIN_POSITIVE);
        let mut columns = vec![0i64; HIST_COLUMNS];
        for (bin, &count) in counts.iter().enumerate().take(HIST_BINS) {
            if count == 0 {
                continue;
            }
            let (a, b) = bin_bounds(bin);
            let mid = (a.max(lo) + b.min(hi)) / 2.0;
            let col =
                (((mid - lo) / span) * HIST_COLUMNS as f32).floor().clamp(0.0, (HIST_COLUMNS - 1) as f32);
            columns[col as usize] += count;
        }
        let biggest = columns.iter().copied().max().unwrap_or(1).max(1);
        let (w, h) = (600.0f32, 150.0f32);
        let bar = w / HIST_COLUMNS as f32;
        let _ = write!(
            s,
            "<section id=histogram><h2>Activations over the corpus</h2>\n<p class=help>Every token's activation: {total} tokens, {} above zero. Bar heights on a log scale.</p>\n\
             <svg viewBox=\"0 0 {w} {}\" width={w} height={} role=img aria-label=histogram data-total={total}>",
            percent(positive, total),
            h + 20.0,
            h + 20.0
        );
        for (col, &count) in columns.iter().enumerate() {
            if count == 0 {
                continue;
            }
            let height = ((1.0 + count as f32).ln() / (1.0 + biggest as f32).ln() * h).max(1.0);
            let a = lo + span * col as f32 / HIST_COLUMNS as f32;
            let b = lo + span * (col + 1) as f32 / HIST_COLUMNS as f32;
            let _ = write!(
                s,
                "<rect x={:.1} y={:.1} width={:.1} height={height:.1} data-count={count}><title>{} to {}: {count} tokens</title></rect>",
                col as f32 * bar,
                h - height,
                bar - 1.0,
                num(a as f64),
                num(b as f64)
            );
        }
        if lo < 0.0 && hi > 0.0 {
            let x = -lo / span * w;
            let _ = write!(s, "<line class=zero x1=\"{x:.1}\" x2=\"{x:.1}\" y1=\"0\" y2=\"{h}\"></line>");
        }
        let _ = writeln!(
            s,
            "<text x=0 y={}>{}</text><text x={w} y={} text-anchor=end>{}</text></svg></section>",
            h + 15.0,
            num(lo as f64),
            h + 15.0,
            num(hi as f64)
        );
    }

    fn samples_html(&self, s: &mut String, n: usize, samples: &[&SampleLine], scale: f32) {
        let Some((_, c)) = &self.inputs.corpus else { return };
        let counts = &c.lists.samples.counts[n * INTERVALS..(n + 1) * INTERVALS];
        let total: i64 = counts.iter().sum();
        s.push_str("<section id=samples><h2>Samples from each activation interval</h2>\n<p class=help>The corpus's sequences grouped by the octave of their peak activation, highest first; a fixed pseudo-random sample of each.</p>\n");
        for interval in (0..INTERVALS).rev() {
            if counts[interval] == 0 {
                continue;
            }
            let (a, b) = interval_bounds(interval);
            let _ = writeln!(
                s,
                "<h3 data-interval={interval} data-count={}>peak {} to {}: {} sequences ({})</h3>",
                counts[interval],
                num(a as f64),
                num(b as f64),
                counts[interval],
                percent(counts[interval], total)
            );
            for line in samples.iter().filter(|l| l.interval == interval) {
                context_html(
                    s,
                    &format!("data-interval={interval} data-slot={}", line.slot),
                    line.value,
                    line.position,
                    &line.activations,
                    &line.tokens,
                    scale,
                );
            }
        }
        s.push_str("</section>\n");
    }
}

fn percent(part: i64, total: i64) -> String {
    if total == 0 {
        return "–".to_string();
    }
    format!("{}%", sig(100.0 * part as f64 / total as f64, 3))
}

/// One context: its peak value, then the tokens around the peak, each coloured by its activation.
fn context_html(
    s: &mut String,
    attrs: &str,
    value: f32,
    position: usize,
    activations: &[f32],
    tokens: &[String],
    scale: f32,
) {
    let start = position.saturating_sub(BEFORE);
    let end = (position + 1 + AFTER).min(tokens.len());
    let _ = write!(
        s,
        "<div class=ctx {attrs} data-value=\"{}\" data-start={start}><span class=peak title=\"{}\">{}</span><span class=toks>{}",
        exact(value),
        exact(value),
        num(value as f64),
        if start > 0 { "…" } else { "" }
    );
    for (p, (token, &a)) in tokens.iter().zip(activations).enumerate().take(end).skip(start) {
        let class = match (p == position, a < 0.0) {
            (true, true) => "\"n p\"",
            (true, false) => "\"t p\"",
            (false, true) => "n",
            (false, false) => "t",
        };
        let _ = write!(
            s,
            "<i class={class} style=\"--a:{:.2}\" title=\"{}\">{}</i>",
            (a.abs() / scale).min(1.0),
            exact(a),
            shown_token(token)
        );
    }
    if end < tokens.len() {
        s.push('…');
    }
    s.push_str("</span></div>\n");
}
