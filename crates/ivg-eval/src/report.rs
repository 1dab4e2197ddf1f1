//! Summary statistics and renderings for an experiment report (the sentiment
//! experiment of method.md): per method the mean gold reward with a Student-t
//! 95% confidence interval, the paired win rate against Base, fluency (mean
//! base-model NLL per token), throughput and wall time, rendered as a
//! markdown table and as a self-contained SVG bar chart.
//!
//! Everything here is a pure function over numbers and strings; writing the
//! files is the caller's job. The t quantile follows the standard tables for
//! small degrees of freedom and the Cornish–Fisher expansion of Student's t
//! about the normal quantile (Abramowitz & Stegun 26.7.5) beyond them.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

/// A sample mean with its two-sided 95% confidence interval over `n` values.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Interval {
    pub mean: f64,
    pub low: f64,
    pub high: f64,
    pub n: usize,
}

/// t_{0.975, df} for df = 1..=30, to 6 decimals; below 31 degrees of freedom
/// the asymptotic expansion is too coarse, so exact values are tabulated.
const T975_TABLE: [f64; 30] = [
    12.706205, 4.302653, 3.182446, 2.776445, 2.570582, 2.446912, 2.364624, 2.306004, 2.262157,
    2.228139, 2.200985, 2.178813, 2.160369, 2.144787, 2.131450, 2.119905, 2.109816, 2.100922,
    2.093024, 2.085963, 2.079614, 2.073873, 2.068658, 2.063899, 2.059539, 2.055529, 2.051831,
    2.048407, 2.045230, 2.042272,
];

/// The standard normal 0.975 quantile.
const Z975: f64 = 1.959_963_984_540_054;

/// The 0.975 quantile of Student's t with `df` degrees of freedom (df ≥ 1).
///
/// Beyond the table, the Cornish–Fisher expansion in 1/df to fourth order is
/// accurate to better than 1e-5 from df = 31 on, and exact as df → ∞.
fn t_quantile_975(df: usize) -> f64 {
    if let Some(t) = df.checked_sub(1).and_then(|i| T975_TABLE.get(i)) {
        return *t;
    }
    let z = Z975;
    let v = df as f64;
    let (z3, z5, z7, z9) = (z.powi(3), z.powi(5), z.powi(7), z.powi(9));
    let g1 = (z3 + z) / 4.0;
    let g2 = (5.0 * z5 + 16.0 * z3 + 3.0 * z) / 96.0;
    let g3 = (3.0 * z7 + 19.0 * z5 + 17.0 * z3 - 15.0 * z) / 384.0;
    let g4 = (79.0 * z9 + 776.0 * z7 + 1482.0 * z5 - 1920.0 * z3 - 945.0 * z) / 92160.0;
    z + g1 / v + g2 / v.powi(2) + g3 / v.powi(3) + g4 / v.powi(4)
}

/// Mean ± t_{0.975, n−1} · s/√n, with `s` the sample standard deviation
/// (n − 1 denominator): the usual interval for a mean of i.i.d. draws whose
/// variance is estimated from the same sample.
///
/// `None` for fewer than two values (no variance estimate) or any non-finite
/// value (which would poison the mean silently).
pub fn mean_ci95(xs: &[f64]) -> Option<Interval> {
    let n = xs.len();
    if n < 2 || xs.iter().any(|x| !x.is_finite()) {
        return None;
    }
    let nf = n as f64;
    let mean = xs.iter().sum::<f64>() / nf;
    let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (nf - 1.0);
    let half = t_quantile_975(n - 1) * (var / nf).sqrt();
    Some(Interval {
        mean,
        low: mean - half,
        high: mean + half,
        n,
    })
}

