//! Interventions: a hook's value changed before anything downstream reads it (TransformerLens'
//! meaning of a forward hook that returns a new value). Zero and mean ablation, setting, scaling,
//! steering (adding a vector) and patching (values of the same hook from another run), each
//! limited to columns (neurons, or heads of `attn.hook_q|k|v|z`) and to positions.
//!
//! The grammar, one intervention per flag (`HOOK` may be a pattern such as `blocks.*.mlp.hook_post`):
//!
//! ```text
//! --ablate      TARGET                 zero
//! --mean-ablate TARGET=FILE            the per-column means of FILE ([width], or [n, width]: the mean of its rows)
//! --set         TARGET=VALUE           a constant
//! --scale       TARGET=FACTOR          multiplied
//! --steer       TARGET=FILE[*SCALE]    SCALE × the vector in FILE ([width]) added
//! --patch       TARGET=FILE            the same hook's values from another run (extract --pool none)
//! TARGET   = HOOK [@POSITIONS] [:COLUMNS]
//! POSITIONS = P,P,…     positions inside each sequence; negative counts from its end (-1: the last)
//! COLUMNS   = C,A..B,head=H,…   columns, half-open ranges of columns, whole heads
//! ```
//!
//! FILE is a float32 `.npy` or a `.safetensors` file (the tensor named by the hook, else its only
//! tensor). The kernel that applies them is `shaders/intervene.wgsl`.

use super::{GptNeoConfig, Hook, HookPoint};
use crate::input_arrays::{read_array, ArrayFile};
use anyhow::{bail, Context, Result};
use std::path::Path;
use std::sync::Arc;

/// What an intervention does to each value it touches.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// `y = 0`.
    Zero,
    /// `y = value`.
    Set(f32),
    /// `y = means[c]` (one value per column of the hook).
    Mean(Vec<f32>),
    /// `y = factor · y`.
    Scale(f32),
    /// `y = y + scale · vector[c]`.
    Add { vector: Vec<f32>, scale: f32 },
    /// `y = source[the same sequence and position, c]` from another run.
    Patch(PatchSource),
}

/// A tensor of a hook from another run: one row per token, the run's sequences end to end.
#[derive(Clone, Debug, PartialEq)]
pub struct PatchSource {
    pub file: String,
    /// `[tokens, width]`.
    pub values: Vec<f32>,
    pub width: usize,
    /// The other run's sequence lengths, where the file says them (extract's `token_ids`).
    pub lengths: Option<Vec<usize>>,
    /// Where each sequence's rows start in `values`: set by [`Interventions::for_run`].
    pub offsets: Vec<usize>,
}

/// Which flag an intervention came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Ablate,
    MeanAblate,
    Set,
    Scale,
    Steer,
    Patch,
}

impl Kind {
    pub fn flag(self) -> &'static str {
        match self {
            Kind::Ablate => "--ablate",
            Kind::MeanAblate => "--mean-ablate",
            Kind::Set => "--set",
            Kind::Scale => "--scale",
            Kind::Steer => "--steer",
            Kind::Patch => "--patch",
        }
    }

    fn form(self) -> &'static str {
        match self {
            Kind::Ablate => "HOOK[@POSITIONS][:COLUMNS]",
            Kind::MeanAblate | Kind::Patch => "HOOK[@POSITIONS][:COLUMNS]=FILE",
            Kind::Set => "HOOK[@POSITIONS][:COLUMNS]=VALUE",
            Kind::Scale => "HOOK[@POSITIONS][:COLUMNS]=FACTOR",
            Kind::Steer => "HOOK[@POSITIONS][:COLUMNS]=FILE[*SCALE]",
        }
    }
}

