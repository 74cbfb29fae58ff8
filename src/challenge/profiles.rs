//! What the challenge's top neurons respond to beyond the word lists, from the outputs of the
//! sweeps (`challenge --sweep DIR`): each neuron's top tokens alone (`sweep vocab`), its
//! max-activating contexts (`sweep corpus`) and the tokens it promotes and suppresses directly
//! (`sweep logits`), so that a reader can judge whether it is a part-of-speech neuron or
//! something else.

use super::findings::Findings;
use crate::model::{Hook, HookPoint};
use crate::sweep::corpus::{CorpusOutput, SequenceTokens};
use crate::sweep::files::{SweepFile, TokenLists};
use crate::sweep::{CONTEXTS_JSONL, CORPUS_TOPK, LOGITS_TOPK, VOCAB_TOPK};
use crate::text::{md, sig};
use crate::tokenize::Tokenizer;
use anyhow::{bail, Result};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// Tokens and contexts shown per neuron.
pub const PROFILE_TOKENS: usize = 8;
pub const PROFILE_CONTEXTS: usize = 3;
/// Tokens shown before and after the maximum of a context.
const CONTEXT_BEFORE: usize = 12;
const CONTEXT_AFTER: usize = 4;

/// The sweeps' outputs the report draws on, each from the folder it was found in.
#[derive(Default)]
pub struct SweepEvidence {
    pub vocab: Option<(PathBuf, TokenLists)>,
    pub corpus: Option<(PathBuf, CorpusOutput)>,
    pub logits: Option<(PathBuf, TokenLists)>,
}

/// Reads the sweep outputs in `dirs` (each holds one or more of them) and checks that they
/// describe the challenge's neurons: those of block `layer`'s MLP (`mlp.hook_pre` or
/// `mlp.hook_post` for the activation sweeps), `width` of them, of the model whose
/// model.safetensors has SHA-256 `model_sha256`.
pub fn load_sweeps(
    dirs: &[PathBuf],
    layer: usize,
    width: usize,
    model_sha256: &str,
) -> Result<SweepEvidence> {
    let mut evidence = SweepEvidence::default();
    for dir in dirs {
        if !dir.is_dir() {
            bail!("--sweep {} is not a folder; pass the output folder of a neoprobe sweep", dir.display());
        }
        let mut found = false;
        for name in [VOCAB_TOPK, CORPUS_TOPK, LOGITS_TOPK] {
            let path = dir.join(name);
            if !path.is_file() {
                continue;
            }
            found = true;
            let file = SweepFile::read(&path)?;
            if file.meta("model_sha256", &path)? != model_sha256 {
                bail!(
                    "--sweep {}: {name} was made with another model than the challenge's (model_sha256 differs); run the sweeps on the challenge's model",
                    dir.display()
                );
            }
            if name == LOGITS_TOPK {
                let swept = file.meta_usize("layer", &path)?;
                if swept != layer {
                    bail!("--sweep {}: {name} is of block {swept} but the challenge reads block {layer}; pass a logit sweep of --layer {layer}", dir.display());
                }
            } else {
                let hook = file.meta("hook", &path)?;
                let ours = [HookPoint::MlpPre, HookPoint::MlpPost].map(|p| Hook::block(layer, p).to_string());
                if !ours.iter().any(|h| h == hook) {
                    bail!(
                        "--sweep {}: {name} is of hook {hook} but the challenge's neurons are {}'s; pass a sweep of --hook {}",
                        dir.display(),
                        ours[0],
                        ours[0]
                    );
                }
            }
            let slot_taken = match name {
                VOCAB_TOPK => evidence.vocab.is_some(),
                CORPUS_TOPK => evidence.corpus.is_some(),
                _ => evidence.logits.is_some(),
            };
            if slot_taken {
                bail!("--sweep folders hold two {name} files; pass one sweep of each kind");
            }
            match name {
                VOCAB_TOPK | LOGITS_TOPK => {
                    let lists = TokenLists::read_from(&file, &path)?;
                    check_width(lists.neurons(), width, &path)?;
                    let slot = if name == VOCAB_TOPK { &mut evidence.vocab } else { &mut evidence.logits };
                    *slot = Some((dir.clone(), lists));
                }
                _ => {
                    let corpus = CorpusOutput::read(dir)?;
                    check_width(corpus.top.width(), width, &path)?;
                    evidence.corpus = Some((dir.clone(), corpus));
                }
            }
        }
        if !found {
            bail!(
                "--sweep {} holds none of {VOCAB_TOPK}, {CORPUS_TOPK} and {LOGITS_TOPK}; pass the output folder of a neoprobe sweep",
                dir.display()
            );
        }
    }
    Ok(evidence)
}

