//! Per-neuron extremes kept as values stream past: the `k` largest and (optionally) the `k`
//! smallest values with the key each came with, and running moments. Memory is `neurons × k`,
//! whatever the number of values offered.
//!
//! Order (what makes shard merges exact): the largest first, equal values by ascending key; the
//! smallest first, equal values by ascending key. It is a total order on distinct keys, so the
//! `k` best of a union are the `k` best of the parts' `k` best.

use anyhow::{bail, Result};
use std::cmp::Ordering;

/// A value and what it belongs to (a token id; a sequence and position).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Entry<K> {
    pub value: f32,
    pub key: K,
}

/// Which end of the distribution a list keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum End {
    Top,
    Bottom,
}

impl End {
    /// Whether `a` ranks before `b` in a list of this end.
    pub fn before<K: Ord>(self, a: &Entry<K>, b: &Entry<K>) -> bool {
        self.order(a, b) == Ordering::Less
    }

    /// The list order: by value (descending for the top, ascending for the bottom), then key.
    pub fn order<K: Ord>(self, a: &Entry<K>, b: &Entry<K>) -> Ordering {
        let by_value = match self {
            End::Top => b.value.total_cmp(&a.value),
            End::Bottom => a.value.total_cmp(&b.value),
        };
        by_value.then_with(|| a.key.cmp(&b.key))
    }
}

/// The `k` best entries of one end for each of `width` neurons.
#[derive(Clone, Debug)]
pub struct Extremes<K> {
    pub end: End,
    pub k: usize,
    /// Per neuron, its best entries so far, best first (at most `k`).
    lists: Vec<Vec<Entry<K>>>,
}

impl<K: Ord + Copy> Extremes<K> {
    pub fn new(end: End, k: usize, width: usize) -> Extremes<K> {
        Extremes { end, k, lists: (0..width).map(|_| Vec::with_capacity(k + 1)).collect() }
    }

    pub fn width(&self) -> usize {
        self.lists.len()
    }

    /// Offers `value` with `key` to neuron `neuron`'s list; returns whether it is now listed.
    #[inline]
    pub fn offer(&mut self, neuron: usize, value: f32, key: K) -> bool {
        let (end, k) = (self.end, self.k);
        let list = &mut self.lists[neuron];
        let entry = Entry { value, key };
        if list.len() == k {
            // Most values lose against the list's last entry: decide that without a search.
            match list.last() {
                Some(last) if !end.before(&entry, last) => return false,
                None => return false,
                _ => {}
            }
        }
        let at = list.partition_point(|e| end.before(e, &entry));
        list.insert(at, entry);
        list.truncate(k);
        true
    }

    /// Offers every value of `row` (one value per neuron) with the same key.
    pub fn offer_row(&mut self, row: &[f32], key: K) {
        debug_assert_eq!(row.len(), self.lists.len());
        for (neuron, &value) in row.iter().enumerate() {
            let _ = self.offer(neuron, value, key);
        }
    }

    /// Neuron `neuron`'s entries, best first.
    pub fn list(&self, neuron: usize) -> &[Entry<K>] {
        &self.lists[neuron]
    }

    /// Adds every entry of `other` (same end, k and width): the result is the best `k` of both.
    pub fn absorb(&mut self, other: &Extremes<K>) {
        for (neuron, list) in other.lists.iter().enumerate() {
            for e in list {
                let _ = self.offer(neuron, e.value, e.key);
            }
        }
    }
}

/// Per-neuron count, mean and sum of squared deviations (Welford, in f64, in arrival order).
#[derive(Clone, Debug)]
pub struct Moments {
    pub n: u64,
    mean: Vec<f64>,
    m2: Vec<f64>,
}

impl Moments {
    pub fn new(width: usize) -> Moments {
        Moments { n: 0, mean: vec![0.0; width], m2: vec![0.0; width] }
    }

