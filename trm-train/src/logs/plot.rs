//! Learning curves as PNG files (plotters' bitmap backend).
//!
//! Text needs a TrueType font; plotters' `ab_glyph` backend takes one from memory, so no
//! fontconfig is needed. The font is the file named by `TRM_PLOT_FONT`, else the first of a few
//! common system paths (DejaVu Sans, Liberation Sans, Noto Sans). Without one (or with
//! `TRM_PLOT_FONT` set empty), the curves are drawn without titles or axis labels (the file names
//! still say what each plot shows).

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use plotters::prelude::*;

use super::jsonl::Record;

/// Why plots could not be drawn.
#[derive(Debug)]
#[non_exhaustive]
pub enum PlotError {
    /// Creating the folder or reading the log failed.
    Io(std::io::Error),
    /// plotters failed to draw or encode a plot.
    Draw {
        /// The image being drawn.
        path: PathBuf,
        /// plotters' message.
        message: String,
    },
}

impl fmt::Display for PlotError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PlotError::Io(e) => write!(f, "plots: {e}"),
            PlotError::Draw { path, message } => {
                write!(f, "plot {}: {message}", path.display())
            }
        }
    }
}

impl std::error::Error for PlotError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            PlotError::Io(e) => Some(e),
            PlotError::Draw { .. } => None,
        }
    }
}

/// Font files tried after `TRM_PLOT_FONT`.
const FONT_CANDIDATES: &[&str] = &[
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
    "/usr/share/fonts/truetype/noto/NotoSans-Regular.ttf",
    "/System/Library/Fonts/Supplemental/Arial.ttf",
    "C:\\Windows\\Fonts\\arial.ttf",
];

/// Registers a font with plotters once; whether text can be drawn.
pub fn font_available() -> bool {
    static FONT: OnceLock<bool> = OnceLock::new();
    *FONT.get_or_init(|| {
        let env = std::env::var_os("TRM_PLOT_FONT").map(PathBuf::from);
        if env.as_ref().is_some_and(|p| p.as_os_str().is_empty()) {
            // `TRM_PLOT_FONT=` (empty) turns text off.
            return false;
        }
        let candidates = env
            .into_iter()
            .chain(FONT_CANDIDATES.iter().map(PathBuf::from));
        for path in candidates {
            let Ok(bytes) = std::fs::read(&path) else {
                continue;
            };
            // plotters keeps fonts for the whole process: leak one copy, once.
            let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
            if plotters::style::register_font("sans-serif", FontStyle::Normal, bytes).is_ok() {
                return true;
            }
        }
        false
    })
}

/// A file name from a metric name (`train/lm_loss` -> `train_lm_loss`).
fn file_stem(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// The series of one metric: `kind -> [(step, value)]`, finite values only.
type Series = BTreeMap<String, Vec<(f64, f64)>>;

/// Groups records by metric name, then by kind.
fn collect_series(records: &[Record]) -> BTreeMap<String, Series> {
    let mut out: BTreeMap<String, Series> = BTreeMap::new();
    for r in records {
        for (name, v) in &r.metrics {
            if let Some(v) = v.filter(|v| v.is_finite()) {
                out.entry(name.clone())
                    .or_default()
                    .entry(r.kind.clone())
                    .or_default()
                    .push((r.step as f64, v));
            }
        }
    }
    out
}

/// Draws one PNG per metric (`<out_dir>/<metric>.png`), one line per kind (train, eval), x the
/// step. Returns the files written.
pub fn plot_curves(records: &[Record], out_dir: &Path) -> Result<Vec<PathBuf>, PlotError> {
    std::fs::create_dir_all(out_dir).map_err(PlotError::Io)?;
    let text = font_available();
    let mut written = Vec::new();
    for (name, series) in collect_series(records) {
        let path = out_dir.join(format!("{}.png", file_stem(&name)));
        draw_one(&path, &name, &series, text).map_err(|message| PlotError::Draw {
            path: path.clone(),
            message,
        })?;
        written.push(path);
    }
    Ok(written)
}

const COLORS: [RGBColor; 4] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
];

fn draw_one(path: &Path, name: &str, series: &Series, text: bool) -> Result<(), String> {
    let points = series.values().flatten();
    let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for &(x, y) in points {
        x0 = x0.min(x);
        x1 = x1.max(x);
        y0 = y0.min(y);
        y1 = y1.max(y);
    }
    if x1 <= x0 {
        x1 = x0 + 1.0;
    }
    if y1 <= y0 {
        let pad = y0.abs().max(1.0) * 0.05;
        y0 -= pad;
        y1 += pad;
    } else {
        let pad = (y1 - y0) * 0.05;
        y0 -= pad;
        y1 += pad;
    }
    let root = BitMapBackend::new(path, (800, 500)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let mut builder = ChartBuilder::on(&root);
    builder.margin(15);
    if text {
        builder
            .caption(name, ("sans-serif", 22))
            .x_label_area_size(40)
            .y_label_area_size(70);
    } else {
        builder.x_label_area_size(5).y_label_area_size(5);
    }
    let mut chart = builder
        .build_cartesian_2d(x0..x1, y0..y1)
        .map_err(|e| e.to_string())?;
    if text {
        chart
            .configure_mesh()
            .x_desc("step")
            .y_desc(name)
            .label_style(("sans-serif", 14))
            .draw()
            .map_err(|e| e.to_string())?;
    } else {
        chart
            .configure_mesh()
            .x_labels(0)
            .y_labels(0)
            .draw()
            .map_err(|e| e.to_string())?;
    }
    for (i, (kind, pts)) in series.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let s = chart
            .draw_series(LineSeries::new(pts.iter().copied(), color.stroke_width(2)))
            .map_err(|e| e.to_string())?;
        if text {
            s.label(kind.as_str()).legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
        }
    }
    if text && series.len() > 1 {
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .label_font(("sans-serif", 14))
            .draw()
            .map_err(|e| e.to_string())?;
    }
    root.present().map_err(|e| e.to_string())
}