/// One intervention on one hook.
#[derive(Clone, Debug, PartialEq)]
pub struct Intervention {
    pub hook: Hook,
    /// Columns of the hook, ascending and distinct; `None`: all.
    pub columns: Option<Vec<usize>>,
    /// Positions inside each sequence (negative: from its end); `None`: all.
    pub positions: Option<Vec<i64>>,
    /// One position per sequence of the run instead (sequence `s` at `per_sequence[s]` only):
    /// many single-position patches in one batch (`neoprobe patch`).
    pub per_sequence: Option<Vec<usize>>,
    /// Only the sequences of the run in this range (`None`: all): many differently ablated
    /// copies of the same inputs in one batch (the challenge's causal test).
    pub sequences: Option<std::ops::Range<usize>>,
    pub action: Action,
    /// The flag and its text, for errors and metadata.
    pub spec: String,
}

/// The interventions of one forward, in the order they were given (applied in that order where
/// several touch one hook).
#[derive(Clone, Debug, Default)]
pub struct Interventions(pub Arc<Vec<Intervention>>);

impl Interventions {
    pub fn new(list: Vec<Intervention>) -> Interventions {
        Interventions(Arc::new(list))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Intervention> {
        self.0.iter()
    }

    /// The interventions the flags ask for (kind and text, in order), read and checked against
    /// `config`, then bound to a run of sequences of `lengths` (see [`Interventions::for_run`]).
    pub fn from_flags(
        flags: &[(Kind, String)],
        config: &GptNeoConfig,
        lengths: &[usize],
    ) -> Result<Interventions> {
        let mut list = Vec::new();
        for (kind, text) in flags {
            list.extend(Intervention::parse(*kind, text, config)?);
        }
        Interventions::new(list).for_run(lengths)
    }

    /// These interventions for a run of sequences of `lengths`: every patch is checked against
    /// them (the other run must have as many sequences, each as long: clean and corrupt must
    /// tokenize to the same lengths) and learns where each sequence's rows start.
    pub fn for_run(&self, lengths: &[usize]) -> Result<Interventions> {
        let total: usize = lengths.iter().sum();
        let mut bound = Vec::with_capacity(self.0.len());
        for i in self.iter() {
            let mut i = i.clone();
            bound.push(i.clone());
            let Action::Patch(source) = &mut i.action else { continue };
            match &source.lengths {
                Some(theirs) => {
                    if theirs.len() != lengths.len() {
                        bail!(
                            "{}: {} holds {} sequences but this run has {}; patch from a run of the same inputs",
                            i.spec,
                            source.file,
                            theirs.len(),
                            lengths.len()
                        );
                    }
                    if let Some(s) = (0..lengths.len()).find(|&s| theirs[s] != lengths[s]) {
                        bail!(
                            "{}: sequence {s} has {} tokens in {} but {} here; the two runs must tokenize to the same lengths",
                            i.spec,
                            theirs[s],
                            source.file,
                            lengths[s]
                        );
                    }
                }
                None => {
                    let rows = source.values.len() / source.width;
                    if rows != total {
                        bail!(
                            "{}: {} has {rows} rows, not one per token of this run ({total} tokens); patch from a run of the same inputs",
                            i.spec,
                            source.file
                        );
                    }
                }
            }
            source.offsets =
                lengths.iter().scan(0, |next, n| Some(std::mem::replace(next, *next + n))).collect();
            *bound.last_mut().expect("pushed above") = i;
        }
        Ok(Interventions::new(bound))
    }

    /// The hooks intervened on, in the forward's order.
    pub fn hooks(&self) -> Vec<Hook> {
        let mut hooks: Vec<Hook> = self.iter().map(|i| i.hook).collect();
        hooks.sort();
        hooks.dedup();
        hooks
    }
}

/// The parts of a target: `HOOK[@POSITIONS][:COLUMNS]`.
struct Target<'s> {
    hook: &'s str,
    positions: Option<&'s str>,
    columns: Option<&'s str>,
}

fn split_target(text: &str) -> Result<Target<'_>> {
    let end = text.find(['@', ':']).unwrap_or(text.len());
    let (hook, mut rest) = text.split_at(end);
    let (mut positions, mut columns) = (None, None);
    while let Some(mark) = rest.chars().next() {
        let body = &rest[1..];
        let next = body.find(['@', ':']).unwrap_or(body.len());
        let part = &body[..next];
        let slot = if mark == '@' { &mut positions } else { &mut columns };
        if slot.replace(part).is_some() {
            bail!("{mark} is given twice");
        }
        rest = &body[next..];
    }
    if hook.is_empty() {
        bail!("no hook name before {}", rest.chars().next().map_or("the end".to_string(), |c| c.to_string()));
    }
    Ok(Target { hook, positions, columns })
}

