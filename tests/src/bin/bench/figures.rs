//! The benchmark's results as a table: each figure with its measured value,
//! the target it is held to (issue 11's right-hand column, issue 8's long
//! run and large revision, issue 5's footprint list) and PASS/FAIL, plus
//! the small statistics the figures need. Pure: no clock, no /proc.

use std::fmt::Write as _;

/// Whether a figure met its target.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Pass,
    Fail,
    /// Recorded for the footprint list; no target to meet.
    Info,
}

impl Verdict {
    pub fn at_most(value: f64, limit: f64) -> Verdict {
        if value <= limit {
            Verdict::Pass
        } else {
            Verdict::Fail
        }
    }

    pub fn holds(ok: bool) -> Verdict {
        if ok {
            Verdict::Pass
        } else {
            Verdict::Fail
        }
    }

    fn word(self) -> &'static str {
        match self {
            Verdict::Pass => "PASS",
            Verdict::Fail => "FAIL",
            Verdict::Info => "-",
        }
    }
}

/// One row of the table.
#[derive(Clone, Debug, PartialEq)]
pub struct Figure {
    pub name: String,
    pub value: String,
    pub target: String,
    pub verdict: Verdict,
}

impl Figure {
    pub fn new(name: impl Into<String>, value: impl Into<String>) -> Figure {
        Figure {
            name: name.into(),
            value: value.into(),
            target: String::new(),
            verdict: Verdict::Info,
        }
    }

    pub fn target(mut self, target: impl Into<String>, verdict: Verdict) -> Figure {
        self.target = target.into();
        self.verdict = verdict;
        self
    }
}

/// The figures as a Markdown table.
pub fn render(figures: &[Figure]) -> String {
    let mut out = String::from("| figure | measured | target | result |\n|---|---|---|---|\n");
    for f in figures {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} |",
            f.name,
            f.value,
            if f.target.is_empty() { "-" } else { &f.target },
            f.verdict.word()
        );
    }
    out
}

/// How many figures missed their target.
pub fn failures(figures: &[Figure]) -> usize {
    figures
        .iter()
        .filter(|f| f.verdict == Verdict::Fail)
        .count()
}

/// The median (mean of the middle two for an even count); `None` when empty.
pub fn median(values: &[f64]) -> Option<f64> {
    let mut sorted: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
    if sorted.is_empty() {
        return None;
    }
    sorted.sort_by(f64::total_cmp);
    let mid = sorted.len() / 2;
    Some(if sorted.len() % 2 == 1 {
        sorted[mid]
    } else {
        (sorted[mid - 1] + sorted[mid]) / 2.0
    })
}

/// The nearest-rank percentile `p` (0–100); `None` when empty.
pub fn percentile(values: &[f64], p: f64) -> Option<f64> {
    let mut sorted: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
    if sorted.is_empty() {
        return None;
    }
    sorted.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// The spread (max − min) of the values; 0 when empty.
pub fn spread(values: &[u64]) -> u64 {
    match (values.iter().max(), values.iter().min()) {
        (Some(max), Some(min)) => max - min,
        _ => 0,
    }
}

pub fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// A per-window count scaled to a per-hour rate.
pub fn per_hour(amount: f64, window_secs: f64) -> f64 {
    if window_secs > 0.0 {
        amount * 3600.0 / window_secs
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_and_percentile_cases() {
        let cases: &[(&[f64], Option<f64>, Option<f64>)] = &[
            (&[], None, None),
            (&[0.4], Some(0.4), Some(0.4)),
            (&[0.5, 0.1, 0.3], Some(0.3), Some(0.5)),
            (&[0.4, 0.1, 0.3, 0.2], Some(0.25), Some(0.4)),
            (&[f64::NAN, 1.0], Some(1.0), Some(1.0)),
        ];
        for (values, med, p90) in cases {
            assert_eq!(median(values), *med, "median of {values:?}");
            assert_eq!(percentile(values, 90.0), *p90, "p90 of {values:?}");
        }
        let hundred: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&hundred, 90.0), Some(90.0));
        assert_eq!(percentile(&hundred, 0.0), Some(1.0));
    }

    #[test]
    fn verdicts() {
        assert_eq!(Verdict::at_most(0.25, 0.25), Verdict::Pass);
        assert_eq!(Verdict::at_most(0.26, 0.25), Verdict::Fail);
        assert_eq!(Verdict::holds(false), Verdict::Fail);
    }

    #[test]
    fn spread_and_rates() {
        assert_eq!(spread(&[]), 0);
        assert_eq!(spread(&[5, 9, 7]), 4);
        assert_eq!(per_hour(13.0, 600.0), 78.0);
        assert_eq!(per_hour(1.0, 0.0), 0.0);
    }

    #[test]
    fn table_names_every_figure_and_its_verdict() {
        let figures = vec![
            Figure::new("idle CPU", "0.10 CPU-s/h").target("≤ 0.25 CPU-s/h", Verdict::Pass),
            Figure::new("binary", "16.8 MB").target("≤ 12 MB", Verdict::Fail),
            Figure::new("wake-ups", "3 per minute"),
        ];
        assert_eq!(
            render(&figures),
            "| figure | measured | target | result |\n|---|---|---|---|\n\
             | idle CPU | 0.10 CPU-s/h | ≤ 0.25 CPU-s/h | PASS |\n\
             | binary | 16.8 MB | ≤ 12 MB | FAIL |\n\
             | wake-ups | 3 per minute | - | - |\n"
        );
        assert_eq!(failures(&figures), 1);
    }
}