/// Win rate of `method` over `base`, paired by index (same prompt and seed):
/// each pair scores 1 if the method's reward is higher, 0.5 on a tie, 0
/// otherwise; the interval is [`mean_ci95`] of those scores, clipped to
/// [0, 1] (a rate cannot leave it; the t interval does for small n). Pairing
/// removes the prompt-to-prompt variance an unpaired comparison would carry.
///
/// `None` when the lengths differ, fewer than two pairs exist, or any value
/// is non-finite.
pub fn win_rate(method: &[f64], base: &[f64]) -> Option<Interval> {
    if method.len() != base.len() {
        return None;
    }
    if method.iter().chain(base).any(|x| !x.is_finite()) {
        return None;
    }
    let scores: Vec<f64> = method
        .iter()
        .zip(base)
        .map(|(m, b)| match m.partial_cmp(b) {
            Some(std::cmp::Ordering::Greater) => 1.0,
            Some(std::cmp::Ordering::Equal) => 0.5,
            _ => 0.0,
        })
        .collect();
    mean_ci95(&scores).map(|iv| Interval {
        low: iv.low.max(0.0),
        high: iv.high.min(1.0),
        ..iv
    })
}

/// One method's row in the report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MethodSummary {
    pub method: String,
    /// Gold reward of the outputs.
    pub reward: Interval,
    /// Paired win rate against Base; `None` for Base itself.
    pub win_rate: Option<Interval>,
    /// Mean base-model negative log-likelihood per output token (fluency).
    pub nll: Option<f64>,
    pub tokens_per_second: f64,
    pub wall_seconds: f64,
}

/// Placeholder for a missing value in the table.
const MISSING: &str = "–";

/// `mean [low, high]` with three decimals.
fn interval_cell(iv: &Interval) -> String {
    format!("{:.3} [{:.3}, {:.3}]", iv.mean, iv.low, iv.high)
}

/// A method name safe inside a markdown table cell (a `|` would split it).
fn markdown_cell(text: &str) -> String {
    text.replace('|', "\\|")
}

/// The report's markdown table, one row per method in the given order.
pub fn markdown_table(rows: &[MethodSummary]) -> String {
    let mut out = String::from(
        "| method | gold reward (mean [95% CI]) | win rate vs Base [95% CI] \
         | base NLL/token | tokens/s | wall s |\n\
         |---|---|---|---|---|---|\n",
    );
    for row in rows {
        let win = row
            .win_rate
            .as_ref()
            .map_or_else(|| MISSING.to_string(), interval_cell);
        let nll = row
            .nll
            .map_or_else(|| MISSING.to_string(), |v| format!("{v:.3}"));
        // Writing into a String cannot fail.
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {:.1} | {:.1} |",
            markdown_cell(&row.method),
            interval_cell(&row.reward),
            win,
            nll,
            row.tokens_per_second,
            row.wall_seconds,
        );
    }
    out
}

/// Escapes the five XML special characters for text and attribute values.
fn xml_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            _ => out.push(c),
        }
    }
    out
}

/// A "nice" tick step (1, 2 or 5 × 10^k) giving about five ticks over `span`.
fn nice_step(span: f64) -> f64 {
    let raw = span / 5.0;
    let magnitude = 10f64.powf(raw.log10().floor());
    let fraction = raw / magnitude;
    let nice = if fraction <= 1.0 {
        1.0
    } else if fraction <= 2.0 {
        2.0
    } else if fraction <= 5.0 {
        5.0
    } else {
        10.0
    };
    nice * magnitude
}

/// The x range of the plot: it covers zero and every finite mean and CI
/// bound, widened to whole tick steps so the axis ends on a tick.
/// Returns (lo, hi, step).
fn x_domain(rows: &[MethodSummary]) -> (f64, f64, f64) {
    let values = rows
        .iter()
        .flat_map(|r| [r.reward.mean, r.reward.low, r.reward.high])
        .filter(|v| v.is_finite());
    let (mut lo, mut hi) = values.fold((0.0f64, 0.0f64), |(lo, hi), v| (lo.min(v), hi.max(v)));
    if hi - lo <= f64::EPSILON * hi.abs().max(lo.abs()).max(1.0) {
        // All values zero (or no rows): show a unit range rather than a point.
        hi = lo + 1.0;
    }
    let step = nice_step(hi - lo);
    lo = (lo / step).floor() * step;
    hi = (hi / step).ceil() * step;
    (lo, hi, step)
}

/// Decimals needed to print multiples of `step` without noise.
fn tick_decimals(step: f64) -> usize {
    let d = -step.log10().floor();
    if d > 0.0 {
        d as usize
    } else {
        0
    }
}

