//! What the corpus sweep keeps beside its top-k for the neuron pages, mergeable across shards
//! exactly like the top-k:
//!
//! - a histogram of every token's activation per neuron, in fixed bins (the same for every
//!   neuron, model and corpus), so the shards' counts just add;
//! - per neuron, the number of sequences whose largest activation falls in each activation
//!   interval (an octave of the value, by sign), and a sample of those sequences: the
//!   [`SAMPLES_PER_INTERVAL`] with the smallest [`sequence_hash`], a bottom-k sample, which merges
//!   exactly by taking the bottom-k of the union.
//!
//! Bins: a value with |v| < 2⁻⁸ falls in the middle bin ([`ZERO_BIN`]); otherwise its sign, its
//! octave `e` = ⌊log₂|v|⌋ clamped to −8…7, and the 4 bits of its mantissa after the leading one
//! (16 bins per octave) give the bin, read from the f32's bits. Values with |v| ≥ 256 fall in
//! the outermost bins. Intervals are the bins' octaves: 16 negative, the middle one, 16 positive.

/// Fixed histogram bins: 256 negative, the middle one, 256 positive.
pub const HIST_BINS: usize = 513;
/// The middle bin, |v| < 2⁻⁸.
pub const ZERO_BIN: usize = 256;
/// Activation intervals of the samples: 16 negative octaves, the middle one, 16 positive.
pub const INTERVALS: usize = 33;
/// The middle interval.
pub const ZERO_INTERVAL: usize = 16;
/// Sequences kept per neuron and interval.
pub const SAMPLES_PER_INTERVAL: usize = 2;

const MIN_EXP: i32 = -8;
const MAX_EXP: i32 = 7;

/// The fixed histogram bin of `v` (finite or not; NaN falls in the middle bin).
#[inline]
pub fn hist_bin(v: f32) -> usize {
    let a = v.abs();
    if a.is_nan() || a < 1.0 / 256.0 {
        return ZERO_BIN;
    }
    let bits = a.to_bits();
    let e = ((bits >> 23) & 0xff) as i32 - 127;
    let (e, f) = if e > MAX_EXP { (MAX_EXP, 15) } else { (e, ((bits >> 19) & 15) as i32) };
    let idx = ((e - MIN_EXP) * 16 + f) as usize;
    if v > 0.0 {
        ZERO_BIN + 1 + idx
    } else {
        ZERO_BIN - 1 - idx
    }
}

/// The bounds `[lo, hi)` of bin `bin` (for negative bins `(lo, hi]`); the outermost are infinite.
pub fn bin_bounds(bin: usize) -> (f32, f32) {
    if bin == ZERO_BIN {
        return (-1.0 / 256.0, 1.0 / 256.0);
    }
    let idx = if bin > ZERO_BIN { bin - ZERO_BIN - 1 } else { ZERO_BIN - 1 - bin };
    let e = (idx / 16) as i32 + MIN_EXP;
    let f = (idx % 16) as f32;
    let lo = 2f32.powi(e) * (1.0 + f / 16.0);
    let hi = if idx == 255 { f32::INFINITY } else { 2f32.powi(e) * (1.0 + (f + 1.0) / 16.0) };
    if bin > ZERO_BIN {
        (lo, hi)
    } else {
        (-hi, -lo)
    }
}

/// The interval (octave) of bin `bin`.
pub fn interval_of_bin(bin: usize) -> usize {
    match bin {
        ZERO_BIN => ZERO_INTERVAL,
        b if b > ZERO_BIN => ZERO_INTERVAL + 1 + (b - ZERO_BIN - 1) / 16,
        b => b / 16,
    }
}

/// The bounds of interval `interval`, as [`bin_bounds`].
pub fn interval_bounds(interval: usize) -> (f32, f32) {
    match interval {
        ZERO_INTERVAL => bin_bounds(ZERO_BIN),
        i if i > ZERO_INTERVAL => {
            let first = ZERO_BIN + 1 + (i - ZERO_INTERVAL - 1) * 16;
            (bin_bounds(first).0, bin_bounds(first + 15).1)
        }
        i => (bin_bounds(i * 16).0, bin_bounds(i * 16 + 15).1),
    }
}

/// The hash that orders a sequence in the samples: SplitMix64 of its number in the corpus. It
/// depends on nothing else, so every shard ranks a sequence alike.
pub fn sequence_hash(sequence: u64) -> u64 {
    let mut z = sequence.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Per neuron, the counts of [`HIST_BINS`] fixed bins.
#[derive(Clone, Debug, PartialEq)]
pub struct Histograms {
    /// `[neurons, HIST_BINS]`.
    pub counts: Vec<i64>,
}

impl Histograms {
    pub fn new(width: usize) -> Histograms {
        Histograms { counts: vec![0; width * HIST_BINS] }
    }

    /// Counts one row (one value per neuron).
    #[inline]
    pub fn add_row(&mut self, row: &[f32]) {
        for (counts, &v) in self.counts.chunks_exact_mut(HIST_BINS).zip(row) {
            counts[hist_bin(v)] += 1;
        }
    }

    pub fn absorb(&mut self, other: &Histograms) {
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
    }

    pub fn neuron(&self, neuron: usize) -> &[i64] {
        &self.counts[neuron * HIST_BINS..(neuron + 1) * HIST_BINS]
    }
}

/// A sampled sequence: its number, where the neuron peaks in it and the peak's value.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sample {
    pub sequence: u64,
    pub position: u32,
    pub value: f32,
}

