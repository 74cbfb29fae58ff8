//! The neuron pages as a user builds and opens them: the fixture model's sweeps and challenge
//! made into a site, loaded in headless Chromium (Debian's `chromium`; a missing browser fails
//! these tests, it never skips them). The DOM after the scripts ran is compared with the
//! sweeps' files, the index is sorted the way a click sorts it, no page logs to the console,
//! nothing is fetched from the network, and bad inputs fail with one line and leave nothing.

use neoprobe::sweep::files::SweepFile;
use serde_json::Value;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

const WIDTH: usize = 256;
const K: usize = 20;

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn neoprobe(cwd: &Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_neoprobe"))
        .args(args)
        .current_dir(cwd)
        .env("XDG_RUNTIME_DIR", std::env::temp_dir())
        .output()
        .unwrap()
}

fn assert_success(out: &std::process::Output, what: &str) {
    assert!(
        out.status.success(),
        "{what} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Plain English from the fixture word lists, seeded.
fn text() -> String {
    let read = |path: &str| -> Vec<String> {
        fs::read_to_string(repo_root().join(path)).unwrap().lines().map(|l| l.trim().to_string()).collect()
    };
    let (verbs, nouns) = (read("data/verbs.txt"), read("data/nouns.txt"));
    (0..150)
        .map(|i| {
            let (n1, v, n2) =
                (&nouns[i * 7 % nouns.len()], &verbs[i * 13 % verbs.len()], &nouns[i * 3 % nouns.len()]);
            if i % 9 == 8 {
                format!("\"Did you {v} the {n1}?\" asked the {n2} & left.\n\n")
            } else {
                format!("The {n1} will {v} the {n2} before <noon>. ")
            }
        })
        .collect()
}

/// The sweeps, the challenge and the site, built once.
struct Site {
    dir: tempfile::TempDir,
}

impl Site {
    fn get() -> &'static Site {
        static SITE: OnceLock<Site> = OnceLock::new();
        SITE.get_or_init(|| {
            let dir =
                tempfile::Builder::new().prefix("pages-").tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
            let cwd = dir.path();
            fs::write(cwd.join("a.txt"), text()).unwrap();
            let model = repo_root().join("fixtures/tiny-neo");
            let m = model.to_str().unwrap();
            for args in [
                vec!["sweep", "vocab", "--model-dir", m, "--out-dir", "vocab"],
                vec![
                    "sweep",
                    "corpus",
                    "--model-dir",
                    m,
                    "--text",
                    "a.txt",
                    "--context",
                    "24",
                    "--out-dir",
                    "corpus",
                ],
                vec!["sweep", "logits", "--model-dir", m, "--out-dir", "logits"],
                vec![
                    "challenge",
                    "--model-dir",
                    m,
                    "--out-dir",
                    "challenge",
                    "--no-causal",
                    "--permutations",
                    "20",
                ],
                vec!["pages", "vocab", "corpus", "logits", "challenge", "--out-dir", "site"],
            ] {
                assert_success(&neoprobe(cwd, &args), &args.join(" "));
            }
            Site { dir }
        })
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

/// Headless Chromium on `url`, with `extra` arguments; returns stdout and stderr. Console
/// messages go to stderr (`--enable-logging=stderr`).
fn chromium(url: &str, extra: &[&str]) -> (String, String) {
    let profile = tempfile::tempdir().unwrap();
    let out = Command::new("chromium")
        .args([
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-extensions",
            "--enable-logging=stderr",
            "--v=0",
            &format!("--user-data-dir={}", profile.path().display()),
        ])
        .args(extra)
        .arg(url)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "these tests need Debian's chromium ({e}); .ci/run installs it, or apt-get install chromium"
            )
        });
    assert!(out.status.success(), "chromium failed on {url}: {}", String::from_utf8_lossy(&out.stderr));
    (String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// The DOM of `page` after its scripts ran, failing on any console message.
fn dom(page: &Path, hash: &str) -> String {
    let url = format!("file://{}{hash}", page.display());
    let (dom, log) = chromium(&url, &["--dump-dom"]);
    let console: Vec<&str> =
        log.lines().filter(|l| l.contains("CONSOLE") || l.contains("Uncaught")).collect();
    assert!(console.is_empty(), "{url} logged to the console:\n{}", console.join("\n"));
    assert!(dom.contains("</html>"), "{url}: no DOM:\n{dom}");
    dom
}

/// HTML text or attribute value back to text.
fn unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&nbsp;", "\u{a0}")
        .replace("&amp;", "&")
}

/// Every element `<tag …>inner</tag>` (no nesting of the same tag) in `html`, as (open tag, inner).
fn elements<'a>(html: &'a str, tag: &str) -> Vec<(&'a str, &'a str)> {
    let (open, close) = (format!("<{tag} "), format!("</{tag}>"));
    let mut out = Vec::new();
    let mut rest = html;
    while let Some(at) = rest.find(&open) {
        let from = &rest[at..];
        let end_open = from.find('>').unwrap();
        let end = from.find(&close).unwrap();
        out.push((&from[..end_open], &from[end_open + 1..end]));
        rest = &from[end + close.len()..];
    }
    out
}

