//! The left panel's second threshold and minimum defect area: above the review threshold an
//! image goes to a person, above the reject threshold it is rejected; regions smaller than the
//! minimum area do not count. Changing them re-decides at once, nothing is rescored.
use super::actions::Action;
use super::state::Inspector;
use egui::{DragValue, Ui};

pub(crate) fn show(
    ui: &mut Ui,
    insp: &mut Inspector,
    slider_ids: &mut Vec<egui::Id>,
    actions: &mut Vec<Action>,
) {
    if insp.bank.is_none() {
        return;
    }
    let (lo, hi) = insp.threshold_range();
    let mut t = insp.reject_from();
    ui.label("Reject above (score)")
        .on_hover_text("Between the threshold above and this one, images go to review");
    if super::controls::score_slider(ui, "Reject above", &mut t, (lo, hi), slider_ids) {
        actions.push(Action::SetRejectFrom(t));
    }
    if ui
        .button("Region of interest…")
        .on_hover_text("Paint what to inspect and what to ignore; saved in the bank")
        .clicked()
    {
        actions.push(Action::OpenRoiEditor);
    }
    if let Some(best) = insp.f1_best() {
        ui.horizontal_wrapped(|ui| {
            ui.label(format!("F1-best threshold {:.4}", best.threshold))
                .on_hover_text(format!(
                    "Best separates the {} confirmed defects from {} good scores (calibration \
                     and images marked good), F1 {:.3}; scores as recorded with the verdicts",
                    best.defects, best.good, best.f1
                ));
            if ui.small_button("Use").clicked() {
                actions.push(Action::SetThreshold(best.threshold));
            }
        });
    }
    let mut area = insp.rules().min_area;
    ui.horizontal(|ui| {
        ui.label("Minimum defect area")
            .on_hover_text("Regions smaller than this (original pixels) do not count; above 0, an image without a region this large is accepted");
        let r = ui.name_inputs("Minimum defect area", |ui| {
            ui.add(DragValue::new(&mut area).range(0..=1_000_000).suffix(" px"))
        });
        if r.changed() {
            actions.push(Action::SetMinArea(area));
        }
    });
    let stored = insp.bank.as_ref().map(|b| b.meta.rules());
    let unsaved = stored != Some(insp.rules());
    if ui
        .add_enabled(unsaved, egui::Button::new("Save rules to bank"))
        .on_hover_text("Store both thresholds and the minimum area in the bank (a new version, undone with `patchcore revert`)")
        .clicked()
    {
        actions.push(Action::SaveRules);
    }
}
