//! Count, mean, nearest-rank percentiles and maximum of one sample of durations.

use crate::domain::query::DurationStats;

const MICROS_PER_SECOND: f64 = 1_000_000.0;

/// Percentiles reported for every sample, in percent.
const PERCENTILES: [usize; 3] = [50, 90, 95];

/// Zero-based index of the nearest-rank `percent`-th percentile in `count` sorted values:
/// rank ⌈percent / 100 × count⌉, computed in integers so no rounding moves it, and at
/// least 1.
fn nearest_rank_index(percent: usize, count: usize) -> usize {
    (count * percent).div_ceil(100).max(1) - 1
}

/// Describes `values`, durations in whole microseconds, in seconds. The slice is
/// reordered. An empty sample has every figure 0.
///
/// Each percentile is the value at its rank, found by selection rather than a full sort:
/// the highest rank first, then each lower one within the part below it.
pub fn describe(values: &mut [i64]) -> DurationStats {
    let count = values.len();
    let Some(&max) = values.iter().max() else {
        return DurationStats::default();
    };
    let sum: i128 = values.iter().map(|&value| i128::from(value)).sum();

    let mut found = [0_i64; PERCENTILES.len()];
    let mut upper = count;
    for (slot, percent) in PERCENTILES.iter().enumerate().rev() {
        let index = nearest_rank_index(*percent, count);
        let (_, value, _) = values[..upper].select_nth_unstable(index);
        found[slot] = *value;
        upper = index + 1;
    }

    DurationStats {
        count: count as i64,
        // One division of the exact sum, so a mean that is a whole number of microseconds
        // comes out as exactly as the durations themselves.
        mean: sum as f64 / (count as f64 * MICROS_PER_SECOND),
        median: seconds(found[0]),
        p90: seconds(found[1]),
        p95: seconds(found[2]),
        max: seconds(max),
    }
}

/// Converts whole microseconds to seconds with one correctly rounded division.
fn seconds(micros: i64) -> f64 {
    micros as f64 / MICROS_PER_SECOND
}

#[cfg(test)]
mod tests {
    use super::*;

    fn micros(seconds: &[i64]) -> Vec<i64> {
        seconds.iter().map(|value| value * 1_000_000).collect()
    }

    #[test]
    fn five_values_follow_the_worked_example() {
        let mut values = micros(&[240, 60, 3600, 180, 120]);
        let stats = describe(&mut values);
        assert_eq!(stats, DurationStats { count: 5, mean: 840.0, median: 180.0, p90: 3600.0, p95: 3600.0, max: 3600.0 });
    }

    #[test]
    fn ten_values_median_is_lower_middle() {
        let mut values = micros(&[600, 540, 480, 420, 360, 300, 240, 180, 120, 60]);
        let stats = describe(&mut values);
        assert_eq!((stats.median, stats.p90, stats.p95), (300.0, 540.0, 600.0));
    }

    #[test]
    fn ranks_match_the_definition_for_every_small_count() {
        for count in 1..=250 {
            let mut values: Vec<i64> = (1..=count as i64).rev().collect();
            let stats = describe(&mut values);
            for (percent, figure) in [(50, stats.median), (90, stats.p90), (95, stats.p95)] {
                // The value at rank r of 1..=count microseconds is r microseconds.
                let rank = ((percent as f64 / 100.0) * count as f64).ceil().max(1.0);
                assert_eq!(figure, rank / 1_000_000.0, "p{percent} of {count} values");
            }
        }
    }

    #[test]
    fn empty_sample_is_all_zero() {
        assert_eq!(describe(&mut []), DurationStats::default());
    }

    #[test]
    fn microseconds_and_negative_values_survive() {
        let mut values = vec![1_500_001, -60_000_000];
        let stats = describe(&mut values);
        assert_eq!(stats.median, -60.0);
        assert_eq!(stats.max, 1.500001);
        assert_eq!(stats.mean, (1_500_001.0 - 60_000_000.0) / 2_000_000.0);
    }
}