/// Geometry shared by the SVG pieces.
struct Layout {
    width: f64,
    plot_left: f64,
    plot_right: f64,
    plot_top: f64,
    row_height: f64,
    lo: f64,
    hi: f64,
}

impl Layout {
    fn new(rows: &[MethodSummary], lo: f64, hi: f64) -> Self {
        let longest = rows
            .iter()
            .map(|r| r.method.chars().count())
            .max()
            .unwrap_or(0);
        let label_width = (longest as f64 * 7.5 + 16.0).clamp(60.0, 260.0);
        let width = 640.0;
        Layout {
            width,
            plot_left: label_width,
            plot_right: width - 24.0,
            plot_top: 40.0,
            row_height: 28.0,
            lo,
            hi,
        }
    }

    /// Pixel x of a data value; non-finite values sit at zero.
    fn x(&self, value: f64) -> f64 {
        let v = if value.is_finite() { value } else { 0.0 };
        let t = (v - self.lo) / (self.hi - self.lo);
        self.plot_left + t.clamp(0.0, 1.0) * (self.plot_right - self.plot_left)
    }

    fn plot_bottom(&self, n_rows: usize) -> f64 {
        self.plot_top + self.row_height * n_rows.max(1) as f64
    }
}

/// One bar (zero to the mean), its CI error bar with caps, and its label.
fn svg_row(out: &mut String, layout: &Layout, index: usize, row: &MethodSummary) {
    let top = layout.plot_top + layout.row_height * index as f64;
    let mid = top + layout.row_height / 2.0;
    let bar_height = layout.row_height * 0.6;
    let (x0, x1) = (layout.x(0.0), layout.x(row.reward.mean));
    let (lx, hx) = (layout.x(row.reward.low), layout.x(row.reward.high));
    let name = xml_escape(&row.method);
    let _ = writeln!(
        out,
        r#"<text class="label" x="{:.1}" y="{:.1}" text-anchor="end" dominant-baseline="middle">{name}</text>"#,
        layout.plot_left - 8.0,
        mid,
    );
    let _ = writeln!(
        out,
        r##"<rect class="bar" x="{:.1}" y="{:.1}" width="{:.1}" height="{:.1}" fill="#4c78a8"><title>{name}: {:.3} [{:.3}, {:.3}]</title></rect>"##,
        x0.min(x1),
        mid - bar_height / 2.0,
        (x1 - x0).abs(),
        bar_height,
        row.reward.mean,
        row.reward.low,
        row.reward.high,
    );
    let cap = bar_height / 3.0;
    let _ = writeln!(
        out,
        r##"<path class="ci" d="M{lx:.1} {mid:.1}H{hx:.1}M{lx:.1} {:.1}V{:.1}M{hx:.1} {:.1}V{:.1}" stroke="#222" stroke-width="1.5" fill="none"/>"##,
        mid - cap,
        mid + cap,
        mid - cap,
        mid + cap,
    );
}

/// The x axis along the bottom of the plot with tick marks and labels.
fn svg_axis(out: &mut String, layout: &Layout, bottom: f64, step: f64) {
    let _ = writeln!(
        out,
        r##"<line class="axis" x1="{:.1}" y1="{bottom:.1}" x2="{:.1}" y2="{bottom:.1}" stroke="#222"/>"##,
        layout.plot_left, layout.plot_right,
    );
    let decimals = tick_decimals(step);
    let count = ((layout.hi - layout.lo) / step).round() as i64;
    for i in 0..=count {
        let value = layout.lo + step * i as f64;
        // Avoid printing "-0.0" for the tick at zero.
        let value = if value.abs() < step * 1e-9 {
            0.0
        } else {
            value
        };
        let x = layout.x(value);
        let _ = writeln!(
            out,
            r##"<line class="tick" x1="{x:.1}" y1="{bottom:.1}" x2="{x:.1}" y2="{:.1}" stroke="#222"/><text class="tick-label" x="{x:.1}" y="{:.1}" text-anchor="middle">{value:.decimals$}</text>"##,
            bottom + 5.0,
            bottom + 18.0,
        );
    }
}