/// Attribute `name` of an open tag.
fn attr(open: &str, name: &str) -> Option<String> {
    let key = format!(" {name}=\"");
    let at = open.find(&key)? + key.len();
    Some(unescape(&open[at..at + open[at..].find('"')?]))
}

/// The part of `html` from the element with `id` to the end of its section.
fn section<'a>(html: &'a str, id: &str) -> &'a str {
    let at = html.find(&format!("id=\"{id}\"")).unwrap_or_else(|| panic!("no #{id}"));
    let rest = &html[at..];
    &rest[..rest.find("</section>").unwrap_or(rest.len())]
}

fn shown(token: &str) -> String {
    token.replace('\n', "↵").replace('\t', "→")
}

fn sweep(site: &Site, name: &str) -> SweepFile {
    SweepFile::read(&site.path(name)).unwrap()
}

/// (top value − mean) / SD per neuron, as the index computes it.
fn selectivity(site: &Site) -> Vec<f64> {
    let v = sweep(site, "vocab/vocab_topk.safetensors");
    let p = Path::new("vocab");
    let top = v.f32s("top_values", &[WIDTH, K], p).unwrap();
    let mean = v.f32s("mean", &[WIDTH], p).unwrap();
    let std = v.f32s("std", &[WIDTH], p).unwrap();
    (0..WIDTH).map(|n| (top[n * K] as f64 - mean[n] as f64) / std[n] as f64).collect()
}

/// The neurons of the index's rows, in the DOM's order.
fn row_order(dom: &str) -> Vec<usize> {
    elements(dom, "tr")
        .iter()
        .filter_map(|(open, _)| attr(open, "id"))
        .map(|id| id[1..].parse().unwrap())
        .collect()
}

#[test]
fn the_index_lists_every_neuron_and_sorts_like_a_click() {
    let site = Site::get();
    let index = site.path("site/index.html");
    let plain = dom(&index, "");
    assert!(plain.contains("data-ready=\"yes\""), "the index's script did not finish");
    assert_eq!(row_order(&plain), (0..WIDTH).collect::<Vec<_>>());
    assert!(plain.contains(&format!("{WIDTH} of {WIDTH} neurons")));
    assert!(plain.contains("hook <b>blocks.8.mlp.hook_pre</b>"), "the header names the hook");

    // The values of each row equal the files'.
    let sel = selectivity(site);
    for (open, inner) in elements(&plain, "tr") {
        let n: usize = attr(open, "id").unwrap()[1..].parse().unwrap();
        let cells = elements(inner, "td");
        let v: f64 = attr(cells[1].0, "data-v").unwrap().parse().unwrap();
        assert_eq!(v, sel[n], "neuron {n}: selectivity");
    }

    // Sorted by selectivity, highest first (what the first click on its column does).
    let sorted = dom(&index, "#sort=selectivity");
    let mut expected: Vec<usize> = (0..WIDTH).collect();
    expected.sort_by(|&a, &b| sel[b].total_cmp(&sel[a]).then(a.cmp(&b)));
    assert_eq!(row_order(&sorted), expected);
    assert!(sorted.contains("data-key=\"selectivity\" aria-sort=\"descending\""));

    // Sorted by the challenge's t, lowest first.
    let csv = fs::read_to_string(site.path("challenge/neurons.csv")).unwrap();
    let header: Vec<&str> = csv.lines().next().unwrap().split(',').collect();
    let ti = header.iter().position(|h| *h == "t").unwrap();
    let t: Vec<f64> = csv.lines().skip(1).map(|l| l.split(',').nth(ti).unwrap().parse().unwrap()).collect();
    let mut expected: Vec<usize> = (0..WIDTH).collect();
    expected.sort_by(|&a, &b| t[a].total_cmp(&t[b]).then(a.cmp(&b)));
    assert_eq!(row_order(&dom(&index, "#sort=t-asc")), expected);
}

