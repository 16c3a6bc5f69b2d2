//! The operator workstation: composes the settings store, the dialog flow, the job tracker,
//! the bank catalogue and the inspector, and turns worker replies, task results and the
//! views' [`Action`]s into state changes. The per-frame layout is in [`super::frame`].
//!
//! Views never mutate shared state directly: they read what they show, and push [`Action`]s
//! that are applied after the frame is drawn (the message pattern of the egui demo apps), so
//! every state change goes through one place.
use super::actions::Action;
use super::banks::BankCatalog;
use super::catalog;
use super::decode::DecodePool;
use super::dialog_flow::{DialogFlow, DialogPurpose};
use super::dialogs::Dialogs;
use super::job_log::{self, JobKind};
use super::jobs::{Jobs, Task};
use super::protocol::{BackendFactory, Reply};
use super::settings::{SavedThreshold, Settings};
use super::settings_store::SettingsStore;
use super::state::{BankInfo, Inspector};
use super::textures::TextureCache;
use super::worker::{Repaint, BACKGROUND_REPAINT};
use super::GuiOptions;
use crate::report::{write_csv_file, CsvRecord, Outcome};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

/// Display choices the views read and change directly (no effect beyond drawing).
#[derive(Clone, Debug)]
pub struct Prefs {
    pub opacity: f32,
    pub overlay_in_gallery: bool,
    pub overlay_in_detail: bool,
}

/// Which image is selected and how it is shown.
#[derive(Clone, Debug, Default)]
pub(crate) struct Selection {
    pub(super) selected: Option<usize>,
    pub(super) detail: bool,
    /// The gallery should bring the selection into view (it moved by key or from the table).
    pub(super) scroll_to_selected: bool,
    /// The selection the reject table last scrolled to (it follows each change once).
    pub(super) rejects_scrolled_for: Option<usize>,
    /// Rows ticked in the reject table, for the teach buttons.
    pub(super) checked: std::collections::BTreeSet<usize>,
}

/// The outside services a workstation uses; tests swap in fakes (no libtorch, no dialogs).
pub struct Services {
    pub backend: BackendFactory,
    pub dialogs: Box<dyn Dialogs>,
}

/// The workstation: one part per concern, plus the view state they all feed.
/// `ui` runs one frame; the eframe shell (`GuiApp`) and the kittest tests both drive it.
pub struct Workstation {
    pub(super) settings: SettingsStore,
    pub(super) dialogs: DialogFlow,
    pub(super) jobs: Jobs,
    pub(super) catalog: BankCatalog,
    pub(super) insp: Inspector,
    pub(super) sel: Selection,
    pub(super) prefs: Prefs,
    pub(super) textures: TextureCache,
    /// Why the image folder cannot be shown (no category yet, nothing listed).
    pub(super) folder_error: Option<String>,
    pub(super) notices: Vec<String>,
    pub(super) roi_editor: super::roi_editor::RoiEditor,
    pub(super) teach: super::teach::Teach,
    /// Set on the first frame, for the threads' repaint callback.
    pub(super) ctx_slot: Arc<OnceLock<egui::Context>>,
    /// Ids of sliders drawn this frame: arrow keys belong to them while they have focus.
    pub(super) slider_ids: Vec<egui::Id>,
    /// Side panel widths last frame, to notice the operator resizing them.
    pub(super) layout_seen: Option<(f32, f32)>,
}

