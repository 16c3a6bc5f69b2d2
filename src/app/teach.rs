//! Teaching the bank from the app: "Mark as good" on rejected or review images runs the engine's
//! update on the worker (a new bank version, as `patchcore update`), then the bank is reloaded
//! and the shown images rescored; "Undo" puts the version before it back. "Confirm defect"
//! records the operator's call in the bank's verdicts file. Images far above the threshold are
//! only added after the operator confirms them, as `--force` on the command line.
use super::actions::Action;
use super::jobs::Task;
use super::state::Decision;
use super::workstation::Workstation;
use crate::bank::{HistoryEntry, Verdict};
use crate::engine::calibrate::BankChange;
use egui::{Color32, RichText, Ui};
use std::path::PathBuf;
use std::time::Instant;

/// Images the operator asked to mark good, some of them far above the threshold: they wait for
/// a confirmation naming each far one.
#[derive(Clone, Debug)]
pub(crate) struct Confirm {
    pub(crate) items: Vec<usize>,
    /// `(name, normalised score)` of the far ones.
    pub(crate) far: Vec<(String, f32)>,
}

#[derive(Clone, Debug)]
pub(crate) enum Busy {
    /// The worker is updating the bank with this many images.
    Teaching(usize),
    /// The worker is putting the previous version back; the threshold before it.
    Undoing(f32),
}

/// The teach flow's state.
#[derive(Debug, Default)]
pub(crate) struct Teach {
    pub(crate) confirm: Option<Confirm>,
    pub(crate) busy: Option<(Busy, Instant)>,
    /// What the last teach or undo changed, or why it failed.
    pub(crate) status: Option<Result<String, String>>,
    /// `(version now, version to undo to)` after a teach.
    pub(crate) undo: Option<(u32, u32)>,
}

/// What a successful teach changed, for the status line.
pub(crate) fn describe(entry: &HistoryEntry) -> String {
    let per_image: Vec<String> = entry
        .images
        .iter()
        .map(|i| {
            let name = i.path.file_name().unwrap_or(i.path.as_os_str());
            format!("{} +{}", name.to_string_lossy(), i.rows_added)
        })
        .collect();
    format!(
        "Marked {} image(s) good: bank version {} -> {}, +{} rows ({}), threshold {:.4} -> {:.4}",
        entry.images.len(),
        entry.parent,
        entry.version,
        entry.rows_added,
        per_image.join(", "),
        entry.threshold_before,
        entry.threshold_after
    )
}

/// The teach buttons for `items` (one image in the detail view, or the rows ticked in the
/// reject table), disabled while a teach or undo runs.
pub(crate) fn buttons(ui: &mut Ui, items: &[usize], busy: bool, actions: &mut Vec<Action>) {
    let n = items.len();
    let (good, defect) = if n == 1 {
        ("Mark as good".to_string(), "Confirm defect".to_string())
    } else {
        (format!("Mark {n} as good"), format!("Confirm {n} defects"))
    };
    let enabled = n > 0 && !busy;
    if ui
        .add_enabled(enabled, egui::Button::new(good))
        .on_hover_text(
            "A good part: add it to the bank (a new version; Undo puts the old one back) and \
             rescore the images shown",
        )
        .clicked()
    {
        actions.push(Action::MarkGood(items.to_vec()));
    }
    if ui
        .add_enabled(enabled, egui::Button::new(defect))
        .on_hover_text("A real defect: remembered in the bank's verdicts file")
        .clicked()
    {
        actions.push(Action::ConfirmDefects(items.to_vec()));
    }
}

/// The status line under the gallery: a running teach or undo, what the last one changed (with
/// Undo), or why it failed.
pub(crate) fn status(ui: &mut Ui, teach: &Teach, actions: &mut Vec<Action>) {
    ui.horizontal_wrapped(|ui| {
        if let Some((busy, since)) = &teach.busy {
            ui.spinner();
            let secs = since.elapsed().as_secs_f32();
            ui.label(match busy {
                Busy::Teaching(n) => {
                    format!("Teaching the bank {n} good image(s)… {secs:.0} s")
                }
                Busy::Undoing(_) => format!("Putting the previous bank version back… {secs:.0} s"),
            });
            return;
        }
        match &teach.status {
            Some(Ok(text)) => {
                ui.label(RichText::new(text).color(Color32::from_rgb(120, 200, 120)));
            }
            Some(Err(text)) => {
                ui.colored_label(super::paint::ERROR, text);
            }
            None => {}
        }
        if let Some((now, to)) = teach.undo {
            if ui
                .button(format!("Undo (back to version {to})"))
                .on_hover_text(format!(
                    "Puts bank version {to} back; version {now} stays kept beside the bank"
                ))
                .clicked()
            {
                actions.push(Action::UndoTeach);
            }
        }
        if teach.status.is_some() && ui.small_button("Dismiss").clicked() {
            actions.push(Action::DismissTeach);
        }
    });
}

/// The confirmation for images far above the threshold, named with their normalised scores.
pub(crate) fn confirm_window(ctx: &egui::Context, confirm: &Confirm, actions: &mut Vec<Action>) {
    egui::Window::new("Mark far-off images as good?")
        .collapsible(false)
        .resizable(false)
        .anchor(egui::Align2::CENTER_CENTER, [0.0, 0.0])
        .show(ctx, |ui| {
            ui.label(format!(
                "{} image(s) score far above the threshold (normalised score above {:.0}), \
                 which looks like a defect, not drift. Adding a real defect teaches the bank \
                 to accept it.",
                confirm.far.len(),
                1.0 + crate::engine::update::FAR_SPANS
            ));
            for (name, normalized) in &confirm.far {
                ui.monospace(format!("{name}: normalised score {normalized:.2}"));
            }
            ui.horizontal(|ui| {
                if ui.button("They are good: add them").clicked() {
                    actions.push(Action::ForceConfirmed);
                }
                if ui.button("Cancel").clicked() {
                    actions.push(Action::ForceCancelled);
                }
            });
        });
}