/// Real clicks on a column header and typing in the filter box: a copy of the index with a
/// script appended that clicks and types as a reader would, and writes what the table then shows
/// into the DOM.
#[test]
fn clicking_a_header_sorts_and_typing_filters() {
    let site = Site::get();
    let index = fs::read_to_string(site.path("site/index.html")).unwrap();
    let driver = r#"<script>
{
const order = () => Array.from(document.querySelectorAll('#neurons tbody tr')).map(r => r.id.slice(1)).join(',');
const header = document.querySelector('th[data-key="selectivity"]');
header.click();
document.body.dataset.first = order();
header.click();
document.body.dataset.second = order();
const filter = document.getElementById('filter');
filter.value = 'no token reads like this';
filter.dispatchEvent(new Event('input'));
document.body.dataset.nothing = document.getElementById('shown').textContent;
filter.value = '';
filter.dispatchEvent(new Event('input'));
document.body.dataset.everything = document.getElementById('shown').textContent;
}
</script>
</body>"#;
    assert_eq!(index.matches("</body>").count(), 1);
    let page = site.path("site/clicked.html");
    fs::write(&page, index.replace("</body>", driver)).unwrap();
    let dom = dom(&page, "");
    fs::remove_file(&page).unwrap();
    let body = elements(&dom, "body").first().map(|(open, _)| open.to_string()).expect("a body");
    let list = |name: &str| -> Vec<usize> {
        attr(&body, &format!("data-{name}"))
            .unwrap_or_else(|| panic!("the driver set no {name}"))
            .split(',')
            .map(|n| n.parse().unwrap())
            .collect()
    };
    let sel = selectivity(site);
    let mut descending: Vec<usize> = (0..WIDTH).collect();
    descending.sort_by(|&a, &b| sel[b].total_cmp(&sel[a]).then(a.cmp(&b)));
    let mut ascending: Vec<usize> = (0..WIDTH).collect();
    ascending.sort_by(|&a, &b| sel[a].total_cmp(&sel[b]).then(a.cmp(&b)));
    assert_eq!(list("first"), descending, "the first click sorts highest first");
    assert_eq!(list("second"), ascending, "the second click reverses");
    assert_eq!(attr(&body, "data-nothing").unwrap(), format!("0 of {WIDTH} neurons"));
    assert_eq!(attr(&body, "data-everything").unwrap(), format!("{WIDTH} of {WIDTH} neurons"));
}