fn parse_positions(text: &str) -> Result<Vec<i64>> {
    let mut positions = Vec::new();
    for item in text.split(',') {
        let p: i64 =
            item.trim().parse().map_err(|_| anyhow::anyhow!("position {item:?} is not an integer"))?;
        if !positions.contains(&p) {
            positions.push(p);
        }
    }
    Ok(positions)
}

/// Columns of `hook` named by `text`: `C`, `A..B` (half-open) and `head=H`.
fn parse_columns(text: &str, hook: Hook, config: &GptNeoConfig) -> Result<Vec<usize>> {
    let width = hook.width(config);
    let mut columns = Vec::new();
    for item in text.split(',').map(str::trim) {
        let number = |s: &str, what: &str| -> Result<usize> {
            s.parse().map_err(|_| anyhow::anyhow!("{what} {s:?} is not a non-negative integer"))
        };
        if let Some(head) = item.strip_prefix("head=") {
            let head = number(head, "head")?;
            let has_heads = matches!(
                hook,
                Hook::Block {
                    point: HookPoint::AttnQ | HookPoint::AttnK | HookPoint::AttnV | HookPoint::AttnZ,
                    ..
                }
            );
            if !has_heads {
                bail!("head={head} applies to attn.hook_q, hook_k, hook_v and hook_z; {hook} has no heads");
            }
            if head >= config.num_heads {
                bail!(
                    "head {head} is out of range: the model has {} heads (0 to {})",
                    config.num_heads,
                    config.num_heads - 1
                );
            }
            let d = config.head_dim();
            columns.extend(head * d..(head + 1) * d);
        } else if let Some((a, b)) = item.split_once("..") {
            let (a, b) = (number(a, "column")?, number(b, "column")?);
            if a >= b || b > width {
                bail!("column range {a}..{b} is empty or past {hook}'s width {width}");
            }
            columns.extend(a..b);
        } else {
            let c = number(item, "column")?;
            if c >= width {
                bail!("column {c} is out of range: {hook} has {width} columns (0 to {})", width - 1);
            }
            columns.push(c);
        }
    }
    columns.sort_unstable();
    columns.dedup();
    Ok(columns)
}

/// Hooks an intervention can act on: values written to a buffer of their own that the rest of the
/// forward then reads. Anything else is an error saying why and what to use instead.
pub fn check_intervenable(hook: Hook) -> Result<()> {
    let why = match hook {
        Hook::Block { point: HookPoint::AttnPattern, .. } => {
            Some("the kernels never store the probabilities; intervene on attn.hook_q, hook_k or hook_z")
        }
        Hook::Logits => Some("nothing in the model reads the logits"),
        _ => None,
    };
    match why {
        Some(why) => bail!("interventions on {hook} are not supported: {why}"),
        None => Ok(()),
    }
}

impl Intervention {
    /// The interventions a flag of `kind` with `text` asks for (one per hook its pattern names),
    /// checked against `config` and with its file read.
    pub fn parse(kind: Kind, text: &str, config: &GptNeoConfig) -> Result<Vec<Intervention>> {
        let spec = format!("{} {text}", kind.flag());
        Intervention::parse_inner(kind, text, config, &spec)
            .with_context(|| format!("{spec} (the form is {} {})", kind.flag(), kind.form()))
    }

