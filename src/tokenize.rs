//! Words and texts → token ids, with the model folder's `tokenizer.json`, and reading the word
//! and text files users pass or the lists built into the binary ([`WordSource`]).

use anyhow::{anyhow, bail, Context, Result};
use std::path::{Path, PathBuf};

/// The model's tokenizer. Text is encoded as written: no BOS or other special token is added.
pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
}

impl Tokenizer {
    pub fn load(path: &Path) -> Result<Tokenizer> {
        if !path.is_file() {
            return Err(crate::error::not_found(format!(
                "no tokenizer.json at {}: the model folder needs the model's tokenizer.json (transformers' save_pretrained writes it)",
                path.display()
            )));
        }
        let inner = tokenizers::Tokenizer::from_file(path).map_err(|e| {
            anyhow!("cannot read {} as a tokenizer ({e}); re-download or re-export it", path.display())
        })?;
        Ok(Tokenizer { inner })
    }

    /// The ids of `text`, exactly as written.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let encoding =
            self.inner.encode(text, false).map_err(|e| anyhow!("cannot tokenize {text:?}: {e}"))?;
        Ok(encoding.get_ids().to_vec())
    }

    /// The text of one token id, as decoding it alone gives it (bytes that are not UTF-8 on
    /// their own become U+FFFD); empty for an id the tokenizer does not know.
    pub fn token_text(&self, id: u32) -> String {
        self.inner.decode(&[id], false).unwrap_or_default()
    }

    /// The ids of one word on its own: as written, or after one added leading space
    /// (`prefix_space`). A word that gives no token is an error.
    pub fn encode_word(&self, word: &str, prefix_space: bool) -> Result<Vec<u32>> {
        let ids = if prefix_space { self.encode(&format!(" {word}"))? } else { self.encode(word)? };
        if ids.is_empty() {
            bail!("word {word:?} tokenizes to nothing; remove it from the list");
        }
        Ok(ids)
    }
}

/// A word from a word-list file, with the line it came from.
#[derive(Clone, Debug, PartialEq)]
pub struct ListedWord {
    pub word: String,
    pub line: usize,
}

/// Reads a word list: UTF-8, one word per line, surrounding whitespace trimmed, blank lines
/// skipped. An unreadable, non-UTF-8 or empty list is an error.
pub fn read_word_list(path: &Path) -> Result<Vec<ListedWord>> {
    let words = parse_word_list(&read_utf8(path, "word list")?);
    if words.is_empty() {
        bail!("word list {} has no words; put one word per line", path.display());
    }
    Ok(words)
}

/// The words of a word list's text: one per line, surrounding whitespace trimmed, blank lines
/// skipped.
pub fn parse_word_list(text: &str) -> Vec<ListedWord> {
    text.lines()
        .enumerate()
        .filter_map(|(i, line)| {
            let word = line.trim();
            (!word.is_empty()).then(|| ListedWord { word: word.to_string(), line: i + 1 })
        })
        .collect()
}

/// Reads a whole UTF-8 text file, as is.
pub fn read_text(path: &Path) -> Result<String> {
    let text = read_utf8(path, "text")?;
    if text.is_empty() {
        bail!("text file {} is empty", path.display());
    }
    Ok(text)
}

fn read_utf8(path: &Path, what: &str) -> Result<String> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {what} {}", path.display()))?;
    String::from_utf8(bytes).map_err(|e| {
        anyhow!(
            "{what} {} is not UTF-8 (invalid byte at offset {}); save it as UTF-8",
            path.display(),
            e.utf8_error().valid_up_to()
        )
    })
}

/// The shipped verb list, compiled in so that the command works from any folder.
pub const BUILT_IN_VERBS: &str = include_str!("../data/verbs.txt");
/// The shipped noun list.
pub const BUILT_IN_NOUNS: &str = include_str!("../data/nouns.txt");

/// Where a category's words come from.
#[derive(Clone, Debug, PartialEq)]
pub enum WordSource {
    /// A word-list file: UTF-8, one word per line.
    File(PathBuf),
    /// A list compiled into the binary: its path in the repository and its text.
    BuiltIn { path: &'static str, text: &'static str },
}

impl WordSource {
    pub fn verbs() -> WordSource {
        WordSource::BuiltIn { path: "data/verbs.txt", text: BUILT_IN_VERBS }
    }

    pub fn nouns() -> WordSource {
        WordSource::BuiltIn { path: "data/nouns.txt", text: BUILT_IN_NOUNS }
    }

    /// How the source is named in messages and metadata: the path, or `data/verbs.txt (built in)`.
    pub fn describe(&self) -> String {
        match self {
            WordSource::File(path) => path.display().to_string(),
            WordSource::BuiltIn { path, .. } => format!("{path} (built in)"),
        }
    }

    /// The words, read with the rules of [`read_word_list`] (trimmed, blank lines skipped).
    pub fn read(&self) -> Result<Vec<ListedWord>> {
        match self {
            WordSource::File(path) => read_word_list(path),
            WordSource::BuiltIn { text, .. } => Ok(parse_word_list(text)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_in_lists_read_like_files() {
        let verbs = WordSource::verbs().read().unwrap();
        let from_file = read_word_list(Path::new("data/verbs.txt")).unwrap();
        assert_eq!(verbs, from_file);
        assert_eq!(verbs.len(), 100);
        assert_eq!(WordSource::nouns().read().unwrap().len(), 100);
        assert_eq!(WordSource::verbs().describe(), "data/verbs.txt (built in)");
    }

    #[test]
    fn word_lists_are_trimmed_and_blank_lines_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.txt");
        std::fs::write(&path, "  run \n\n\tdog\r\n   \n").unwrap();
        let words = read_word_list(&path).unwrap();
        assert_eq!(
            words,
            vec![ListedWord { word: "run".into(), line: 1 }, ListedWord { word: "dog".into(), line: 3 }]
        );
    }

    #[test]
    fn empty_and_non_utf8_lists_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.txt");
        std::fs::write(&path, " \n\n").unwrap();
        assert!(read_word_list(&path).unwrap_err().to_string().contains("no words"));
        std::fs::write(&path, b"ok\n\xff\xfe\n").unwrap();
        assert!(read_word_list(&path).unwrap_err().to_string().contains("not UTF-8"));
        assert!(read_word_list(&dir.path().join("missing.txt")).is_err());
    }
}
