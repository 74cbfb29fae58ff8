//! Pooling a sequence's per-token activations into one row.

use crate::model::Batch;
use std::fmt;

/// How a sequence's token rows become one row.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Pool {
    /// The mean over the sequence's tokens (the challenge's choice).
    Mean,
    /// The first token's row.
    First,
    /// The last token's row.
    Last,
    /// The elementwise maximum over the tokens.
    Max,
    /// No pooling: every token's row.
    None,
}

impl fmt::Display for Pool {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        let name = match self {
            Pool::Mean => "mean",
            Pool::First => "first",
            Pool::Last => "last",
            Pool::Max => "max",
            Pool::None => "none",
        };
        f.write_str(name)
    }
}

/// Pools `rows` (`[batch.n_tokens(), width]`) per sequence of `batch`: `[n_sequences, width]`,
/// or `rows` unchanged for `Pool::None`.
pub fn pool(rows: &[f32], width: usize, batch: &Batch, how: Pool) -> Vec<f32> {
    if how == Pool::None {
        return rows.to_vec();
    }
    let mut out = Vec::with_capacity(batch.n_sequences() * width);
    for s in 0..batch.n_sequences() {
        let range = batch.sequence(s);
        let token = |t: usize| &rows[t * width..(t + 1) * width];
        match how {
            Pool::First => out.extend_from_slice(token(range.start)),
            Pool::Last => out.extend_from_slice(token(range.end - 1)),
            Pool::Mean => {
                let mut sum = vec![0.0f64; width];
                for t in range.clone() {
                    for (acc, &v) in sum.iter_mut().zip(token(t)) {
                        *acc += v as f64;
                    }
                }
                out.extend(sum.iter().map(|&v| (v / range.len() as f64) as f32));
            }
            Pool::Max => {
                let mut max = token(range.start).to_vec();
                for t in range.clone().skip(1) {
                    for (m, &v) in max.iter_mut().zip(token(t)) {
                        *m = m.max(v);
                    }
                }
                out.extend(max);
            }
            Pool::None => unreachable!(),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pools_each_sequence_separately() {
        let batch = Batch::pack(&[vec![1, 2], vec![3]], 8).unwrap();
        let rows = [1.0, -1.0, 3.0, 5.0, 7.0, 0.5];
        assert_eq!(pool(&rows, 2, &batch, Pool::Mean), vec![2.0, 2.0, 7.0, 0.5]);
        assert_eq!(pool(&rows, 2, &batch, Pool::First), vec![1.0, -1.0, 7.0, 0.5]);
        assert_eq!(pool(&rows, 2, &batch, Pool::Last), vec![3.0, 5.0, 7.0, 0.5]);
        assert_eq!(pool(&rows, 2, &batch, Pool::Max), vec![3.0, 5.0, 7.0, 0.5]);
        assert_eq!(pool(&rows, 2, &batch, Pool::None), rows.to_vec());
    }
}
