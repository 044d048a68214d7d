//! PNG line and scatter plots with plotters' bitmap backend. The font (DejaVu Sans Mono) is
//! bundled and drawn with ab_glyph, so no system font library is needed.

use std::path::Path;
use std::sync::Once;

use plotters::prelude::*;
use plotters::style::FontStyle;

static FONT: Once = Once::new();

fn register_font() {
    FONT.call_once(|| {
        let bytes: &'static [u8] = include_bytes!("../assets/DejaVuSansMono.ttf");
        // A bundled, known-good font; failure would be a build problem, reported on draw.
        let _ = plotters::style::register_font("sans-serif", FontStyle::Normal, bytes);
    });
}

/// One named series of (x, y) points.
#[derive(Clone, Debug, PartialEq)]
pub struct Series {
    /// Legend label.
    pub name: String,
    /// Points (non-finite ones are skipped).
    pub points: Vec<(f64, f64)>,
}

/// What to draw.
#[derive(Clone, Debug, PartialEq)]
pub struct Chart {
    /// Title.
    pub title: String,
    /// X axis label.
    pub x_label: String,
    /// Y axis label.
    pub y_label: String,
    /// Plot log10(x).
    pub log_x: bool,
    /// Plot log10(y).
    pub log_y: bool,
    /// Markers only (no lines).
    pub scatter: bool,
    /// Draw the y = x line.
    pub diagonal: bool,
    /// Horizontal reference lines across the plot: (legend label, y).
    pub hlines: Vec<(String, f64)>,
}

fn tr(v: f64, log: bool) -> Option<f64> {
    let v = if log {
        if v > 0.0 { v.log10() } else { return None }
    } else {
        v
    };
    v.is_finite().then_some(v)
}

/// Draws `series` into a 960×640 PNG at `path`.
pub fn draw(path: &Path, chart: &Chart, series: &[Series]) -> anyhow::Result<()> {
    register_font();
    let data: Vec<(String, Vec<(f64, f64)>)> = series
        .iter()
        .map(|s| {
            let pts = s
                .points
                .iter()
                .filter_map(|&(x, y)| Some((tr(x, chart.log_x)?, tr(y, chart.log_y)?)))
                .collect();
            (s.name.clone(), pts)
        })
        .collect();
    let all: Vec<(f64, f64)> = data.iter().flat_map(|(_, p)| p.iter().copied()).collect();
    if all.is_empty() {
        anyhow::bail!("nothing to plot for {}", path.display());
    }
    let (mut x0, mut x1, mut y0, mut y1) = all.iter().fold(
        (
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::INFINITY,
            f64::NEG_INFINITY,
        ),
        |(a, b, c, d), &(x, y)| (a.min(x), b.max(x), c.min(y), d.max(y)),
    );
    for (_, y) in &chart.hlines {
        if let Some(y) = tr(*y, chart.log_y) {
            (y0, y1) = (y0.min(y), y1.max(y));
        }
    }
    if chart.diagonal {
        let lo = x0.min(y0);
        let hi = x1.max(y1);
        (x0, x1, y0, y1) = (lo, hi, lo, hi);
    }
    let pad = |lo: f64, hi: f64| {
        let span = (hi - lo).abs().max(1e-9);
        (lo - 0.05 * span, hi + 0.05 * span)
    };
    let (x0, x1) = pad(x0, x1);
    let (y0, y1) = pad(y0, y1);
    let root = BitMapBackend::new(path, (960, 640)).into_drawing_area();
    root.fill(&WHITE)?;
    let axis = |label: &str, log: bool| {
        if log {
            format!("{label} (log scale)")
        } else {
            label.to_string()
        }
    };
    // A log axis is drawn in log10 units but labelled with the values themselves.
    let values = |v: &f64| tick_label(10f64.powf(*v));
    let mut ctx = ChartBuilder::on(&root)
        .caption(&chart.title, ("sans-serif", 22))
        .margin(16)
        .x_label_area_size(48)
        .y_label_area_size(72)
        .build_cartesian_2d(x0..x1, y0..y1)?;
    let mut mesh = ctx.configure_mesh();
    mesh.x_desc(axis(&chart.x_label, chart.log_x))
        .y_desc(axis(&chart.y_label, chart.log_y))
        .label_style(("sans-serif", 14));
    if chart.log_x {
        mesh.x_label_formatter(&values);
    }
    if chart.log_y {
        mesh.y_label_formatter(&values);
    }
    mesh.draw()?;
    for (i, (name, y)) in chart.hlines.iter().enumerate() {
        let Some(y) = tr(*y, chart.log_y) else {
            continue;
        };
        let color = BLACK.mix(0.55 - 0.15 * (i % 3) as f64);
        ctx.draw_series(DashedLineSeries::new(
            vec![(x0, y), (x1, y)],
            8,
            5,
            color.stroke_width(2),
        ))?
        .label(name.clone())
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2)));
    }
    if chart.diagonal {
        ctx.draw_series(LineSeries::new(
            vec![(x0, x0), (x1, x1)],
            BLACK.mix(0.4).stroke_width(1),
        ))?
        .label("y = x")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], BLACK.mix(0.4)));
    }
    // A series with nothing drawable (e.g. no ε without privacy) gets no legend entry.
    let drawable = data.iter().filter(|(_, pts)| !pts.is_empty());
    for (i, (name, pts)) in drawable.enumerate() {
        let color = Palette99::pick(i).to_rgba();
        if chart.scatter {
            ctx.draw_series(
                pts.iter()
                    .map(|&(x, y)| Circle::new((x, y), 5, color.filled())),
            )?
            .label(name.clone())
            .legend(move |(x, y)| Circle::new((x + 9, y), 5, color.filled()));
        } else {
            ctx.draw_series(LineSeries::new(pts.iter().copied(), color.stroke_width(2)))?
                .label(name.clone())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2))
                });
        }
    }
    ctx.configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font(("sans-serif", 13))
        .position(SeriesLabelPosition::LowerRight)
        .draw()?;
    root.present()?;
    Ok(())
}

/// A tick value with at most three significant digits, trailing zeros dropped (scientific
/// outside 0.01..10⁴).
fn tick_label(x: f64) -> String {
    if x == 0.0 || !x.is_finite() {
        return format!("{x}");
    }
    let magnitude = x.abs().log10().floor();
    if !(-2.0..4.0).contains(&magnitude) {
        return format!("{x:.1e}");
    }
    let decimals = (2.0 - magnitude).max(0.0) as usize;
    let text = format!("{x:.decimals$}");
    if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_a_png_with_the_bundled_font() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.png");
        let chart = Chart {
            title: "test".into(),
            x_label: "x".into(),
            y_label: "y".into(),
            log_x: true,
            log_y: false,
            scatter: false,
            diagonal: false,
            hlines: vec![("reference".into(), 0.8)],
        };
        let s = Series {
            name: "a".into(),
            points: vec![(1.0, 0.5), (10.0, 0.7), (100.0, 0.9), (0.0, 1.0)],
        };
        draw(&path, &chart, &[s]).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(&bytes[1..4], b"PNG");
        assert!(bytes.len() > 1000);
    }

    #[test]
    fn log_ticks_show_the_values_with_three_digits() {
        assert_eq!(tick_label(31.6227), "31.6");
        assert_eq!(tick_label(100.0), "100");
        assert_eq!(tick_label(10.0), "10");
        assert_eq!(tick_label(0.5), "0.5");
        assert_eq!(tick_label(0.31622), "0.316");
        assert_eq!(tick_label(1234.6), "1235");
        assert_eq!(tick_label(31622.7), "3.2e4");
    }
}