    fn parse_inner(kind: Kind, text: &str, config: &GptNeoConfig, spec: &str) -> Result<Vec<Intervention>> {
        // The `=` before the value: the first that does not belong to a `head=H` column item.
        let split = text
            .match_indices('=')
            .map(|(at, _)| at)
            .find(|&at| !text[..at].ends_with("head"))
            .map(|at| (&text[..at], &text[at + 1..]));
        let (target, argument) = match (kind, split) {
            (Kind::Ablate, None) => (text, None),
            (Kind::Ablate, Some(_)) => {
                bail!("--ablate takes no value (it sets to zero); use --set for a value")
            }
            (_, Some((target, argument))) if !argument.is_empty() => (target, Some(argument)),
            _ => bail!("no value after ="),
        };
        let target = split_target(target)?;
        let hooks = Hook::expand(target.hook, config)?;
        let positions = target.positions.map(parse_positions).transpose()?;
        let mut list = Vec::new();
        for hook in hooks {
            check_intervenable(hook)?;
            let width = hook.width(config);
            let columns = target.columns.map(|c| parse_columns(c, hook, config)).transpose()?;
            let action = match (kind, argument) {
                (Kind::Ablate, _) => Action::Zero,
                (Kind::Set, Some(v)) => Action::Set(parse_number(v, "value")?),
                (Kind::Scale, Some(v)) => Action::Scale(parse_number(v, "factor")?),
                (Kind::MeanAblate, Some(file)) => {
                    let array = read_array(Path::new(file), Some(&hook.to_string()))?;
                    Action::Mean(column_means(&array, width, file)?)
                }
                (Kind::Steer, Some(arg)) => {
                    let (file, scale) = match arg.rsplit_once('*') {
                        Some((file, scale)) => (file, parse_number(scale, "scale")?),
                        None => (arg, 1.0),
                    };
                    let array = read_array(Path::new(file), Some(&hook.to_string()))?;
                    if array.values.len() != width {
                        bail!(
                            "{file} holds {} values of shape {:?}; a steering vector of {hook} has {width}",
                            array.values.len(),
                            array.shape
                        );
                    }
                    Action::Add { vector: array.values, scale }
                }
                (Kind::Patch, Some(file)) => {
                    let array = read_array(Path::new(file), Some(&hook.to_string()))?;
                    let row = array.shape.last().copied().unwrap_or(0);
                    if array.shape.len() != 2 || row != width {
                        bail!(
                            "{file} holds an array of shape {:?}; a patch of {hook} is [tokens, {width}] (extract --pool none)",
                            array.shape
                        );
                    }
                    Action::Patch(PatchSource {
                        file: file.to_string(),
                        values: array.values,
                        width,
                        lengths: array.lengths,
                        offsets: Vec::new(),
                    })
                }
                (_, None) => unreachable!("every kind but --ablate has a value"),
            };
            list.push(Intervention {
                hook,
                columns: columns.clone(),
                positions: positions.clone(),
                per_sequence: None,
                sequences: None,
                action,
                spec: spec.to_string(),
            });
        }
        Ok(list)
    }

    /// The kernel's `keep` and `scale`, the values of its source and whether they are one row per
    /// touched token: `touched` lists each touched token's (sequence of the run, position).
    pub fn kernel_terms(&self, width: usize, touched: &[(usize, usize)]) -> (f32, f32, Vec<f32>, bool) {
        match &self.action {
            Action::Zero => (0.0, 0.0, vec![0.0; width], false),
            Action::Set(v) => (0.0, 1.0, vec![*v; width], false),
            Action::Mean(means) => (0.0, 1.0, means.clone(), false),
            Action::Scale(f) => (*f, 0.0, vec![0.0; width], false),
            Action::Add { vector, scale } => (1.0, *scale, vector.clone(), false),
            Action::Patch(source) => {
                let mut rows = Vec::with_capacity(touched.len() * width);
                for &(s, p) in touched {
                    let r = source.offsets[s] + p;
                    rows.extend_from_slice(&source.values[r * width..(r + 1) * width]);
                }
                (0.0, 1.0, rows, true)
            }
        }
    }