impl Workstation {
    pub fn new(opts: GuiOptions, services: Services) -> Workstation {
        let ctx_slot: Arc<OnceLock<egui::Context>> = Arc::new(OnceLock::new());
        let slot = ctx_slot.clone();
        // Background threads wake the GUI at most about ten times a second: a repaint per
        // worker reply would spend the CPU the scoring needs on drawing (software OpenGL).
        let repaint: Repaint = Arc::new(move || {
            if let Some(ctx) = slot.get() {
                ctx.request_repaint_after(BACKGROUND_REPAINT);
            }
        });
        let settings_path = opts
            .settings_path
            .clone()
            .or_else(super::settings::default_path);
        let (mut s, settings_err) = match &settings_path {
            Some(p) => Settings::load(p),
            None => (Settings::default(), None),
        };
        let models_dir = opts
            .models_dir
            .clone()
            .or_else(|| s.models_dir.clone())
            .unwrap_or_else(|| PathBuf::from("models"));
        s.models_dir = Some(models_dir.clone());
        let inbox_dir = opts.inbox.clone().or_else(|| s.inbox.clone());
        let prefs = Prefs {
            opacity: s.overlay_opacity.clamp(0.0, 1.0),
            overlay_in_gallery: s.show_overlay_in_gallery,
            overlay_in_detail: true,
        };
        let catalog = BankCatalog::new(models_dir, s.last_bank.clone());
        let settings = SettingsStore::open(s, settings_path.clone(), repaint.clone());
        let mut ws = Workstation {
            settings,
            dialogs: DialogFlow::new(services.dialogs),
            jobs: Jobs::new(
                services.backend,
                repaint.clone(),
                inbox_dir,
                opts.inbox_poll,
                settings_path.as_deref().map(job_log::log_path),
            ),
            catalog,
            insp: Inspector::default(),
            sel: Selection::default(),
            prefs,
            textures: TextureCache::new(DecodePool::new(2, 24, repaint)),
            folder_error: None,
            notices: Vec::new(),
            roi_editor: Default::default(),
            teach: Default::default(),
            ctx_slot,
            slider_ids: Vec::new(),
            layout_seen: None,
        };
        if let Some(e) = settings_err {
            ws.notices.push(e.to_string());
        }
        ws.rescan();
        // `--inbox` turns watching on; a remembered folder alone does not.
        if let Some(dir) = opts.inbox {
            ws.start_inbox(dir);
        }
        ws
    }

    pub(super) fn rescan(&mut self) {
        let dir = self.catalog.begin_scan();
        self.jobs
            .spawn_task(move || Task::Catalog(catalog::scan_models(&dir)));
    }

    pub fn is_busy(&self) -> bool {
        self.catalog.loading.is_some()
            || self.catalog.scanning
            || self.insp.is_busy()
            || self.jobs.is_busy()
    }

    /// `(done, total)` over all live scoring jobs.
    pub fn overall_progress(&self) -> (usize, usize) {
        self.jobs.overall_progress()
    }

    // ---------------------------------------------------------------- state changes

    fn cancel_jobs(&mut self) {
        let jobs = self.insp.clear_items();
        self.jobs.abandon(jobs);
        self.sel.selected = None;
        self.sel.detail = false;
        self.sel.checked.clear();
        // A pending confirmation names items by index: they are gone.
        self.teach.confirm = None;
        self.textures.clear();
    }

    pub(super) fn choose_bank(&mut self, bank: PathBuf) {
        if !self.catalog.choose(&bank) {
            return;
        }
        // Undo belongs to the bank it was taught on.
        self.teach.undo = None;
        self.cancel_jobs();
        self.jobs.listing = None;
        self.folder_error = None;
        self.jobs.load_bank(bank);
    }

    fn bank_loaded(&mut self, bank: PathBuf, meta: crate::bank::BankMeta, device: String) {
        if !self.catalog.loaded(&bank) {
            return; // the operator chose another bank meanwhile
        }
        self.teach_reloaded(Ok(&meta));
        // The same bank reloaded (a new version): the folder shown is rescored with it.
        let shown = self
            .insp
            .source
            .clone()
            .filter(|_| self.insp.bank.as_ref().is_some_and(|b| b.path == bank));
        let info = BankInfo::new(bank, meta, device);
        if self.roi_editor.open {
            let r = info.meta.rules();
            self.roi_editor.status = Some(format!(
                "bank loaded; thresholds: review above {:.3}, reject above {:.3}",
                r.review_from, r.reject_from
            ));
        }
        let threshold = self
            .settings
            .get()
            .threshold_for(&info.file_name, &info.meta.created)
            .unwrap_or(info.calibrated_threshold());
        let name = info.file_name.clone();
        self.settings.update(|s| s.last_bank = Some(name));
        // `test_dir` may name the dataset root (MVTec layout: train/, test/, ground_truth/);
        // the parts to inspect are then under test/.
        let folder = match (shown, info.meta.test_dir.clone().filter(|d| d.is_dir())) {
            (Some(shown), _) => shown,
            (None, Some(d)) if d.join("test").is_dir() => d.join("test"),
            (None, Some(d)) => d,
            (None, None) => info.meta.train_dir.clone(),
        };
        self.cancel_jobs();
        self.insp.remember(Default::default());
        let path = info.path.clone();
        self.jobs.spawn_task(move || {
            let hands = crate::bank::Verdicts::load(&path)
                .map(|v| {
                    v.entries()
                        .iter()
                        .map(|e| {
                            let d = match e.verdict {
                                crate::bank::Verdict::Good => crate::report::Decision::Accept,
                                crate::bank::Verdict::Defect => crate::report::Decision::Reject,
                            };
                            (e.path.clone(), (d, e.score))
                        })
                        .collect()
                })
                .map_err(|e| e.to_string());
            Task::Remembered(path, hands)
        });
        self.insp.set_bank(info, threshold);
        self.open_folder(folder);
        let waiting = std::mem::take(&mut self.jobs.inbox.waiting);
        if !waiting.is_empty() {
            self.score_inbox(waiting);
        }
    }

