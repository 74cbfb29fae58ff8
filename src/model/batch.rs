//! Packing several token sequences into one batch: laid end to end, positions restarting at 0.

use anyhow::{bail, Result};

/// Token sequences packed end to end, with what each token needs to know about its sequence.
#[derive(Clone, Debug, PartialEq)]
pub struct Batch {
    /// Every token id, sequence after sequence.
    pub ids: Vec<u32>,
    /// Per token: its index inside its own sequence (the wpe row it takes).
    pub positions: Vec<u32>,
    /// Per token: the index in `ids` of its sequence's first token (attention never looks before it).
    pub seq_start: Vec<u32>,
    /// Sequence `s` occupies `ids[offsets[s]..offsets[s + 1]]`.
    pub offsets: Vec<usize>,
    /// The index of the batch's first sequence among all the sequences of its run (a patch
    /// finds the other run's rows by it).
    pub first_sequence: usize,
}

impl Batch {
    /// Packs `sequences`, each of which must be non-empty and at most `max_positions` long.
    pub fn pack(sequences: &[Vec<u32>], max_positions: usize) -> Result<Batch> {
        let mut batch = Batch {
            ids: Vec::new(),
            positions: Vec::new(),
            seq_start: Vec::new(),
            offsets: vec![0],
            first_sequence: 0,
        };
        for (s, sequence) in sequences.iter().enumerate() {
            if sequence.is_empty() {
                bail!("sequence {s} has no tokens");
            }
            if sequence.len() > max_positions {
                bail!("sequence {s} has {} tokens; the model has {max_positions} positions", sequence.len());
            }
            let start = batch.ids.len() as u32;
            batch.ids.extend_from_slice(sequence);
            batch.positions.extend(0..sequence.len() as u32);
            batch.seq_start.extend(std::iter::repeat_n(start, sequence.len()));
            batch.offsets.push(batch.ids.len());
        }
        if batch.ids.is_empty() {
            bail!("nothing to run: no sequences");
        }
        Ok(batch)
    }

    pub fn n_tokens(&self) -> usize {
        self.ids.len()
    }

    pub fn n_sequences(&self) -> usize {
        self.offsets.len() - 1
    }

    /// The token range of sequence `s`.
    pub fn sequence(&self, s: usize) -> std::ops::Range<usize> {
        self.offsets[s]..self.offsets[s + 1]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_restart_and_starts_point_at_each_sequence() {
        let batch = Batch::pack(&[vec![5, 6, 7], vec![8], vec![9, 10]], 16).unwrap();
        assert_eq!(batch.ids, vec![5, 6, 7, 8, 9, 10]);
        assert_eq!(batch.positions, vec![0, 1, 2, 0, 0, 1]);
        assert_eq!(batch.seq_start, vec![0, 0, 0, 3, 4, 4]);
        assert_eq!(batch.sequence(2), 4..6);
        assert_eq!(batch.n_sequences(), 3);
    }

    #[test]
    fn empty_and_overlong_sequences_are_refused() {
        assert!(Batch::pack(&[vec![1], vec![]], 16).is_err());
        assert!(Batch::pack(&[vec![1; 17]], 16).is_err());
        assert!(Batch::pack(&[], 16).is_err());
    }
}