    /// This intervention on the host, as shaders/intervene.wgsl does it on the GPU: `values` is
    /// `[batch tokens, row_width]` and the hook its columns `col_base..col_base + width`. For the
    /// f64 reference and for callers that change values between kernels.
    pub fn apply(
        &self,
        values: &mut [f32],
        row_width: usize,
        col_base: usize,
        width: usize,
        batch: &super::Batch,
    ) {
        let columns: Vec<usize> = match &self.columns {
            Some(c) => c.clone(),
            None => (0..width).collect(),
        };
        let (rows, touched) = self.touched_tokens(batch);
        let (keep, scale, source, per_row) = self.kernel_terms(width, &touched);
        for (i, &t) in rows.iter().enumerate() {
            let from = if per_row { &source[i * width..(i + 1) * width] } else { &source[..width] };
            for &c in &columns {
                let y = &mut values[t * row_width + col_base + c];
                let kept = if keep != 0.0 { keep * *y } else { 0.0 };
                *y = kept + scale * from[c];
            }
        }
    }

    /// The tokens of `batch` this intervention touches: their rows in the batch, and each one's
    /// (sequence of the run, position).
    pub fn touched_tokens(&self, batch: &super::Batch) -> (Vec<usize>, Vec<(usize, usize)>) {
        let mut rows = Vec::new();
        let mut touched = Vec::new();
        for s in 0..batch.n_sequences() {
            let range = batch.sequence(s);
            let len = range.len();
            let sequence = batch.first_sequence + s;
            if self.sequences.as_ref().is_some_and(|range| !range.contains(&sequence)) {
                continue;
            }
            for (p, t) in range.enumerate() {
                let touches = match &self.per_sequence {
                    Some(at) => at.get(sequence) == Some(&p),
                    None => self.touches_position(p, len),
                };
                if touches {
                    rows.push(t);
                    touched.push((sequence, p));
                }
            }
        }
        (rows, touched)
    }

    /// Whether position `p` of a sequence of `len` tokens is touched.
    pub fn touches_position(&self, p: usize, len: usize) -> bool {
        match &self.positions {
            None => true,
            Some(list) => {
                list.iter().any(|&q| if q >= 0 { q as usize == p } else { len as i64 + q == p as i64 })
            }
        }
    }
}

fn parse_number(text: &str, what: &str) -> Result<f32> {
    let value: f32 = text.trim().parse().map_err(|_| anyhow::anyhow!("{what} {text:?} is not a number"))?;
    if !value.is_finite() {
        bail!("{what} {text:?} is not finite");
    }
    Ok(value)
}