    /// Lists `dir` in the background; the listing then becomes a scoring job.
    fn open_folder(&mut self, dir: PathBuf) {
        if self.insp.bank.is_none() {
            self.folder_error = Some("choose a category first".into());
            return;
        }
        self.cancel_jobs();
        self.folder_error = None;
        let id = self.jobs.next_id();
        self.jobs.listing = Some((id, dir.clone()));
        self.jobs.spawn_task(move || {
            let result = crate::data::list_images(&dir).map_err(|e| e.to_string());
            Task::Listed { id, dir, result }
        });
    }

    fn start_job(&mut self, paths: Vec<PathBuf>, inbox: bool) {
        let Some(bank) = &self.insp.bank else {
            return;
        };
        if paths.is_empty() {
            return;
        }
        let (path, name) = (bank.path.clone(), bank.file_name.clone());
        let job = self.jobs.next_id();
        let paths = self.insp.add_job(job, paths, inbox);
        let kind = if inbox {
            JobKind::Inbox
        } else {
            JobKind::Folder
        };
        self.jobs.meter.started(job, kind, &name, Instant::now());
        self.jobs.score(job, path, paths);
    }

    pub(super) fn score_inbox(&mut self, paths: Vec<PathBuf>) {
        if self.insp.bank.is_none() || self.catalog.loading.is_some() {
            self.jobs.inbox.waiting.extend(paths);
        } else {
            self.start_job(paths, true);
        }
    }

    pub(super) fn start_inbox(&mut self, dir: PathBuf) {
        self.jobs.start_inbox(dir.clone());
        self.settings.update(|s| s.inbox = Some(dir));
    }

    pub(super) fn set_threshold(&mut self, t: f32) {
        self.insp.set_threshold(t);
        let Some(b) = &self.insp.bank else { return };
        let key = b.file_name.clone();
        let saved = SavedThreshold {
            value: t,
            bank_created: b.meta.created.clone(),
        };
        let calibrated = (t - b.calibrated_threshold()).abs() <= f32::EPSILON * t.abs().max(1.0);
        self.settings.update(|s| {
            if calibrated {
                s.thresholds.remove(&key);
            } else {
                s.thresholds.insert(key, saved);
            }
        });
    }

