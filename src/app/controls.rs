//! The left panel: what the loaded bank is, the threshold (raw and normalised), filter and
//! sort, live counts, and the score histogram.
use super::actions::Action;
use super::histogram;
use super::paint::{ACCEPT, ERROR, REJECT, REVIEW};
use super::state::{BankInfo, Filter, Inspector, SortKey};
use super::workstation::Prefs;
use egui::{ComboBox, Grid, RichText, ScrollArea, Slider, Ui};

/// `slider_ids` collects the sliders drawn, whose focus keeps the arrow keys.
pub(crate) fn show(
    ui: &mut Ui,
    insp: &mut Inspector,
    prefs: &mut Prefs,
    slider_ids: &mut Vec<egui::Id>,
    actions: &mut Vec<Action>,
) {
    ScrollArea::vertical()
        .id_salt("controls")
        .auto_shrink([false, false])
        .show(ui, |ui| {
            bank_info(ui, insp.bank.as_ref());
            ui.separator();
            decision(ui, insp, slider_ids, actions);
            ui.separator();
            display(ui, insp.sort(), prefs, actions);
            ui.separator();
            ui.label(RichText::new("Score histogram").strong());
            histogram::show(ui, insp, actions);
        });
}

fn bank_info(ui: &mut Ui, bank: Option<&BankInfo>) {
    let Some(b) = bank else {
        ui.label(RichText::new("No category loaded").strong());
        ui.label("Pick one in the Category list above.");
        return;
    };
    let m = &b.meta;
    ui.heading(&m.category);
    Grid::new("bank_info")
        .num_columns(2)
        .spacing([8.0, 2.0])
        .show(ui, |ui| {
            ui.weak("Backbone");
            ui.label(&m.backbone);
            ui.end_row();
            ui.weak("Training images");
            ui.label(m.n_train_images.to_string());
            ui.end_row();
            ui.weak("Calibrated threshold");
            ui.label(format!("{:.3}", m.calibration.threshold));
            ui.end_row();
            ui.weak("Good scores");
            ui.label(format!(
                "{:.3} – {:.3}",
                m.calibration.min, m.calibration.max
            ));
            ui.end_row();
            ui.weak("Device");
            ui.label(&b.device);
            ui.end_row();
        })
        .response
        .on_hover_text(format!("{}\nfitted {}", b.path.display(), m.created));
}

fn decision(
    ui: &mut Ui,
    insp: &mut Inspector,
    slider_ids: &mut Vec<egui::Id>,
    actions: &mut Vec<Action>,
) {
    ui.label(RichText::new("Decision").strong());
    let Some(bank) = &insp.bank else {
        ui.weak("The threshold appears once a category is loaded.");
        return;
    };
    let meta = bank.meta.clone();
    let calibrated = bank.calibrated_threshold();
    let (lo, hi) = insp.threshold_range();
    let mut t = insp.threshold();
    // Labels above the sliders so the slider can use the panel's width; the accessible
    // names come from `name_inputs` (slider and its value box alike).
    ui.spacing_mut().slider_width = (ui.available_width() - 80.0).max(60.0);
    ui.label("Threshold (score)");
    if score_slider(ui, "Threshold", &mut t, (lo, hi), slider_ids) {
        actions.push(Action::SetThreshold(t));
    }
    let mut n = meta.normalize(t);
    let (nlo, nhi) = (meta.normalize(lo), meta.normalize(hi));
    ui.label("Normalised threshold")
        .on_hover_text("0 = best good training part, 1 = worst good training part");
    let r = ui.name_inputs("Normalised threshold", |ui| {
        ui.add(Slider::new(&mut n, nlo..=nhi).max_decimals(3))
    });
    slider_ids.push(r.id);
    if r.changed() {
        let c = &meta.calibration;
        let span = (c.max - c.min).max(f32::EPSILON);
        actions.push(Action::SetThreshold(c.min + n * span));
    }
    ui.horizontal(|ui| {
        let differs = (t - calibrated).abs() > f32::EPSILON * calibrated.abs().max(1.0);
        if ui
            .add_enabled(differs, egui::Button::new("Reset to calibrated"))
            .on_hover_text(format!("Back to {calibrated:.4}"))
            .clicked()
        {
            actions.push(Action::ResetThreshold);
        }
        if differs {
            ui.colored_label(ERROR, "manual");
        }
    });

    super::review_controls::show(ui, insp, slider_ids, actions);
    ui.add_space(4.0);
    let filter = insp.filter();
    ui.horizontal(|ui| {
        ui.label("Show");
        for (f, text) in [
            (Filter::All, "All"),
            (Filter::Accepted, "Accepted"),
            (Filter::Review, "Review"),
            (Filter::Rejected, "Rejected"),
        ] {
            if ui.selectable_label(filter == f, text).clicked() && filter != f {
                actions.push(Action::SetFilter(f));
            }
        }
    });
    let c = insp.counts();
    Grid::new("counts").num_columns(2).show(ui, |ui| {
        ui.label(format!("Images: {}", c.total));
        ui.colored_label(ACCEPT, format!("Accepted: {}", c.accepted));
        ui.end_row();
        ui.colored_label(REVIEW, format!("Review: {}", c.review));
        ui.end_row();
        ui.colored_label(REJECT, format!("Rejected: {}", c.rejected));
        ui.colored_label(ERROR, format!("Errors: {}", c.failed));
        ui.end_row();
        if c.pending > 0 {
            ui.weak(format!("Pending: {}", c.pending));
            ui.end_row();
        }
    });
}

/// A raw-score slider (unclamped, so a typed value outside the range is kept), named for
/// screen readers; true when it changed.
pub(crate) fn score_slider(
    ui: &mut Ui,
    name: &str,
    t: &mut f32,
    (lo, hi): (f32, f32),
    slider_ids: &mut Vec<egui::Id>,
) -> bool {
    let r = ui.name_inputs(name, |ui| {
        ui.add(
            Slider::new(t, lo..=hi)
                .max_decimals(4)
                .clamping(egui::SliderClamping::Never),
        )
    });
    slider_ids.push(r.id);
    r.changed()
}

fn display(ui: &mut Ui, sort: SortKey, prefs: &mut Prefs, actions: &mut Vec<Action>) {
    let label = ui.label("Sort by");
    let text = |s: SortKey| match s {
        SortKey::ScoreDesc => "Score, worst first",
        SortKey::ScoreAsc => "Score, best first",
        SortKey::Name => "Name",
    };
    ComboBox::from_id_salt("sort")
        .selected_text(text(sort))
        .show_ui(ui, |ui| {
            for s in [SortKey::ScoreDesc, SortKey::ScoreAsc, SortKey::Name] {
                if ui.selectable_label(sort == s, text(s)).clicked() && sort != s {
                    actions.push(Action::SetSort(s));
                }
            }
        })
        .response
        .labelled_by(label.id);
    ui.checkbox(&mut prefs.overlay_in_gallery, "Heatmap on thumbnails");
}
