//! HdrHistogram's percentile distribution text format (what
//! `outputPercentileDistribution` prints and the HdrHistogram plotter
//! reads), values in milliseconds. The hdrhistogram crate cannot write this
//! text itself.

use hdrhistogram::Histogram;
use std::fmt::Write;

/// Percentile ticks per half distance, as in HdrHistogram's default output.
const TICKS_PER_HALF: u32 = 5;

/// Renders `h` (recorded in µs) as a `.hgrm` text table in ms.
pub fn write_hgrm(h: &Histogram<u64>) -> String {
    let scale = 1000.0;
    let mut o = String::new();
    let _ = writeln!(o, "{:>12} {:>14} {:>10} {:>14}\n", "Value", "Percentile", "TotalCount", "1/(1-Percentile)");
    let mut total = 0u64;
    if !h.is_empty() {
        for v in h.iter_quantiles(TICKS_PER_HALF) {
            total += v.count_since_last_iteration();
            let q = v.quantile_iterated_to();
            let value = h.highest_equivalent(v.value_iterated_to()) as f64 / scale;
            if q < 1.0 {
                let _ = writeln!(o, "{value:12.3} {q:2.12} {total:10} {:14.2}", 1.0 / (1.0 - q));
            } else {
                let _ = writeln!(o, "{value:12.3} {q:2.12} {total:10}");
            }
        }
    }
    let (mean, sd, max) = if h.is_empty() {
        (0.0, 0.0, 0.0)
    } else {
        (h.mean() / scale, h.stdev() / scale, h.highest_equivalent(h.max()) as f64 / scale)
    };
    let sub_buckets = 2u64.pow((2.0 * 10f64.powi(h.sigfig() as i32)).log2().ceil() as u32);
    let _ = writeln!(o, "#[Mean    = {mean:12.3}, StdDeviation   = {sd:12.3}]");
    let _ = writeln!(o, "#[Max     = {max:12.3}, Total count    = {:12}]", h.len());
    let _ = writeln!(o, "#[Buckets = {:12}, SubBuckets     = {sub_buckets:12}]", h.buckets());
    o
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::new_histogram;

    #[test]
    fn hgrm_has_header_rows_and_footer() {
        let mut h = new_histogram();
        for v in 1..=1000u64 {
            h.record(v * 10).unwrap();
        }
        let text = write_hgrm(&h);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].contains("Value") && lines[0].contains("1/(1-Percentile)"));
        assert_eq!(lines[1], "");
        let rows: Vec<&str> = lines[2..].iter().copied().take_while(|l| !l.starts_with('#')).collect();
        assert!(rows.len() > 20);
        let last: Vec<&str> = rows.last().unwrap().split_whitespace().collect();
        assert_eq!(last.len(), 3, "the 100% row has no 1/(1-p) column");
        assert_eq!(last[1], "1.000000000000");
        assert_eq!(last[2], "1000");
        // Values are ms and non-decreasing.
        let values: Vec<f64> = rows.iter().map(|r| r.split_whitespace().next().unwrap().parse().unwrap()).collect();
        assert!(values.windows(2).all(|w| w[0] <= w[1]));
        assert!((values.last().unwrap() - 10.0).abs() < 0.1);
        assert!(text.contains("#[Mean    =") && text.contains("Total count    =         1000]"));
        assert!(text.contains("SubBuckets     =         2048]"));
    }

    #[test]
    fn empty_histogram_still_writes_a_valid_file() {
        let text = write_hgrm(&new_histogram());
        assert!(text.contains("Total count    =            0]"));
    }
}
