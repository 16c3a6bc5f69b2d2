//! Review images in the detail view: the defect regions listed and outlined, and the operator's
//! accept / reject by hand, recorded in the bank's verdicts file (`bank::Verdicts`) with who,
//! when, the score and the image's sha256.
use super::actions::Action;
use super::jobs::Task;
use super::paint::{self, ACCEPT, REJECT, REVIEW};
use super::state::{Decision, Item};
use super::workstation::Workstation;
use crate::bank::{Verdict, VerdictEntry, Verdicts};
use crate::decide::Rules;
use crate::engine::Inspection;
use crate::report::{now_rfc3339, sha256_file, Operator};
use egui::{Color32, Painter, Rect, RichText, Ui};

/// Regions drawn at most (the list says how many more there are).
const SHOWN: usize = 8;

/// The regions line under the score, and for an undecided review image the two buttons.
pub(crate) fn show(
    ui: &mut Ui,
    index: usize,
    item: &Item,
    rules: &Rules,
    actions: &mut Vec<Action>,
) {
    let Some(ins) = item.inspection() else {
        return;
    };
    let counted: Vec<_> = ins
        .regions
        .iter()
        .filter(|r| r.area >= rules.min_area)
        .collect();
    ui.horizontal_wrapped(|ui| {
        ui.label(format!(
            "{} defect region{} (min area {} px, review above {:.3}, reject above {:.3})",
            counted.len(),
            if counted.len() == 1 { "" } else { "s" },
            rules.min_area,
            rules.review_from,
            rules.reject_from
        ));
        for (k, r) in counted.iter().take(SHOWN).enumerate() {
            let [x, y, w, h] = r.box_original;
            let mm = r
                .area_mm2
                .map(|a| format!(", {a:.2} mm²"))
                .unwrap_or_default();
            ui.weak(format!(
                "#{}: {} px{mm} at x {x}, y {y} ({w}×{h}), peak {:.3}",
                k + 1,
                r.area,
                r.peak
            ));
        }
        if counted.len() > SHOWN {
            ui.weak(format!("… {} more", counted.len() - SHOWN));
        }
    });
    if ins.decide(rules) != Decision::Review {
        return;
    }
    ui.horizontal(|ui| {
        match item.hand {
            Some(d) => {
                ui.label(
                    RichText::new(format!(" decided by hand: {} ", d.as_str()))
                        .color(Color32::BLACK)
                        .background_color(paint::decision_color(d)),
                );
            }
            None => {
                ui.label(
                    RichText::new(" To review: ")
                        .color(Color32::BLACK)
                        .background_color(REVIEW),
                );
            }
        }
        for (decision, text, color) in [
            (Decision::Accept, "Accept (good part)", ACCEPT),
            (Decision::Reject, "Reject (defect)", REJECT),
        ] {
            let button = egui::Button::new(RichText::new(text).color(color));
            if ui
                .add(button)
                .on_hover_text("Recorded in the bank's verdicts file")
                .clicked()
            {
                actions.push(Action::DecideByHand(index, decision));
            }
        }
    });
}

/// Outlines the counted regions (amber) on the image drawn at `screen`.
pub(crate) fn draw_regions(
    painter: &Painter,
    ins: &Inspection,
    rules: &Rules,
    region: Rect,
    screen: Rect,
) {
    for r in ins
        .regions
        .iter()
        .filter(|r| r.area >= rules.min_area)
        .take(SHOWN)
    {
        paint::draw_box(painter, r.box_original, region, screen, REVIEW, 1.5);
    }
}

impl Workstation {
    /// The operator accepts or rejects review image `i`: shown at once, written to the bank's
    /// verdicts file in the background (a failure becomes a notice; the decision stays shown).
    pub(crate) fn decide_by_hand(&mut self, i: usize, decision: Decision) {
        let (Some(bank), Some(item)) = (&self.insp.bank, self.insp.items.get(i)) else {
            return;
        };
        let Some(score) = item.score() else {
            return;
        };
        let verdict = match decision {
            Decision::Accept => Verdict::Good,
            _ => Verdict::Defect,
        };
        let (bank, path) = (bank.path.clone(), item.path.clone());
        self.insp.set_hand(i, decision);
        self.jobs.spawn_task(move || {
            Task::Recorded(
                record(&bank, vec![(path, score)], verdict)
                    .map_err(|e| format!("The decision by hand was not recorded: {e}")),
            )
        });
    }
}

/// Writes the operator's `verdict` on each `(image, score)` into the verdicts file of `bank`,
/// with the image's sha256, the time and who (off the GUI thread: it reads every image).
pub(crate) fn record(
    bank: &std::path::Path,
    images: Vec<(std::path::PathBuf, f32)>,
    verdict: Verdict,
) -> Result<(), String> {
    let mut verdicts = Verdicts::load(bank).map_err(|e| e.to_string())?;
    for (path, score) in images {
        let sha256 = sha256_file(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        verdicts.record(VerdictEntry {
            path,
            sha256,
            verdict,
            score,
            time: now_rfc3339(),
            operator: Operator::current(),
        });
    }
    verdicts.save(bank).map_err(|e| e.to_string())
}
