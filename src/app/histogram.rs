//! Score histogram of the open folder with the current and calibrated thresholds, so the
//! operator sees how far the bad parts sit from the good ones before moving the slider.
//! Clicking in the plot moves the threshold there.
use super::actions::Action;
use super::paint::{ACCEPT, REJECT, REVIEW};
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
    let reject_from = insp.reject_from();
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
            let color = if center > reject_from {
                REJECT
            } else if center > threshold {
                REVIEW
            } else {
                ACCEPT
            };
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
            plot.vline(
                VLine::new("reject from", reject_from)
                    .color(REJECT)
                    .width(2.0),
            );
            let shift = plot.ctx().input(|i| i.modifiers.shift);
            let response = plot.response();
            (response.clicked() || response.secondary_clicked())
                .then(|| plot.pointer_coordinate())
                .flatten()
                .map(|p| (p, shift || response.secondary_clicked()))
        });
    match response.inner {
        Some((p, true)) => actions.push(Action::SetRejectFrom(p.x as f32)),
        Some((p, false)) => actions.push(Action::SetThreshold(p.x as f32)),
        None => {}
    }
    ui.weak("Yellow: review from (click to move) · red: reject from (shift- or right-click) · dashed: calibrated");
}