impl Sample {
    fn rank(&self) -> (u64, u64) {
        (sequence_hash(self.sequence), self.sequence)
    }
}

/// Per neuron and interval: how many sequences peak there, and the sample of them.
#[derive(Clone, Debug, PartialEq)]
pub struct Samples {
    pub k: usize,
    /// `[neurons, INTERVALS]`.
    pub counts: Vec<i64>,
    /// `[neurons × INTERVALS]` lists, smallest `(hash, sequence)` first, at most `k` each.
    lists: Vec<Vec<Sample>>,
}

impl Samples {
    pub fn new(k: usize, width: usize) -> Samples {
        Samples { k, counts: vec![0; width * INTERVALS], lists: vec![Vec::new(); width * INTERVALS] }
    }

    pub fn width(&self) -> usize {
        self.counts.len() / INTERVALS
    }

    /// Offers a sequence's peak for `neuron`, counted whatever happens; returns whether it is
    /// now in the sample.
    #[inline]
    pub fn offer(&mut self, neuron: usize, sample: Sample) -> bool {
        let at = neuron * INTERVALS + interval_of_bin(hist_bin(sample.value));
        self.counts[at] += 1;
        self.keep(at, sample)
    }

    fn keep(&mut self, at: usize, sample: Sample) -> bool {
        let k = self.k;
        let list = &mut self.lists[at];
        let rank = sample.rank();
        if list.len() == k && list.last().is_none_or(|last| rank >= last.rank()) {
            return false;
        }
        let pos = list.partition_point(|e| e.rank() < rank);
        list.insert(pos, sample);
        list.truncate(k);
        true
    }

    /// Neuron `neuron`'s sample in interval `interval`, smallest hash first.
    pub fn list(&self, neuron: usize, interval: usize) -> &[Sample] {
        &self.lists[neuron * INTERVALS + interval]
    }

    /// Adds another part's counts and samples: the result is what one run over both keeps.
    pub fn absorb(&mut self, other: &Samples) {
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
        for (at, list) in other.lists.iter().enumerate() {
            for &s in list {
                self.keep(at, s);
            }
        }
    }

    /// Puts back a sample read from a file (its count comes separately).
    pub fn restore(&mut self, neuron: usize, interval: usize, sample: Sample) {
        self.keep(neuron * INTERVALS + interval, sample);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn bins_contain_their_values_and_are_ordered() {
        let mut previous = 0;
        for i in -4000..4000 {
            let v = i as f32 * 0.0731;
            let bin = hist_bin(v);
            assert!(bin >= previous, "{v}");
            previous = bin;
            let (lo, hi) = bin_bounds(bin);
            if bin == ZERO_BIN {
                assert!(v.abs() < hi, "{v}");
            } else if v > 0.0 {
                assert!(lo <= v && v < hi, "{v} in [{lo}, {hi})");
            } else {
                assert!(lo < v && v <= hi, "{v} in ({lo}, {hi}]");
            }
            let (ilo, ihi) = interval_bounds(interval_of_bin(bin));
            assert!(ilo <= lo && hi <= ihi);
        }
        assert_eq!(hist_bin(0.0), ZERO_BIN);
        assert_eq!(hist_bin(1.0), ZERO_BIN + 1 + 8 * 16);
        assert_eq!(hist_bin(-1.0), ZERO_BIN - 1 - 8 * 16);
        assert_eq!(hist_bin(1e9), HIST_BINS - 1);
        assert_eq!(hist_bin(-1e9), 0);
        assert_eq!(interval_of_bin(0), 0);
        assert_eq!(interval_of_bin(HIST_BINS - 1), INTERVALS - 1);
        assert_eq!(interval_bounds(ZERO_INTERVAL + 9), (1.0, 2.0));
    }

    proptest! {
        #[test]
        fn split_samples_absorb_into_what_one_run_keeps(
            values in prop::collection::vec(-40i32..40, 0..300),
            cut in 0usize..300,
            k in 1usize..4,
        ) {
            let samples: Vec<Sample> = values
                .iter()
                .enumerate()
                .map(|(i, &v)| Sample { sequence: i as u64, position: (i % 7) as u32, value: v as f32 * 0.37 })
                .collect();
            let mut one = Samples::new(k, 2);
            let (mut a, mut b) = (Samples::new(k, 2), Samples::new(k, 2));
            let cut = cut.min(samples.len());
            for (i, &s) in samples.iter().enumerate() {
                one.offer(i % 2, s);
                if i < cut { a.offer(i % 2, s) } else { b.offer(i % 2, s) };
            }
            b.absorb(&a);
            prop_assert_eq!(&b, &one);
        }
    }
}