    fn export(&mut self, path: PathBuf) {
        let Some(bank) = &self.insp.bank else {
            self.jobs.export_status = Some(Err("nothing to export: no category loaded".into()));
            return;
        };
        let rules = self.insp.rules();
        let category = bank.meta.category.clone();
        let bank_path = bank.path.clone();
        // The rejects in table order, then every image that could not be inspected: a part
        // that was never looked at must not drop out of the record.
        let mut rows: Vec<usize> = self.insp.rejects().to_vec();
        rows.extend((0..self.insp.items.len()).filter(|&i| self.insp.items[i].error().is_some()));
        let records: Vec<CsvRecord> = rows
            .iter()
            .filter_map(|&i| {
                let item = &self.insp.items[i];
                let outcome = match (item.inspection(), item.error()) {
                    (Some(ins), _) => ins.outcome(&rules),
                    (None, Some(e)) => Outcome::Failed(e.to_string()),
                    (None, None) => return None,
                };
                Some(CsvRecord {
                    path: item.path.clone(),
                    outcome,
                    rules,
                    category: category.clone(),
                    bank: bank_path.clone(),
                    timestamp: item.scored_at.clone(),
                })
            })
            .collect();
        self.jobs.exporting = true;
        self.jobs.export_status = None;
        self.jobs.spawn_task(move || {
            let failed = records
                .iter()
                .filter(|r| matches!(r.outcome, Outcome::Failed(_)))
                .count();
            let message = format!(
                "Exported {} rejects and {failed} images that could not be inspected to {}",
                records.len() - failed,
                path.display()
            );
            Task::Exported(
                write_csv_file(&path, &records)
                    .map(|()| message)
                    .map_err(|e| e.to_string()),
            )
        });
    }

    /// Exports the current reject list to `path` without a dialog (scripts and tests).
    pub fn export_rejects_to(&mut self, path: PathBuf) {
        self.export(path);
    }

    /// Acts on a path the operator gave in a dialog or the text field.
    pub(super) fn dialog_chose(&mut self, purpose: DialogPurpose, path: PathBuf) {
        match purpose {
            DialogPurpose::OpenFolder => self.open_folder(path),
            DialogPurpose::InboxFolder => self.start_inbox(path),
            DialogPurpose::Export => self.export(path),
        }
    }

    // ---------------------------------------------------------------- inputs

    pub(super) fn on_reply(&mut self, reply: Reply) {
        match reply {
            Reply::BankLoading { .. } => {}
            Reply::BankLoaded { bank, meta, device } => self.bank_loaded(bank, *meta, device),
            Reply::BankFailed { bank, error } => self.catalog.failed(&bank, error),
            Reply::ChangeFailed { bank, roi, error } => {
                // The bank is unchanged and still loaded: stop awaiting it, say why.
                self.catalog.loaded(&bank);
                if self.teach_reloaded(Err(&error)) {
                    // Said on the teach line.
                } else if roi {
                    self.roi_editor.status = Some(error);
                } else {
                    self.notices.push(error);
                }
            }
            Reply::Taught {
                bank,
                entry,
                warning,
            } => self.on_taught(bank, &entry, warning),
            Reply::TeachFailed { error, .. } => self.on_teach_failed(error),
            Reply::Progress { job, done, total } => self.jobs.set_progress(job, done, total),
            Reply::Scored {
                job,
                index,
                inspection,
            } => {
                let now = crate::report::now_rfc3339();
                // Decided as the gallery decides it (review band, minimum area), so the job log's
                // count matches the Rejected count on screen.
                let rejected =
                    inspection.decide(&self.insp.rules()) == crate::report::Decision::Reject;
                if self
                    .insp
                    .set_result(job, index, *inspection, &now)
                    .is_some()
                {
                    self.jobs.meter.result(job, Some(rejected), Instant::now());
                }
            }
            Reply::ImageFailed {
                job, index, error, ..
            } => {
                let now = crate::report::now_rfc3339();
                if self.insp.set_failed(job, index, error, &now).is_some() {
                    self.jobs.meter.result(job, None, Instant::now());
                }
            }
            Reply::JobDone {
                job,
                cancelled,
                error,
            } => {
                let ended =
                    self.jobs
                        .meter
                        .finished(job, cancelled, error.is_some(), Instant::now());
                if let Some(summary) = ended {
                    self.jobs.log(&summary);
                }
                let known = self.jobs.finish(job);
                let unscored = error
                    .as_deref()
                    .or(cancelled.then_some("scoring was cancelled"));
                self.insp.finish_job(job, unscored);
                if let (true, Some(e)) = (known, error) {
                    // A crash was already reported by `WorkerError`; say it once.
                    if !self.notices.iter().any(|n| n.contains(&e)) {
                        self.notices.push(format!("Scoring stopped: {e}"));
                    }
                }
            }
            Reply::WorkerError { error } => {
                self.catalog.worker_died(&error);
                if self.teach.busy.is_some() {
                    // A teach or undo in flight died with the worker: the bank file is
                    // either the old or the new version (writes are atomic); reloading shows which.
                    self.on_teach_failed(error.clone());
                }
                self.notices.push(format!("Worker: {error}"));
            }
        }
    }

