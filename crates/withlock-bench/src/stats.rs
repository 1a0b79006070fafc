//! Medians and percentiles of noisy samples.
//!
//! On a shared machine a few runs are always delayed by someone else's work.
//! A mean would report that load; the median reports the typical run, and
//! the 90th percentile how bad a slow one gets.

/// The median and 90th percentile of a set of samples.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Summary {
    pub median: f64,
    pub p90: f64,
}

impl Summary {
    /// `None` for no samples, which have no median.
    pub(crate) fn of(samples: &[f64]) -> Option<Summary> {
        Some(Summary {
            median: median(samples)?,
            p90: percentile(samples, 90.0)?,
        })
    }
}

/// The middle sample, or the mean of the two middle ones.
pub(crate) fn median(samples: &[f64]) -> Option<f64> {
    let sorted = sorted(samples);
    let n = sorted.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(sorted[n / 2]),
        _ => Some((sorted[n / 2 - 1] + sorted[n / 2]) / 2.0),
    }
}

/// The nearest-rank percentile: the smallest sample that at least `p`
/// percent of the samples are less than or equal to. Always a real sample,
/// never an interpolation.
pub(crate) fn percentile(samples: &[f64], p: f64) -> Option<f64> {
    let sorted = sorted(samples);
    if sorted.is_empty() {
        return None;
    }
    let rank = (p / 100.0 * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// The largest sample.
pub(crate) fn max(samples: &[f64]) -> Option<f64> {
    samples.iter().copied().max_by(f64::total_cmp)
}

/// `a / b`, or `None` where that is not a number worth printing.
pub(crate) fn ratio(a: f64, b: f64) -> Option<f64> {
    let ratio = a / b;
    ratio.is_finite().then_some(ratio)
}

fn sorted(samples: &[f64]) -> Vec<f64> {
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(median(&[7.0]), Some(7.0));
        assert_eq!(median(&[]), None);
    }

    #[test]
    fn p90_is_a_nearest_rank_sample() {
        let ten: Vec<f64> = (1..=10).rev().map(f64::from).collect();
        assert_eq!(percentile(&ten, 90.0), Some(9.0));
        let hundred: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&hundred, 90.0), Some(90.0));
        assert_eq!(percentile(&[5.0], 90.0), Some(5.0));
        assert_eq!(percentile(&[1.0, 2.0], 0.0), Some(1.0));
        assert_eq!(percentile(&[], 90.0), None);
    }

    #[test]
    fn max_of_samples() {
        assert_eq!(max(&[2.0, 7.5, -1.0]), Some(7.5));
        assert_eq!(max(&[]), None);
    }

    #[test]
    fn an_outlier_moves_neither_median_nor_p90_much() {
        let mut samples = vec![1.0; 19];
        samples.push(1000.0);
        assert_eq!(
            Summary::of(&samples),
            Some(Summary {
                median: 1.0,
                p90: 1.0
            })
        );
    }

    #[test]
    fn ratios_refuse_division_by_zero() {
        assert_eq!(ratio(3.0, 2.0), Some(1.5));
        assert_eq!(ratio(1.0, 0.0), None);
    }
}
