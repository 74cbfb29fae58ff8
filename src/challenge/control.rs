//! A control for word length: the same per-neuron test on the words that are one token long.
//! Multi-token words are averaged over their tokens, and how many tokens a word has differs
//! between categories; a neuron that separates verbs from nouns only through that would lose
//! its difference here.

use super::permutation::Counts;
use super::stats::{neuron_stats, Category, WordActivations};
use anyhow::Result;
use serde::Serialize;

/// The test on single-token words only.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SingleTokenControl {
    /// Single-token words of the two tested categories.
    pub words: [usize; 2],
    /// The counts, or `None` when a category has fewer than two single-token words.
    pub counts: Option<Counts>,
}

/// Runs the test of categories 0 and 1 of `acts` on their words whose token count (`tokens`,
/// one per word in row order) is 1.
pub fn single_token_control(acts: &WordActivations, tokens: &[usize]) -> Result<SingleTokenControl> {
    let mut categories = Vec::new();
    let mut rows = Vec::new();
    let mut word = 0;
    for (c, category) in acts.categories.iter().enumerate() {
        let mut kept = Vec::new();
        for (i, w) in category.words.iter().enumerate() {
            if c < 2 && tokens[word] == 1 {
                kept.push(w.clone());
                rows.extend_from_slice(acts.row(c, i));
            }
            word += 1;
        }
        if c < 2 {
            categories.push(Category { name: category.name.clone(), words: kept });
        }
    }
    let words = [categories[0].words.len(), categories[1].words.len()];
    if words.iter().any(|&n| n < 2) {
        return Ok(SingleTokenControl { words, counts: None });
    }
    let subset = WordActivations::new(categories, acts.width, rows)?;
    let p: Vec<f64> = neuron_stats(&subset)?.iter().map(|s| s.p).collect();
    Ok(SingleTokenControl { words, counts: Some(Counts::of(&p)) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::challenge::synthetic;

    #[test]
    fn only_single_token_words_are_tested() {
        let acts = synthetic::activations();
        // Every word one token long: the control is the main test.
        let all = single_token_control(&acts, &[1; 20]).unwrap();
        assert_eq!(all.words, [10, 10]);
        assert_eq!(all.counts, Some(Counts { bh: 3, bonferroni: 3 }));
        // Half the verbs longer: five verbs remain.
        let mut tokens = vec![1; 20];
        tokens[..5].fill(2);
        assert_eq!(single_token_control(&acts, &tokens).unwrap().words, [5, 10]);
        // One single-token noun: no test.
        let mut tokens = vec![2; 20];
        tokens[..10].fill(1);
        tokens[15] = 1;
        let none = single_token_control(&acts, &tokens).unwrap();
        assert_eq!((none.words, none.counts), ([10, 1], None));
    }
}