#[test]
fn a_neuron_page_shows_the_sweeps_values_and_tokens() {
    let site = Site::get();
    let sel = selectivity(site);
    let most = (0..WIDTH).max_by(|&a, &b| sel[a].total_cmp(&sel[b])).unwrap();
    let contexts: Vec<Value> = fs::read_to_string(site.path("corpus/contexts.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let samples: Vec<Value> = fs::read_to_string(site.path("corpus/samples.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let corpus = sweep(site, "corpus/corpus_topk.safetensors");
    let n_tokens: i64 = corpus.metadata["n_tokens"].parse().unwrap();
    let vocab = sweep(site, "vocab/vocab_topk.safetensors");
    let logits = sweep(site, "logits/logits_topk.safetensors");
    let tokenizer =
        neoprobe::tokenize::Tokenizer::load(&repo_root().join("fixtures/tiny-neo/tokenizer.json")).unwrap();
    for n in [0, most, WIDTH - 1] {
        let page = dom(&site.path(&format!("site/neurons/{n}.html")), "");
        assert!(page.contains(&format!("<h1>Neuron {n} ")));
        assert!(page.contains("../index.html#n"), "neuron {n}: a link back to the index");

        // Top contexts: each shown token and its value, the peak marked.
        let shown_contexts: Vec<(&str, &str)> = elements(section(&page, "contexts"), "div")
            .into_iter()
            .filter(|(o, _)| o.contains("class=\"ctx\""))
            .collect();
        let lines: Vec<&Value> = contexts.iter().filter(|l| l["neuron"] == n).collect();
        assert_eq!(shown_contexts.len(), lines.len(), "neuron {n}: one row per context");
        assert_eq!(lines.len(), K);
        for ((open, inner), line) in shown_contexts.iter().zip(&lines) {
            check_context(open, inner, line, &format!("neuron {n} rank {}", line["rank"]));
            assert_eq!(attr(open, "data-rank").unwrap(), line["rank"].to_string());
        }

        // Samples: every sampled sequence, under its interval, with the interval's count.
        let sample_section = section(&page, "samples");
        let mine: Vec<&Value> = samples.iter().filter(|l| l["neuron"] == n).collect();
        let shown_samples: Vec<(&str, &str)> = elements(sample_section, "div")
            .into_iter()
            .filter(|(o, _)| o.contains("class=\"ctx\""))
            .collect();
        assert_eq!(shown_samples.len(), mine.len(), "neuron {n}: samples");
        assert!(!mine.is_empty());
        for (open, inner) in &shown_samples {
            let (interval, slot) = (attr(open, "data-interval").unwrap(), attr(open, "data-slot").unwrap());
            let line = mine
                .iter()
                .find(|l| {
                    l["interval"].as_u64() == interval.parse().ok() && l["slot"].as_u64() == slot.parse().ok()
                })
                .unwrap();
            check_context(open, inner, line, &format!("neuron {n} sample {interval}/{slot}"));
        }
        let counts = corpus.i64s("sample_count", &[WIDTH, 33], Path::new("corpus")).unwrap();
        for (open, _) in elements(sample_section, "h3") {
            let interval: usize = attr(open, "data-interval").unwrap().parse().unwrap();
            assert_eq!(attr(open, "data-count").unwrap(), counts[n * 33 + interval].to_string());
        }

        // The histogram counts every token of the corpus.
        let histogram = section(&page, "histogram");
        let total: i64 =
            attr(histogram.split("<svg").nth(1).unwrap(), "data-total").unwrap().parse().unwrap();
        assert_eq!(total, n_tokens, "neuron {n}: histogram total");
        let bars: i64 = elements(histogram, "rect")
            .iter()
            .map(|(o, _)| attr(o, "data-count").unwrap().parse::<i64>().unwrap())
            .sum();
        assert_eq!(bars, n_tokens, "neuron {n}: the bars add up to every token");

        // Tokens alone and the logit effects: ids, texts and values of the files.
        for (file, table, ids, values) in [
            (&vocab, "top", "top_ids", "top_values"),
            (&vocab, "bottom", "bottom_ids", "bottom_values"),
            (&logits, "promotes", "top_ids", "top_values"),
            (&logits, "suppresses", "bottom_ids", "bottom_values"),
        ] {
            let ids = &file.i32s(ids, &[WIDTH, K], Path::new(table)).unwrap()[n * K..(n + 1) * K];
            let values = &file.f32s(values, &[WIDTH, K], Path::new(table)).unwrap()[n * K..(n + 1) * K];
            let at = page.find(&format!("id=\"{table}\"")).unwrap();
            let rows = elements(&page[at..page[at..].find("</table>").unwrap() + at], "tr");
            assert_eq!(rows.len(), K, "neuron {n}: {table}");
            for (((open, inner), &id), &v) in rows.iter().zip(ids).zip(values) {
                assert_eq!(attr(open, "data-id").unwrap(), id.to_string(), "neuron {n}: {table}");
                let cells = elements(inner, "td");
                let code = cells[0].1.trim_start_matches("<code>").trim_end_matches("</code>");
                assert_eq!(unescape(code), shown(&tokenizer.token_text(id as u32)), "neuron {n}: {table}");
                assert_eq!(attr(cells[1].0, "title").unwrap().parse::<f32>().unwrap(), v);
            }
        }

        // The challenge's words, each category with all its words and their values.
        let challenge = section(&page, "challenge");
        assert_eq!(challenge.matches("<li>").count(), 200, "neuron {n}: the challenge's 200 words");
        assert!(
            challenge.contains("data-category=\"verbs\"") && challenge.contains("data-category=\"nouns\"")
        );
    }
}

/// One shown context against its line of `contexts.jsonl` or `samples.jsonl`: the tokens around
/// the peak, each with its exact activation, the peak marked.
fn check_context(open: &str, inner: &str, line: &Value, what: &str) {
    assert_eq!(
        attr(open, "data-value").unwrap().parse::<f32>().unwrap(),
        line["value"].as_f64().unwrap() as f32,
        "{what}"
    );
    let start: usize = attr(open, "data-start").unwrap().parse().unwrap();
    let tokens: Vec<String> = serde_json::from_value(line["tokens"].clone()).unwrap();
    let activations: Vec<f32> = serde_json::from_value(line["activations"].clone()).unwrap();
    let position = line["position"].as_u64().unwrap() as usize;
    let shown_tokens = elements(inner, "i");
    assert!(!shown_tokens.is_empty(), "{what}");
    for (i, (open, text)) in shown_tokens.iter().enumerate() {
        let p = start + i;
        assert_eq!(unescape(text), shown(&tokens[p]), "{what}: token {p}");
        assert_eq!(
            attr(open, "title").unwrap().parse::<f32>().unwrap(),
            activations[p],
            "{what}: activation {p}"
        );
        let class = attr(open, "class").unwrap();
        assert_eq!(class.ends_with(" p"), p == position, "{what}: the peak is marked at {position} only");
    }
    assert!((start..start + shown_tokens.len()).contains(&position), "{what}: the peak is shown");
    let peak = activations.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    assert_eq!(activations[position], peak, "{what}: the peak is the sequence's maximum");
}

#[test]
fn a_screenshot_of_a_neuron_page_renders() {
    let site = Site::get();
    let out = tempfile::tempdir().unwrap();
    let png = out.path().join("neuron.png");
    let url = format!("file://{}", site.path("site/neurons/3.html").display());
    let (_, log) = chromium(&url, &[&format!("--screenshot={}", png.display()), "--window-size=1200,900"]);
    assert!(!log.contains("CONSOLE"), "{log}");
    let bytes = fs::read(&png).unwrap();
    assert!(bytes.starts_with(b"\x89PNG") && bytes.len() > 10_000, "a screenshot of {} bytes", bytes.len());
}

#[test]
fn the_site_loads_nothing_from_the_network() {
    let site = Site::get();
    let mut pages = vec![site.path("site/index.html"), site.path("site/style.css")];
    pages.extend(fs::read_dir(site.path("site/neurons")).unwrap().map(|e| e.unwrap().path()));
    assert_eq!(pages.len(), WIDTH + 2);
    for page in pages {
        let text = fs::read_to_string(&page).unwrap();
        for needle in ["src=\"http", "href=\"http", "src=http", "href=http", "url(", "@import", "fetch("] {
            assert!(!text.contains(needle), "{} holds {needle}", page.display());
        }
    }
}

#[test]
fn bad_inputs_fail_with_one_line_and_leave_nothing_behind() {
    let site = Site::get();
    let work = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let cwd = work.path();
    let copy = |from: &str, to: &str| {
        fs::create_dir_all(cwd.join(to)).unwrap();
        for e in fs::read_dir(site.path(from)).unwrap() {
            let e = e.unwrap();
            fs::copy(e.path(), cwd.join(to).join(e.file_name())).unwrap();
        }
    };
    let with_entry = |dir: &str, file: &str, key: &str, value: &str| {
        let path = cwd.join(dir).join(file);
        let mut f = SweepFile::read(&path).unwrap();
        f.metadata.insert(key.into(), value.into());
        f.write(&path).unwrap();
    };
    copy("vocab", "vocab");
    copy("corpus", "corpus");
    copy("vocab", "other_model");
    with_entry("other_model", "vocab_topk.safetensors", "model_sha256", "0000");
    copy("corpus", "other_hook");
    with_entry("other_hook", "corpus_topk.safetensors", "hook", "blocks.9.mlp.hook_pre");
    fs::create_dir(cwd.join("empty")).unwrap();
    fs::write(cwd.join("a_file"), "x").unwrap();
    for (what, args, needle) in [
        ("not a sweep", vec!["pages", "empty", "--out-dir", "site"], "is no sweep or challenge output"),
        ("different models", vec!["pages", "other_model", "corpus", "--out-dir", "site"], "different models"),
        (
            "different hooks",
            vec!["pages", "vocab", "other_hook", "--out-dir", "site"],
            "pass outputs of one hook",
        ),
        (
            "two of a kind",
            vec!["pages", "vocab", "other_model", "--out-dir", "site"],
            "pass one output of each kind",
        ),
        (
            "unwritable site folder",
            vec!["pages", "vocab", "--out-dir", "a_file/site"],
            "is a file, not a folder",
        ),
    ] {
        let before: Vec<_> = fs::read_dir(cwd).unwrap().map(|e| e.unwrap().file_name()).collect();
        let out = neoprobe(cwd, &args);
        assert_eq!(out.status.code(), Some(1), "{what}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        let lines: Vec<&str> = stderr.lines().collect();
        assert_eq!(lines.len(), 1, "{what}: {stderr}");
        assert!(lines[0].starts_with("error: ") && lines[0].contains(needle), "{what}: {}", lines[0]);
        let after: Vec<_> = fs::read_dir(cwd).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(before.len(), after.len(), "{what}: nothing left behind");
    }
}

#[test]
fn building_into_an_existing_site_needs_force_and_replaces_it() {
    let site = Site::get();
    let cwd = site.dir.path();
    let out = neoprobe(cwd, &["pages", "vocab", "corpus", "--out-dir", "site"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--force"));
    let copy = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let again = copy.path().join("again");
    let again_s = again.to_str().unwrap();
    assert_success(&neoprobe(cwd, &["pages", "vocab", "corpus", "--out-dir", again_s]), "pages");
    fs::write(again.join("keep.txt"), "mine").unwrap();
    assert_success(&neoprobe(cwd, &["pages", "logits", "--out-dir", again_s, "--force"]), "pages --force");
    assert_eq!(fs::read_to_string(again.join("keep.txt")).unwrap(), "mine");
    let index = fs::read_to_string(again.join("index.html")).unwrap();
    assert!(!index.contains("selectivity"), "the index of the logit sweep alone");
    assert_eq!(fs::read_dir(again.join("neurons")).unwrap().count(), WIDTH);
    assert_eq!(fs::read_dir(copy.path()).unwrap().count(), 1, "no staging folder left");
}

#[test]
fn help_snapshot() {
    let cwd = tempfile::tempdir().unwrap();
    let out = neoprobe(cwd.path(), &["pages", "--help"]);
    assert_success(&out, "pages --help");
    insta::assert_snapshot!("pages_help", String::from_utf8_lossy(&out.stdout));
}

#[test]
fn every_link_of_the_site_leads_to_a_file_of_the_site() {
    let site = Site::get();
    let root = site.path("site");
    let mut pages = vec![root.join("index.html")];
    pages.extend([0, 1, WIDTH - 1].map(|n| root.join(format!("neurons/{n}.html"))));
    for page in pages {
        let html = fs::read_to_string(&page).unwrap();
        let mut links = 0;
        for part in html.split("href=\"").skip(1) {
            let target = &part[..part.find('"').unwrap()];
            let (file, fragment) = target.split_once('#').unwrap_or((target, ""));
            let path = page.parent().unwrap().join(file);
            assert!(path.is_file(), "{}: {target} leads nowhere", page.display());
            if let Some(row) = fragment.strip_prefix('n') {
                let index = fs::read_to_string(&path).unwrap();
                assert!(index.contains(&format!("<tr id=n{row}>")), "{}: {target}", page.display());
            }
            links += 1;
        }
        assert!(links > 1, "{}: links to the style sheet and other pages", page.display());
    }
}