/// The mean of each column of `array` (`[width]` as it is, or `[n, width]`), summed in f64.
fn column_means(array: &ArrayFile, width: usize, file: &str) -> Result<Vec<f32>> {
    let fits = array.shape.last() == Some(&width) && array.shape.len() <= 2 && !array.values.is_empty();
    if !fits {
        bail!("{file} holds an array of shape {:?}; means of a hook of width {width} are [{width}] or [n, {width}]", array.shape);
    }
    let n = array.values.len() / width;
    let mut sums = vec![0.0f64; width];
    for row in array.values.chunks_exact(width) {
        for (s, &v) in sums.iter_mut().zip(row) {
            *s += v as f64;
        }
    }
    Ok(sums.into_iter().map(|s| (s / n as f64) as f32).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::AttentionKind;

    fn config() -> GptNeoConfig {
        GptNeoConfig {
            vocab_size: 10,
            hidden_size: 8,
            num_layers: 4,
            num_heads: 2,
            intermediate_size: 32,
            window_size: 4,
            max_position_embeddings: 16,
            layer_norm_epsilon: 1e-5,
            attention_layers: vec![AttentionKind::Global; 4],
        }
    }

    #[test]
    fn targets_name_hooks_positions_columns_and_heads() {
        let list = Intervention::parse(Kind::Ablate, "blocks.2.mlp.hook_post:3,7,10..12", &config()).unwrap();
        assert_eq!(list.len(), 1);
        assert_eq!(list[0].hook, Hook::block(2, HookPoint::MlpPost));
        assert_eq!(list[0].columns, Some(vec![3, 7, 10, 11]));
        assert_eq!(list[0].positions, None);
        assert_eq!(list[0].action, Action::Zero);
        let z = Intervention::parse(Kind::Set, "blocks.1.attn.hook_z@-1,0:head=1=0.5", &config()).unwrap();
        let ablated =
            Intervention::parse(Kind::Ablate, "blocks.1.attn.hook_z:head=0,head=1", &config()).unwrap();
        assert_eq!(ablated[0].columns, Some((0..8).collect()));
        assert_eq!(z[0].columns, Some((4..8).collect()));
        assert_eq!(z[0].positions, Some(vec![-1, 0]));
        assert_eq!(z[0].action, Action::Set(0.5));
        assert!(z[0].touches_position(4, 5) && z[0].touches_position(0, 5) && !z[0].touches_position(2, 5));
        let all = Intervention::parse(Kind::Scale, "blocks.*.hook_resid_post=2", &config()).unwrap();
        assert_eq!(all.len(), 4);
        assert_eq!(all[3].action, Action::Scale(2.0));
    }

    #[test]
    fn malformed_specs_say_what_is_wrong_and_the_form() {
        let err = |kind, text: &str| format!("{:#}", Intervention::parse(kind, text, &config()).unwrap_err());
        let e = err(Kind::Ablate, "blocks.2.mlp.hook_post:32");
        assert!(
            e.contains("column 32 is out of range") && e.contains("--ablate HOOK[@POSITIONS][:COLUMNS]"),
            "{e}"
        );
        let e = err(Kind::Ablate, "blocks.9.mlp.hook_post");
        assert!(e.contains("4 blocks"), "{e}");
        let e = err(Kind::Ablate, "blocks.1.mlp.hook_post:head=0");
        assert!(e.contains("has no heads"), "{e}");
        let e = err(Kind::Ablate, "blocks.1.attn.hook_z:head=2");
        assert!(e.contains("head 2 is out of range"), "{e}");
        let e = err(Kind::Set, "blocks.1.hook_resid_pre=abc");
        assert!(e.contains("value \"abc\" is not a number"), "{e}");
        let e = err(Kind::Set, "blocks.1.hook_resid_pre");
        assert!(e.contains("no value after ="), "{e}");
        let e = err(Kind::Ablate, "blocks.1.attn.hook_pattern");
        assert!(e.contains("not supported") && e.contains("attn.hook_q"), "{e}");
        let e = err(Kind::Ablate, "blocks.1.hook_resid_pre@x");
        assert!(e.contains("position \"x\" is not an integer"), "{e}");
        let e = err(Kind::Steer, "blocks.1.hook_resid_pre=missing.npy*2");
        assert!(e.contains("missing.npy"), "{e}");
        let e = err(Kind::Ablate, "blocks.1.hook_resid_pre@1@2");
        assert!(e.contains("given twice"), "{e}");
    }

    #[test]
    fn patches_must_match_the_runs_sequences() {
        let patch = |lengths: Option<Vec<usize>>, n: usize| Intervention {
            hook: Hook::block(1, HookPoint::ResidPre),
            columns: None,
            positions: None,
            per_sequence: None,
            sequences: None,
            action: Action::Patch(PatchSource {
                file: "clean.safetensors".into(),
                values: vec![0.0; n * 8],
                width: 8,
                lengths,
                offsets: Vec::new(),
            }),
            spec: "--patch x".into(),
        };
        let ok = Interventions::new(vec![patch(Some(vec![2, 3]), 5)]);
        let bound = ok.for_run(&[2, 3]).unwrap();
        let Action::Patch(source) = &bound.0[0].action else { panic!("a patch") };
        assert_eq!(source.offsets, vec![0, 2]);
        let e = ok.for_run(&[3, 2]).unwrap_err().to_string();
        assert!(e.contains("sequence 0 has 2 tokens") && e.contains("same lengths"), "{e}");
        let unknown = Interventions::new(vec![patch(None, 5)]);
        assert!(unknown.for_run(&[2, 3]).is_ok());
        assert!(unknown.for_run(&[2, 2]).is_err());
    }
}