fn check_width(found: usize, width: usize, path: &Path) -> Result<()> {
    if found != width {
        bail!("{} describes {found} neurons but the challenge has {width}", path.display());
    }
    Ok(())
}

/// A context around the position of its maximum, as Markdown: the maximum's token in bold,
/// line breaks shown as ↵.
fn context_markdown(tokens: &SequenceTokens, position: usize) -> String {
    let start = position.saturating_sub(CONTEXT_BEFORE);
    let end = (position + 1 + CONTEXT_AFTER).min(tokens.tokens.len());
    let show =
        |range: std::ops::Range<usize>| -> String { md(&tokens.tokens[range].concat().replace('\n', "↵")) };
    let mut s = String::new();
    if start > 0 {
        s.push('…');
    }
    s.push_str(&show(start..position));
    // The peak in bold, its leading space outside the asterisks (Markdown needs them against the
    // text); a token of spaces only shows as ␣.
    let peak = show(position..position + 1);
    let word = peak.trim();
    let lead = &peak[..peak.len() - peak.trim_start().len()];
    let _ = write!(s, "{lead}**{}**", if word.is_empty() { "␣" } else { word });
    s.push_str(&show(position + 1..end));
    if end < tokens.tokens.len() {
        s.push('…');
    }
    s
}

/// `"tok" (value), …` for a list of (id, value).
fn token_list(list: impl Iterator<Item = (u32, f32)>, tokenizer: &Tokenizer) -> String {
    list.take(PROFILE_TOKENS)
        .map(|(id, v)| {
            format!("{} ({})", crate::sweep::token_cell(&tokenizer.token_text(id)), sig(v as f64, 3))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The report's section on the top neurons of each direction, from `evidence`.
pub fn profiles_markdown(evidence: &SweepEvidence, findings: &Findings, tokenizer: &Tokenizer) -> String {
    let f = findings;
    let mut s = String::new();
    let _ = writeln!(s, "\n## 5. What the top neurons respond to beyond the word lists\n");
    if let Some((dir, _)) = &evidence.vocab {
        let _ = writeln!(
            s,
            "- tokens alone: every token of the vocabulary as a one-token sequence ({})",
            md(&dir.join(VOCAB_TOPK).display().to_string())
        );
    }
    if let Some((dir, _)) = &evidence.corpus {
        let _ = writeln!(s, "- contexts: the corpus sequences with the neuron's largest activations, the token where it peaks in bold ({})", md(&dir.join(CONTEXTS_JSONL).display().to_string()));
    }
    if let Some((dir, _)) = &evidence.logits {
        let _ = writeln!(
            s,
            "- promotes / suppresses: the neuron's direct effect on the logits, c_proj's column scaled by ln_f's weight on the unembedding, ignoring later layers ({})",
            md(&dir.join(LOGITS_TOPK).display().to_string())
        );
    }
    for (c, list) in [(0, &f.top_first), (1, &f.top_second)] {
        for p in list.iter() {
            let _ =
                writeln!(s, "\n### Neuron {} (prefers {}, t = {})\n", p.neuron, md(&f.name(c)), sig(p.t, 3));
            if let Some((_, lists)) = &evidence.vocab {
                let _ = writeln!(s, "- **tokens alone:** {}", token_list(lists.top(p.neuron), tokenizer));
            }
            if let Some((_, corpus)) = &evidence.corpus {
                let _ = writeln!(s, "- **contexts:**");
                for e in corpus.top.list(p.neuron).iter().take(PROFILE_CONTEXTS) {
                    let (sequence, position) = e.key;
                    if let Some(tokens) = corpus.contexts.get(&sequence) {
                        let _ = writeln!(
                            s,
                            "  - ({}) {}",
                            sig(e.value as f64, 3),
                            context_markdown(tokens, position as usize)
                        );
                    }
                }
            }
            if let Some((_, lists)) = &evidence.logits {
                let _ = writeln!(s, "- **promotes:** {}", token_list(lists.top(p.neuron), tokenizer));
                let _ = writeln!(s, "- **suppresses:** {}", token_list(lists.bottom(p.neuron), tokenizer));
            }
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contexts_show_the_peak_in_bold_within_a_window() {
        let tokens: Vec<String> = (0..30).map(|i| format!(" w{i}")).collect();
        let seq = SequenceTokens { ids: (0..30).collect(), tokens };
        let text = context_markdown(&seq, 20);
        assert!(text.starts_with("… w8 w9"), "{text}");
        assert!(text.contains(" w19 **w20** w21"), "{text}");
        assert!(text.ends_with(" w24…"), "{text}");
        let first =
            context_markdown(&SequenceTokens { ids: vec![1, 2], tokens: vec!["a\n".into(), "b".into()] }, 0);
        assert_eq!(first, "**a↵**b");
    }
}