/// A horizontal bar chart of the mean gold reward per method with 95% CI
/// error bars, as one self-contained SVG document (generic font family, no
/// scripts or external references) so it embeds anywhere.
pub fn svg_plot(rows: &[MethodSummary], title: &str) -> String {
    let (lo, hi, step) = x_domain(rows);
    let layout = Layout::new(rows, lo, hi);
    let bottom = layout.plot_bottom(rows.len());
    let height = bottom + 48.0;
    let mut out = String::new();
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w:.0}" height="{height:.0}" viewBox="0 0 {w:.0} {height:.0}" font-family="sans-serif" font-size="12">"#,
        w = layout.width,
    );
    let _ = writeln!(
        out,
        r#"<text class="title" x="{:.1}" y="22" text-anchor="middle" font-size="14">{}</text>"#,
        layout.width / 2.0,
        xml_escape(title),
    );
    for (i, row) in rows.iter().enumerate() {
        svg_row(&mut out, &layout, i, row);
    }
    let zero = layout.x(0.0);
    let _ = writeln!(
        out,
        r##"<line class="zero" x1="{zero:.1}" y1="{:.1}" x2="{zero:.1}" y2="{bottom:.1}" stroke="#888" stroke-dasharray="3 3"/>"##,
        layout.plot_top,
    );
    svg_axis(&mut out, &layout, bottom, step);
    let _ = writeln!(
        out,
        r#"<text class="axis-title" x="{:.1}" y="{:.1}" text-anchor="middle">mean gold reward (95% CI)</text>"#,
        (layout.plot_left + layout.plot_right) / 2.0,
        bottom + 38.0,
    );
    out.push_str("</svg>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() <= tol
    }

    #[test]
    fn t_quantile_matches_known_values() {
        // Reference values: the Student-t 0.975 quantile computed with mpmath
        // (regularized incomplete beta, 30 digits).
        let cases = [
            (1, 12.706_204_74),
            (2, 4.302_652_73),
            (5, 2.570_581_836),
            (10, 2.228_138_852),
            (29, 2.045_229_642),
            (30, 2.042_272_456),
            (31, 2.039_513_446),
            (40, 2.021_075_39),
            (60, 2.000_297_822),
            (100, 1.983_971_519),
            (1000, 1.962_339_081),
        ];
        for (df, want) in cases {
            let got = t_quantile_975(df);
            assert!(close(got, want, 1e-5), "df={df}: got {got}, want {want}");
        }
        // Tends to the normal quantile.
        assert!(close(t_quantile_975(1_000_000), Z975, 1e-5));
    }

    #[test]
    fn t_quantile_decreases_with_df() {
        let qs: Vec<f64> = (1..200).map(t_quantile_975).collect();
        for w in qs.windows(2) {
            assert!(w[1] < w[0], "not decreasing: {w:?}");
        }
    }

    #[test]
    fn mean_ci95_hand_computed() {
        // mean 3, s² = 2.5, s/√n = √0.5, t(4) = 2.776445.
        let iv = mean_ci95(&[1.0, 2.0, 3.0, 4.0, 5.0]).unwrap();
        let half = 2.776_445_105 * 0.5f64.sqrt();
        assert_eq!(iv.n, 5);
        assert!(close(iv.mean, 3.0, 1e-12));
        assert!(close(iv.low, 3.0 - half, 1e-6), "{iv:?}");
        assert!(close(iv.high, 3.0 + half, 1e-6), "{iv:?}");
    }

    #[test]
    fn mean_ci95_two_values_uses_df_one() {
        // mean 1, s = √2, s/√2 = 1, so the half-width is t(1) itself.
        let iv = mean_ci95(&[0.0, 2.0]).unwrap();
        assert!(close(iv.high - iv.mean, 12.706_205, 1e-6), "{iv:?}");
        assert!(close(iv.mean - iv.low, 12.706_205, 1e-6), "{iv:?}");
    }

    #[test]
    fn mean_ci95_constant_sample_is_a_point() {
        let iv = mean_ci95(&[0.25; 7]).unwrap();
        assert_eq!((iv.mean, iv.low, iv.high, iv.n), (0.25, 0.25, 0.25, 7));
    }

    #[test]
    fn mean_ci95_rejects_short_or_non_finite() {
        assert_eq!(mean_ci95(&[]), None);
        assert_eq!(mean_ci95(&[1.0]), None);
        assert_eq!(mean_ci95(&[1.0, f64::NAN]), None);
        assert_eq!(mean_ci95(&[1.0, f64::INFINITY, 2.0]), None);
    }

    #[test]
    fn win_rate_scores_wins_ties_losses() {
        // Scores: 1, 0.5, 0, 1 -> mean 0.625.
        let iv = win_rate(&[2.0, 1.0, 0.0, 5.0], &[1.0, 1.0, 3.0, -1.0]).unwrap();
        let t = mean_ci95(&[1.0, 0.5, 0.0, 1.0]).unwrap();
        // With n = 4 the t interval leaves [0, 1] on both sides; it is clipped.
        assert!(t.low < 0.0 && t.high > 1.0);
        assert_eq!((iv.mean, iv.low, iv.high), (t.mean, 0.0, 1.0));
        assert!(close(iv.mean, 0.625, 1e-12));
        assert_eq!(iv.n, 4);
    }

    #[test]
    fn win_rate_against_itself_is_one_half() {
        let xs = [0.1, -0.4, 0.9];
        let iv = win_rate(&xs, &xs).unwrap();
        assert_eq!((iv.mean, iv.low, iv.high), (0.5, 0.5, 0.5));
    }

    #[test]
    fn win_rate_rejects_mismatch_and_short() {
        assert_eq!(win_rate(&[1.0, 2.0], &[1.0]), None);
        assert_eq!(win_rate(&[1.0], &[0.0]), None);
        assert_eq!(win_rate(&[1.0, f64::NAN], &[0.0, 0.0]), None);
    }

    fn summary(method: &str, mean: f64, low: f64, high: f64) -> MethodSummary {
        MethodSummary {
            method: method.to_string(),
            reward: Interval {
                mean,
                low,
                high,
                n: 10,
            },
            win_rate: None,
            nll: None,
            tokens_per_second: 0.0,
            wall_seconds: 0.0,
        }
    }

    fn two_rows() -> Vec<MethodSummary> {
        let base = MethodSummary {
            tokens_per_second: 123.456,
            wall_seconds: 9.96,
            ..summary("Base", 0.1234, 0.0, 0.2468)
        };
        let ivg = MethodSummary {
            win_rate: Some(Interval {
                mean: 0.75,
                low: 0.5,
                high: 1.0,
                n: 10,
            }),
            nll: Some(2.34567),
            tokens_per_second: 45.0,
            wall_seconds: 100.04,
            ..summary("IVG", 0.5, 0.4, 0.6)
        };
        vec![base, ivg]
    }

    #[test]
    fn markdown_table_exact() {
        let want = "\
| method | gold reward (mean [95% CI]) | win rate vs Base [95% CI] | base NLL/token | tokens/s | wall s |
|---|---|---|---|---|---|
| Base | 0.123 [0.000, 0.247] | – | – | 123.5 | 10.0 |
| IVG | 0.500 [0.400, 0.600] | 0.750 [0.500, 1.000] | 2.346 | 45.0 | 100.0 |
";
        assert_eq!(markdown_table(&two_rows()), want);
    }

    #[test]
    fn markdown_table_escapes_pipes() {
        let table = markdown_table(&[summary("a|b", 0.0, 0.0, 0.0)]);
        assert!(table.contains("| a\\|b |"), "{table}");
    }

    #[test]
    fn summary_round_trips_through_json() {
        let rows = two_rows();
        let json = serde_json::to_string(&rows).unwrap();
        let back: Vec<MethodSummary> = serde_json::from_str(&json).unwrap();
        assert_eq!(back, rows);
    }

    /// The `width` attribute of every `<rect class="bar"` in order.
    fn bar_widths(svg: &str) -> Vec<f64> {
        svg.split(r#"<rect class="bar""#)
            .skip(1)
            .map(|s| {
                let rest = &s[s.find("width=\"").unwrap() + 7..];
                rest[..rest.find('"').unwrap()].parse().unwrap()
            })
            .collect()
    }

    /// The `x` attribute of every `<rect class="bar"` in order.
    fn bar_xs(svg: &str) -> Vec<f64> {
        svg.split(r#"<rect class="bar""#)
            .skip(1)
            .map(|s| {
                let rest = &s[s.find(" x=\"").unwrap() + 4..];
                rest[..rest.find('"').unwrap()].parse().unwrap()
            })
            .collect()
    }

    fn zero_x(svg: &str) -> f64 {
        let s = &svg[svg.find(r#"<line class="zero" x1=""#).unwrap() + 23..];
        s[..s.find('"').unwrap()].parse().unwrap()
    }

    #[test]
    fn svg_is_a_document_with_one_bar_per_method() {
        let svg = svg_plot(&two_rows(), "IMDB sentiment");
        assert!(svg.starts_with("<svg"), "{svg}");
        assert!(svg.ends_with("</svg>"), "{svg}");
        assert_eq!(svg.matches(r#"<rect class="bar""#).count(), 2);
        assert_eq!(svg.matches(r#"<path class="ci""#).count(), 2);
        assert_eq!(svg.matches(r#"<line class="zero""#).count(), 1);
        assert!(svg.matches(r#"<line class="tick""#).count() >= 3);
        assert!(svg.contains(">IMDB sentiment</text>"));
        assert!(!svg.contains("<script") && !svg.contains("href"));
        assert_eq!(svg.matches("<svg").count(), 1);
    }

    #[test]
    fn svg_escapes_names_and_title() {
        let svg = svg_plot(&[summary("a<b&c>d", 0.5, 0.4, 0.6)], "t \"<&>\"");
        assert!(svg.contains("a&lt;b&amp;c&gt;d"), "{svg}");
        assert!(svg.contains("t &quot;&lt;&amp;&gt;&quot;"), "{svg}");
        assert!(!svg.contains("a<b"), "{svg}");
        assert!(!svg.contains("<&>"), "{svg}");
    }

    #[test]
    fn svg_larger_mean_longer_bar() {
        let rows = [
            summary("small", 0.2, 0.1, 0.3),
            summary("large", 0.8, 0.7, 0.9),
        ];
        let widths = bar_widths(&svg_plot(&rows, "t"));
        assert_eq!(widths.len(), 2);
        assert!(widths[1] > widths[0], "{widths:?}");
        // Bars start at zero, so their lengths are proportional to the means.
        assert!(close(widths[1] / widths[0], 4.0, 0.05), "{widths:?}");
    }

    #[test]
    fn svg_negative_mean_extends_left_of_zero() {
        let rows = [
            summary("neg", -0.5, -0.7, -0.3),
            summary("pos", 0.25, 0.1, 0.4),
        ];
        let svg = svg_plot(&rows, "t");
        let zero = zero_x(&svg);
        let (xs, widths) = (bar_xs(&svg), bar_widths(&svg));
        // Negative bar ends at zero; positive bar starts there.
        assert!(
            close(xs[0] + widths[0], zero, 0.11),
            "{xs:?} {widths:?} {zero}"
        );
        assert!(close(xs[1], zero, 0.11), "{xs:?} {zero}");
        assert!(close(widths[0] / widths[1], 2.0, 0.05), "{widths:?}");
        assert!(
            svg.contains(">-0.8</text>") || svg.contains(">-1.0</text>"),
            "{svg}"
        );
    }

    #[test]
    fn svg_handles_empty_and_degenerate_input() {
        let svg = svg_plot(&[], "empty");
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"));
        assert_eq!(svg.matches(r#"<rect class="bar""#).count(), 0);
        let svg = svg_plot(&[summary("zero", 0.0, 0.0, 0.0)], "z");
        assert_eq!(bar_widths(&svg), vec![0.0]);
        assert!(!svg.contains("NaN") && !svg.contains("inf"), "{svg}");
    }

    #[test]
    fn nice_steps() {
        assert!(close(nice_step(1.0), 0.2, 1e-12));
        assert!(close(nice_step(0.9), 0.2, 1e-12));
        assert!(close(nice_step(3.0), 1.0, 1e-12));
        assert!(close(nice_step(40.0), 10.0, 1e-12));
        assert_eq!(tick_decimals(0.2), 1);
        assert_eq!(tick_decimals(0.05), 2);
        assert_eq!(tick_decimals(10.0), 0);
    }
}
