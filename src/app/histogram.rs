//! Score histogram of the open folder with the current and calibrated thresholds, so the
//! operator sees how far the bad parts sit from the good ones before moving the slider.
//! Clicking in the plot moves the threshold there.
use super::actions::Action;
use super::paint::{ACCEPT, REJECT};
use super::state::Inspector;
use egui::Ui;
use egui_plot::{Bar, BarChart, LineStyle, Plot, VLine};

const BINS: usize = 40;

pub(crate) fn show(ui: &mut Ui, insp: &mut Inspector, actions: &mut Vec<Action>) {
    let Some(calibrated) = insp.bank.as_ref().map(|b| b.calibrated_threshold()) else {
        ui.weak("No scores yet.");
        return;
    };
    let threshold = insp.threshold();
    let hist = insp.histogram(BINS).clone();
    if hist.bins.is_empty() {
        ui.weak("No scores yet.");
        return;
    }
    let bars: Vec<Bar> = hist
        .bins
        .iter()
        .enumerate()
        .map(|(i, &n)| {
            let center = hist.lo + (i as f32 + 0.5) * hist.width;
            let color = if center > threshold { REJECT } else { ACCEPT };
            Bar::new(center as f64, n as f64)
                .width(hist.width as f64 * 0.95)
                .fill(color.gamma_multiply(0.8))
        })
        .collect();
    let weak = ui.visuals().weak_text_color();
    let response = Plot::new("score_histogram")
        .height(170.0)
        .allow_drag(false)
        .allow_zoom(false)
        .allow_scroll(false)
        .allow_boxed_zoom(false)
        .allow_double_click_reset(false)
        .show_y(false)
        .include_y(0.0)
        .x_axis_label("score")
        .y_axis_label("images")
        .show(ui, |plot| {
            plot.bar_chart(BarChart::new("images", bars).allow_hover(true));
            plot.vline(
                VLine::new("calibrated", calibrated)
                    .color(weak)
                    .style(LineStyle::dashed_loose()),
            );
            plot.vline(
                VLine::new("threshold", threshold)
                    .color(egui::Color32::from_rgb(250, 200, 0))
                    .width(2.0),
            );
            plot.response()
                .clicked()
                .then(|| plot.pointer_coordinate())
                .flatten()
        });
    if let Some(p) = response.inner {
        actions.push(Action::SetThreshold(p.x as f32));
    }
    ui.weak("Yellow: threshold (click to move) · dashed: calibrated");
}
