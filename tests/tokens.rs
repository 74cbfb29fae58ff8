//! Token ids: the `tokenizers` crate on the fixture model's tokenizer.json must give exactly HF's
//! ids for every word of `data/` (as written and with one leading space) and for the text.

use neoprobe::tokenize::{read_word_list, Tokenizer};
use serde_json::Value;
use std::path::Path;

fn tokenizer() -> Tokenizer {
    Tokenizer::load(Path::new("fixtures/tiny-neo/tokenizer.json")).unwrap()
}

fn hf_tokens() -> Value {
    serde_json::from_str(&std::fs::read_to_string("fixtures/hf_tokens.json").unwrap()).unwrap()
}

fn ids(value: &Value) -> Vec<u32> {
    value.as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u32).collect()
}

#[test]
fn every_word_tokenizes_as_in_hf() {
    let tokenizer = tokenizer();
    let hf = hf_tokens();
    let entries = hf["words"].as_array().unwrap();
    let words: Vec<String> = ["data/verbs.txt", "data/nouns.txt"]
        .iter()
        .flat_map(|p| read_word_list(Path::new(p)).unwrap())
        .map(|w| w.word)
        .collect();
    assert_eq!(words.len(), 200);
    assert_eq!(entries.len(), words.len(), "the fixtures were made from other word lists");
    for (word, entry) in words.iter().zip(entries) {
        assert_eq!(entry["word"].as_str().unwrap(), word);
        assert_eq!(tokenizer.encode_word(word, false).unwrap(), ids(&entry["ids"]), "{word}");
        assert_eq!(tokenizer.encode_word(word, true).unwrap(), ids(&entry["ids_prefix_space"]), "' {word}'");
    }
}

#[test]
fn text_tokenizes_as_in_hf() {
    let text = std::fs::read_to_string("fixtures/text.txt").unwrap();
    assert_eq!(tokenizer().encode(&text).unwrap(), ids(&hf_tokens()["text_ids"]));
}

#[test]
fn known_gpt2_ids() {
    let tokenizer = tokenizer();
    assert_eq!(tokenizer.encode("Hello world").unwrap(), vec![15496, 995]);
    assert_eq!(tokenizer.encode_word("dog", false).unwrap(), vec![9703]);
    assert_eq!(tokenizer.encode_word("dog", true).unwrap(), vec![3290]);
}

#[test]
fn word_list_token_ids_snapshot() {
    let tokenizer = tokenizer();
    let mut lines = Vec::new();
    for list in ["data/verbs.txt", "data/nouns.txt"] {
        lines.push(format!("# {list}: word | ids as written | ids with a leading space"));
        for w in read_word_list(Path::new(list)).unwrap() {
            let plain = tokenizer.encode_word(&w.word, false).unwrap();
            let spaced = tokenizer.encode_word(&w.word, true).unwrap();
            lines.push(format!("{} | {plain:?} | {spaced:?}", w.word));
        }
    }
    insta::assert_snapshot!("word_list_token_ids", lines.join("\n"));
}
