//! What the logits say about a sequence: log-sum-exp and the next-token cross-entropy, in f64.

/// `log Σ_v exp(row[v])`, computed in f64 with the maximum subtracted first.
pub fn logsumexp(row: &[f32]) -> f64 {
    let max = row.iter().fold(f64::NEG_INFINITY, |m, &v| m.max(v as f64));
    max + row.iter().map(|&v| (v as f64 - max).exp()).sum::<f64>().ln()
}

/// The mean next-token cross-entropy of one sequence from its logits `[ids.len(), vocab]`
/// (row-major): the mean over t < len − 1 of `logsumexp(logits[t]) − logits[t][ids[t + 1]]`, as
/// HF's `GPTNeoForCausalLM(labels=ids).loss` computes it. `None` for a sequence of one token.
pub fn next_token_loss(logits: &[f32], vocab: usize, ids: &[u32]) -> Option<f64> {
    if ids.len() < 2 {
        return None;
    }
    let total: f64 = (0..ids.len() - 1)
        .map(|t| {
            let row = &logits[t * vocab..(t + 1) * vocab];
            logsumexp(row) - row[ids[t + 1] as usize] as f64
        })
        .sum();
    Some(total / (ids.len() - 1) as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logsumexp_is_stable_and_exact_on_known_rows() {
        assert!((logsumexp(&[0.0, 0.0]) - 2f64.ln()).abs() < 1e-15);
        assert!((logsumexp(&[1000.0, 1000.0]) - (1000.0 + 2f64.ln())).abs() < 1e-12);
        assert!((logsumexp(&[-1000.0]) + 1000.0).abs() < 1e-12);
    }

    #[test]
    fn loss_is_the_mean_negative_log_probability_of_each_next_token() {
        // Two positions of a 3-token vocabulary: uniform, then certain of token 2.
        let logits = [0.0, 0.0, 0.0, -1e4, -1e4, 0.0, 5.0, 5.0, 5.0];
        let loss = next_token_loss(&logits, 3, &[1, 0, 2]).unwrap();
        assert!((loss - (3f64.ln() + 0.0) / 2.0).abs() < 1e-12, "{loss}");
        assert_eq!(next_token_loss(&logits[..3], 3, &[1]), None);
    }
}
