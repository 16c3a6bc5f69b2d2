//! What the views ask for, and how each request changes the workstation. Views push
//! [`Action`]s while they draw; [`Workstation::apply`] runs them in order after the layout.
use super::dialog_flow::DialogPurpose;
use super::state::{Decision, Filter, RejectColumn, SortKey};
use super::workstation::Workstation;
use std::path::PathBuf;

/// What the views ask for. Applied in order after the frame's layout.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    ChooseBank(PathBuf),
    RescanModels,
    OpenFolderDialog,
    InboxEnabled(bool),
    ExportDialog,
    CancelScoring,
    OpenDetail(usize),
    CloseDetail,
    Step(isize),
    SetThreshold(f32),
    /// The second threshold: scores above it are rejected, between the two reviewed.
    SetRejectFrom(f32),
    SetMinArea(u64),
    /// The operator's accept or reject of a review image.
    DecideByHand(usize, Decision),
    OpenRoiEditor,
    /// Store the drawn mask in the bank (None removes the ROI).
    SaveRoi(Option<crate::decide::Roi>),
    /// Store the thresholds and minimum area set here in the bank, as a new version.
    SaveRules,
    /// Teach the bank these (flagged) images as good parts.
    MarkGood(Vec<usize>),
    /// Record these (flagged) images as real defects.
    ConfirmDefects(Vec<usize>),
    /// The operator confirmed that the far-off images are good; or cancelled.
    ForceConfirmed,
    ForceCancelled,
    /// Put back the bank version before the last teach.
    UndoTeach,
    DismissTeach,
    /// Tick or untick a row of the reject table (a selection for the teach buttons).
    ToggleChecked(usize),
    ResetThreshold,
    SetFilter(Filter),
    SetSort(SortKey),
    SortRejects(RejectColumn),
    DismissNotice(usize),
    /// The typed-in path of the [`PathPrompt`](super::dialog_flow::PathPrompt) was confirmed,
    /// or the prompt closed.
    PromptSubmit,
    PromptCancel,
}

impl Workstation {
    pub(crate) fn apply(&mut self, action: Action) {
        match action {
            Action::ChooseBank(bank) => self.choose_bank(bank),
            Action::RescanModels => self.rescan(),
            Action::OpenFolderDialog => {
                if self.insp.bank.is_none() {
                    self.folder_error = Some("choose a category first".into());
                } else {
                    let start = self.insp.source.clone();
                    let suggestion = start.clone().unwrap_or_else(working_dir);
                    self.dialogs
                        .ask(DialogPurpose::OpenFolder, start, suggestion);
                }
            }
            Action::InboxEnabled(on) => {
                if !on {
                    self.jobs.stop_inbox();
                } else if let Some(dir) = self.jobs.inbox.dir.clone() {
                    self.start_inbox(dir);
                } else {
                    self.dialogs
                        .ask(DialogPurpose::InboxFolder, None, working_dir());
                }
            }
            Action::ExportDialog => {
                let name = self
                    .insp
                    .bank
                    .as_ref()
                    .map(|b| format!("{}-rejects.csv", b.meta.category))
                    .unwrap_or_else(|| "rejects.csv".into());
                // The dialog opens in the image folder; the typed path defaults to the
                // working folder (image folders are often read-only shares).
                let start = self.insp.source.clone();
                self.dialogs
                    .ask(DialogPurpose::Export, start, working_dir().join(name));
            }
            Action::CancelScoring => self.jobs.cancel(self.insp.live_jobs()),
            Action::OpenDetail(i) => {
                self.sel.selected = Some(i);
                self.sel.detail = true;
            }
            Action::CloseDetail => {
                self.sel.detail = false;
                self.sel.scroll_to_selected = true;
            }
            Action::Step(delta) => {
                if let Some(next) = self.insp.step(self.sel.selected, delta) {
                    self.sel.selected = Some(next);
                    self.sel.scroll_to_selected = true;
                }
            }
            Action::SetThreshold(t) => self.set_threshold(t),
            Action::SetRejectFrom(t) => self.insp.set_reject_from(t),
            Action::SetMinArea(a) => self.insp.set_min_area(a),
            Action::DecideByHand(i, d) => self.decide_by_hand(i, d),
            Action::OpenRoiEditor => self.open_roi_editor(),
            Action::SaveRoi(roi) => self.save_roi(roi),
            Action::SaveRules => {
                if let Some(bank) = self.insp.bank.as_ref().map(|b| b.path.clone()) {
                    let rules = crate::engine::calibrate::BankChange::Rules(self.insp.rules());
                    // The worker answers with the reloaded bank, which the catalog must await.
                    self.catalog.choose(&bank);
                    self.jobs.change_bank(bank, rules);
                }
            }
            Action::MarkGood(items) => self.mark_good(items, false),
            Action::ConfirmDefects(items) => self.confirm_defects(items),
            Action::ForceConfirmed => self.force_confirmed(),
            Action::ForceCancelled => self.teach.confirm = None,
            Action::UndoTeach => self.undo_teach(),
            Action::DismissTeach => self.teach.status = None,
            Action::ToggleChecked(i) => {
                if !self.sel.checked.remove(&i) {
                    self.sel.checked.insert(i);
                }
            }
            Action::ResetThreshold => {
                if let Some(t) = self.insp.bank.as_ref().map(|b| b.calibrated_threshold()) {
                    self.set_threshold(t);
                }
            }
            Action::SetFilter(f) => self.insp.set_filter(f),
            Action::SetSort(s) => self.insp.set_sort(s),
            Action::SortRejects(c) => self.insp.toggle_reject_sort(c),
            Action::DismissNotice(i) => {
                if i < self.notices.len() {
                    self.notices.remove(i);
                }
            }
            Action::PromptSubmit => {
                if let Some((purpose, path)) = self.dialogs.submit_prompt() {
                    self.dialog_chose(purpose, path);
                }
            }
            Action::PromptCancel => self.dialogs.cancel_prompt(),
        }
    }
}

/// The process's working folder, absolute where it can be found.
fn working_dir() -> PathBuf {
    std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."))
}