    pub(super) fn on_task(&mut self, task: Task) {
        match task {
            Task::Catalog(result) => {
                let has_bank = self.insp.bank.is_some();
                if let Some(bank) = self.catalog.scanned(result, has_bank) {
                    self.choose_bank(bank);
                }
            }
            Task::Listed { id, dir, result } => {
                if self.jobs.listing.as_ref().map(|l| l.0) != Some(id) {
                    return;
                }
                self.jobs.listing = None;
                match result {
                    Ok(paths) if paths.is_empty() => {
                        self.folder_error = Some(format!("no images in {}", dir.display()));
                        self.insp.source = Some(dir);
                    }
                    Ok(paths) => {
                        self.insp.source = Some(dir);
                        self.start_job(paths, false);
                    }
                    Err(e) => {
                        self.insp.source = Some(dir);
                        self.folder_error = Some(format!("{e} — use Open folder..."));
                    }
                }
            }
            Task::Exported(result) => {
                self.jobs.exporting = false;
                self.jobs.export_status = Some(result);
            }
            Task::Recorded(Err(e)) => self.notices.push(e),
            Task::Remembered(bank, hands) => {
                if self.insp.bank.as_ref().is_some_and(|b| b.path == bank) {
                    match hands {
                        Ok(h) => self.insp.remember(h),
                        Err(e) => self.notices.push(e),
                    }
                }
            }
            Task::RoiLoaded(Ok(Some(roi))) => self.roi_editor.adopt(roi),
            Task::RoiLoaded(Ok(None)) => {}
            Task::RoiLoaded(Err(e)) => self.roi_editor.status = Some(e),
            Task::Recorded(Ok(())) => {}
            Task::Logged(Err(e)) => {
                if !self.notices.contains(&e) {
                    self.notices.push(e);
                }
            }
            Task::Logged(Ok(())) => {}
        }
    }

    /// Saves pending settings now and waits for the write (window closing).
    pub fn flush_settings(&mut self) {
        self.settings.flush();
        self.report_settings_errors();
    }

    /// Shows failed settings writes in the notice list, each message once.
    pub(super) fn report_settings_errors(&mut self) {
        while let Some(e) = self.settings.take_error() {
            let msg = e.to_string();
            if !self.notices.contains(&msg) {
                self.notices.push(msg);
            }
        }
    }

    // ---------------------------------------------------------------- queries

    pub fn settings(&self) -> &Settings {
        self.settings.get()
    }

    /// Opens `path` in the detail view, if it is one of the images shown (scripts, demos).
    pub fn open_image(&mut self, path: &Path) -> bool {
        match self.insp.index_of_path(path) {
            Some(i) => {
                self.apply(Action::OpenDetail(i));
                true
            }
            None => false,
        }
    }

    /// Whether a bank is loaded and its images listed.
    pub fn has_bank(&self) -> bool {
        self.insp.bank.is_some()
    }

    /// Bank files found in the models folder (usable or not).
    pub fn catalog_len(&self) -> usize {
        self.catalog.entries.len()
    }

    pub fn models_dir(&self) -> &Path {
        &self.catalog.models_dir
    }

    pub fn inbox_on(&self) -> bool {
        self.jobs.inbox.is_on()
    }

    /// The paths of the items in gallery order (for tests and scripting).
    pub fn gallery_paths(&mut self) -> Vec<PathBuf> {
        let view = self.insp.view().to_vec();
        view.into_iter()
            .map(|i| self.insp.items[i].path.clone())
            .collect()
    }

    pub fn selected_path(&self) -> Option<&Path> {
        self.sel
            .selected
            .and_then(|i| self.insp.items.get(i))
            .map(|i| i.path.as_path())
    }

    pub fn threshold(&self) -> f32 {
        self.insp.threshold()
    }

    /// How many textures are alive (to check that far-away thumbnails are freed).
    pub fn texture_count(&self) -> usize {
        self.textures.count()
    }
}