impl Workstation {
    /// Items among `items` the rules flag (review or reject): the only ones that can be taught.
    fn flagged(&self, items: &[usize]) -> Vec<usize> {
        let rules = self.insp.rules();
        items
            .iter()
            .copied()
            .filter(|&i| {
                self.insp
                    .items
                    .get(i)
                    .and_then(|it| it.inspection())
                    .is_some_and(|ins| ins.decide(&rules) != Decision::Accept)
            })
            .collect()
    }

    /// "Mark as good": asks first about images far above the threshold (unless `force`), then
    /// sends the update to the worker.
    pub(crate) fn mark_good(&mut self, items: Vec<usize>, force: bool) {
        let Some(bank) = &self.insp.bank else { return };
        if self.teach.busy.is_some() {
            return;
        }
        let items = self.flagged(&items);
        if items.is_empty() {
            self.teach.status = Some(Err(
                "nothing to mark: only rejected or review images are taught".into(),
            ));
            return;
        }
        let far_score = crate::engine::update::far_score(&bank.meta);
        let far: Vec<(String, f32)> = items
            .iter()
            .filter_map(|&i| {
                let it = &self.insp.items[i];
                let ins = it.inspection()?;
                (ins.score > far_score).then(|| (it.name.clone(), ins.normalized))
            })
            .collect();
        if !far.is_empty() && !force {
            self.teach.confirm = Some(Confirm { items, far });
            return;
        }
        let paths: Vec<PathBuf> = items
            .iter()
            .map(|&i| self.insp.items[i].path.clone())
            .collect();
        let (path, version) = (bank.path.clone(), bank.meta.version);
        self.teach.busy = Some((Busy::Teaching(paths.len()), Instant::now()));
        self.teach.status = None;
        self.jobs.teach(path, version, paths, !far.is_empty());
    }

    /// The operator confirmed the far-off images: teach them all.
    pub(crate) fn force_confirmed(&mut self) {
        if let Some(c) = self.teach.confirm.take() {
            self.mark_good(c.items, true);
        }
    }

    /// "Confirm defect": recorded in the verdicts file (shown at once, written in the background).
    pub(crate) fn confirm_defects(&mut self, items: Vec<usize>) {
        let Some(bank) = self.insp.bank.as_ref().map(|b| b.path.clone()) else {
            return;
        };
        let mut entries = Vec::new();
        for i in self.flagged(&items) {
            let it = &self.insp.items[i];
            if let Some(score) = it.score() {
                entries.push((it.path.clone(), score));
            }
            self.insp.set_hand(i, Decision::Reject);
        }
        if entries.is_empty() {
            return;
        }
        let n = entries.len();
        self.teach.status = Some(Ok(format!("Confirmed {n} defect(s)")));
        self.jobs.spawn_task(move || {
            Task::Recorded(
                super::review::record(&bank, entries, Verdict::Defect)
                    .map_err(|e| format!("The defects were not recorded: {e}")),
            )
        });
    }

    /// "Undo": the version before the last teach goes back; the bank then reloads.
    pub(crate) fn undo_teach(&mut self) {
        let (Some(bank), Some((from, to))) = (&self.insp.bank, self.teach.undo) else {
            return;
        };
        if self.teach.busy.is_some() {
            return;
        }
        let before = bank.calibrated_threshold();
        let path = bank.path.clone();
        self.teach.busy = Some((Busy::Undoing(before), Instant::now()));
        self.teach.undo = None;
        self.catalog.choose(&path);
        self.jobs.change_bank(path, BankChange::Revert { from, to });
    }

    pub(crate) fn on_taught(
        &mut self,
        bank: PathBuf,
        entry: &HistoryEntry,
        warning: Option<String>,
    ) {
        self.teach.busy = None;
        if let Some(w) = warning {
            self.notices.push(w);
        }
        let name = bank
            .file_name()
            .unwrap_or(bank.as_os_str())
            .to_string_lossy();
        let shown = self.insp.bank.as_ref().is_some_and(|b| b.path == bank);
        if !shown || self.catalog.loading.is_some() {
            // The operator chose another category meanwhile: keep it, say what happened.
            self.teach.status = Some(Ok(format!("{name}: {}", describe(entry))));
            return;
        }
        self.teach.status = Some(Ok(describe(entry)));
        self.teach.undo = Some((entry.version, entry.parent));
        // The worker reloads the bank next; the catalog awaits it.
        self.catalog.choose(&bank);
    }

    pub(crate) fn on_teach_failed(&mut self, error: String) {
        self.teach.busy = None;
        self.teach.status = Some(Err(format!("Not taught: {error}")));
    }

    /// A bank (re)loaded: an undo in flight is done; a failed change ends it too. True when it
    /// was the undo's answer.
    pub(crate) fn teach_reloaded(&mut self, result: Result<&crate::bank::BankMeta, &str>) -> bool {
        if let Some((Busy::Undoing(before), _)) = &self.teach.busy {
            self.teach.status = Some(match result {
                Ok(meta) => Ok(format!(
                    "Undone: bank version {} is back, threshold {before:.4} -> {:.4}",
                    meta.version, meta.calibration.threshold
                )),
                Err(e) => Err(format!("Not undone: {e}")),
            });
            self.teach.busy = None;
            return true;
        }
        false
    }
}
