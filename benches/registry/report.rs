//! Summaries of repeated measurements and the Markdown tables the benchmark prints.

use std::fmt::Write as _;

/// Median, minimum and maximum of the samples of one figure.
#[derive(Debug, Clone, Copy)]
pub struct Summary {
    pub median: f64,
    pub min: f64,
    pub max: f64,
}

impl Summary {
    /// Summarizes `samples`; `None` when there are none. The median of an even count is
    /// the mean of the two middle samples.
    pub fn of(samples: &[f64]) -> Option<Self> {
        let mut sorted = samples.to_vec();
        sorted.sort_by(f64::total_cmp);
        let count = sorted.len();
        if count == 0 {
            return None;
        }
        let median = if count % 2 == 1 {
            sorted[count / 2]
        } else {
            (sorted[count / 2 - 1] + sorted[count / 2]) / 2.0
        };
        Some(Self {
            median,
            min: sorted[0],
            max: sorted[count - 1],
        })
    }

    /// Formats as `median (min–max)` with `decimals` digits after the point.
    pub fn display(&self, decimals: usize) -> String {
        format!(
            "{:.decimals$} ({:.decimals$}–{:.decimals$})",
            self.median, self.min, self.max
        )
    }
}

/// A target and whether a median meets it.
#[derive(Debug, Clone, Copy)]
pub enum Target {
    None,
    AtLeast(f64),
    AtMost(f64),
    Below(f64),
}

impl Target {
    fn describe(self, unit: &str) -> String {
        match self {
            Target::None => "–".to_owned(),
            Target::AtLeast(value) => format!("≥ {value} {unit}"),
            Target::AtMost(value) => format!("≤ {value} {unit}"),
            Target::Below(value) => format!("< {value} {unit}"),
        }
    }

    /// `yes` or `no` for a median, `–` without a target.
    pub fn verdict(self, median: f64) -> &'static str {
        let met = match self {
            Target::None => return "–",
            Target::AtLeast(value) => median >= value,
            Target::AtMost(value) => median <= value,
            Target::Below(value) => median < value,
        };
        if met { "yes" } else { "no" }
    }
}

/// One row of a figures table.
pub struct Figure {
    pub name: String,
    pub unit: &'static str,
    pub decimals: usize,
    pub target: Target,
    pub samples: Vec<f64>,
}

/// Renders figures as a Markdown table: median (min–max), unit, target and verdict.
pub fn figures_table(figures: &[Figure]) -> String {
    let mut table = String::from(
        "| figure | median (min–max) | unit | target | met |\n|---|---|---|---|---|\n",
    );
    for figure in figures {
        let (value, verdict) = match Summary::of(&figure.samples) {
            Some(summary) => (
                summary.display(figure.decimals),
                figure.target.verdict(summary.median),
            ),
            None => ("not measured".to_owned(), "–"),
        };
        let _ = writeln!(
            table,
            "| {} | {value} | {} | {} | {verdict} |",
            figure.name,
            figure.unit,
            figure.target.describe(figure.unit)
        );
    }
    table
}