    pub fn add_row(&mut self, row: &[f32]) {
        self.n += 1;
        let n = self.n as f64;
        for ((mean, m2), &x) in self.mean.iter_mut().zip(&mut self.m2).zip(row) {
            let x = x as f64;
            let delta = x - *mean;
            *mean += delta / n;
            *m2 += delta * (x - *mean);
        }
    }

    pub fn mean(&self) -> &[f64] {
        &self.mean
    }

    /// Sample standard deviation (ddof 1); NaN for fewer than two values.
    pub fn std(&self) -> Vec<f64> {
        let n = self.n as f64;
        self.m2.iter().map(|m2| if self.n < 2 { f64::NAN } else { (m2 / (n - 1.0)).sqrt() }).collect()
    }
}

/// Fails on the first value of `rows` (`[n, width]`) that is not finite, naming the neuron and
/// what `row_name(i)` says row `i` is: a NaN would have no place in the lists' order.
pub fn check_finite(rows: &[f32], width: usize, row_name: &dyn Fn(usize) -> String) -> Result<()> {
    if let Some(at) = rows.iter().position(|v| !v.is_finite()) {
        bail!(
            "the activation of neuron {} for {} is {}; the model's weights or the GPU driver produce non-finite values",
            at % width,
            row_name(at / width),
            rows[at]
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn brute_force(values: &[(f32, u32)], end: End, k: usize) -> Vec<Entry<u32>> {
        let mut all: Vec<Entry<u32>> = values.iter().map(|&(value, key)| Entry { value, key }).collect();
        all.sort_by(|a, b| end.order(a, b));
        all.truncate(k);
        all
    }

    proptest! {
        #[test]
        fn streamed_lists_equal_a_full_sort(
            values in prop::collection::vec((-4i8..4, 0u32..1000), 0..200),
            k in 1usize..12,
        ) {
            // Few distinct values, so ties are common.
            let values: Vec<(f32, u32)> = values.iter().map(|&(v, key)| (v as f32 * 0.5, key)).collect();
            let mut keys = std::collections::HashSet::new();
            let values: Vec<(f32, u32)> = values.into_iter().filter(|(_, key)| keys.insert(*key)).collect();
            for end in [End::Top, End::Bottom] {
                let mut streamed = Extremes::new(end, k, 1);
                for &(v, key) in &values {
                    streamed.offer(0, v, key);
                }
                prop_assert_eq!(streamed.list(0), &brute_force(&values, end, k)[..]);
                // Split in two halves, kept apart and absorbed: the same lists (shard merges).
                let (a, b) = values.split_at(values.len() / 2);
                let mut first = Extremes::new(end, k, 1);
                let mut second = Extremes::new(end, k, 1);
                a.iter().for_each(|&(v, key)| {
                    first.offer(0, v, key);
                });
                b.iter().for_each(|&(v, key)| {
                    second.offer(0, v, key);
                });
                second.absorb(&first);
                prop_assert_eq!(second.list(0), streamed.list(0));
            }
        }
    }

    #[test]
    fn moments_match_two_pass_statistics() {
        let rows = [[1.0f32, -2.0], [2.0, -2.0], [4.0, -2.0], [7.5, -2.0]];
        let mut m = Moments::new(2);
        rows.iter().for_each(|r| m.add_row(r));
        let xs = [1.0f64, 2.0, 4.0, 7.5];
        let mean = xs.iter().sum::<f64>() / 4.0;
        let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / 3.0;
        assert!((m.mean()[0] - mean).abs() < 1e-12);
        assert!((m.std()[0] - var.sqrt()).abs() < 1e-12);
        assert_eq!((m.mean()[1], m.std()[1]), (-2.0, 0.0));
        assert!(Moments::new(1).std()[0].is_nan());
    }

    #[test]
    fn non_finite_values_are_named() {
        let err = check_finite(&[0.0, 1.0, 2.0, f32::NAN], 2, &|i| format!("token {i}")).unwrap_err();
        assert!(err.to_string().contains("neuron 1 for token 1 is NaN"), "{err}");
        assert!(check_finite(&[0.0, 1.0], 2, &|i| i.to_string()).is_ok());
    }
}
