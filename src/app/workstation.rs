//! The operator workstation: owns the UI state, talks to the worker, the decode pool, the
//! inbox poller and the dialogs, and lays out the panels each frame.
//!
//! Views never mutate shared state directly: they read, and push [`Action`]s that are applied
//! after the frame is drawn (the message pattern of the egui demo apps), so every state change
//! goes through one place.
use super::catalog::{self, CatalogEntry};
use super::decode::DecodePool;
use super::dialogs::{DialogAnswer, DialogOutcome, Dialogs};
use super::inbox::{Inbox, InboxEvent};
use super::protocol::{BackendFactory, JobId, Reply, Request};
use super::settings::{SavedThreshold, Settings, SettingsError};
use super::state::{BankInfo, Filter, Inspector, RejectColumn, SortKey};
use super::textures::TextureCache;
use super::worker::{Repaint, Worker};
use super::{controls, detail, gallery, rejects, toolbar, GuiOptions};
use crate::report::{write_csv_file, CsvRecord, Outcome};
use crossbeam_channel::{Receiver, Sender};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

/// What the views ask for. Applied in order after the frame's layout.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    ChooseBank(PathBuf),
    RescanModels,
    OpenFolderDialog,
    InboxEnabled(bool),
    ExportDialog,
    CancelScoring,
    Select(usize),
    OpenDetail(usize),
    CloseDetail,
    Step(isize),
    SetThreshold(f32),
    ResetThreshold,
    SetFilter(Filter),
    SetSort(SortKey),
    SortRejects(RejectColumn),
    DismissNotice(usize),
    /// The typed-in path of the [`PathPrompt`] was confirmed, or the prompt closed.
    PromptSubmit,
    PromptCancel,
}

/// Display choices the views read and change directly (no effect beyond drawing).
#[derive(Clone, Debug)]
pub struct Prefs {
    pub opacity: f32,
    pub overlay_in_gallery: bool,
    pub overlay_in_detail: bool,
}

/// Results of short background jobs (folder scans, listings, exports).
enum Task {
    Catalog(Result<Vec<CatalogEntry>, String>),
    Listed {
        id: u64,
        dir: PathBuf,
        result: Result<Vec<PathBuf>, String>,
    },
    /// The status line of a finished export, or why it failed.
    Exported(Result<String, String>),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum DialogPurpose {
    OpenFolder,
    InboxFolder,
    Export,
}

/// Where no file dialog can be shown, the toolbar asks for the path in a text field.
#[derive(Clone, Debug)]
pub(crate) struct PathPrompt {
    purpose: DialogPurpose,
    pub(crate) text: String,
}

impl PathPrompt {
    pub(crate) fn question(&self) -> &'static str {
        match self.purpose {
            DialogPurpose::OpenFolder => "Folder of images to inspect:",
            DialogPurpose::InboxFolder => "Folder to watch for new images:",
            DialogPurpose::Export => "Save the rejects as CSV to:",
        }
    }

    pub(crate) fn confirm(&self) -> &'static str {
        match self.purpose {
            DialogPurpose::OpenFolder => "Open",
            DialogPurpose::InboxFolder => "Watch",
            DialogPurpose::Export => "Save",
        }
    }
}

/// The outside services a workstation uses; tests swap in fakes (no libtorch, no dialogs).
pub struct Services {
    pub backend: BackendFactory,
    pub dialogs: Box<dyn Dialogs>,
}

/// Per-frame time for handling worker replies; the rest waits for the next frame.
const REPLY_BUDGET: Duration = Duration::from_millis(8);
const TEXTURE_BUDGET: Duration = Duration::from_millis(6);

/// The workstation: UI state, plus the handles to the worker, decoders, inbox and dialogs.
/// `ui` runs one frame; the eframe shell (`GuiApp`) and the kittest tests both drive it.
pub struct Workstation {
    pub(crate) settings: Settings,
    settings_path: Option<PathBuf>,
    settings_dirty: bool,
    last_settings_save: Instant,

    ctx_slot: Arc<OnceLock<egui::Context>>,
    repaint: Repaint,
    worker: Worker,
    pub(crate) decode: DecodePool,
    pub(crate) textures: TextureCache,
    dialogs: Box<dyn Dialogs>,
    task_tx: Sender<Task>,
    task_rx: Receiver<Task>,
    inbox_poll: Duration,

    pub(crate) models_dir: PathBuf,
    pub(crate) catalog: Vec<CatalogEntry>,
    pub(crate) catalog_error: Option<String>,
    pub(crate) scanning: bool,
    restore_bank: Option<String>,

    pub(crate) insp: Inspector,
    pub(crate) loading: Option<PathBuf>,
    pub(crate) bank_error: Option<String>,
    pub(crate) listing: Option<(u64, PathBuf)>,
    pub(crate) folder_error: Option<String>,
    next_id: u64,
    pub(crate) progress: HashMap<JobId, (usize, usize)>,

    pub(crate) selected: Option<usize>,
    pub(crate) detail: bool,
    pub(crate) scroll_to_selected: bool,
    pub(crate) rejects_scrolled_for: Option<usize>,

    inbox: Option<Inbox>,
    pub(crate) inbox_dir: Option<PathBuf>,
    pub(crate) inbox_error: Option<String>,
    pub(crate) inbox_waiting: Vec<PathBuf>,

    /// The open dialog, and the path its text-field fallback starts from.
    dialog: Option<(DialogPurpose, DialogAnswer, PathBuf)>,
    /// Set once a dialog could not be shown: later requests go straight to the text field.
    dialogs_unavailable: bool,
    pub(crate) path_prompt: Option<PathPrompt>,
    pub(crate) export_status: Option<Result<String, String>>,
    pub(crate) exporting: bool,
    pub(crate) notices: Vec<String>,
    pub(crate) prefs: Prefs,
    /// Ids of sliders drawn this frame: arrow keys belong to them while they have focus.
    pub(crate) slider_ids: Vec<egui::Id>,
    layout_seen: Option<(f32, f32)>,
}

impl Workstation {
    pub fn new(opts: GuiOptions, services: Services) -> Workstation {
        let settings_path = opts
            .settings_path
            .clone()
            .or_else(super::settings::default_path);
        let (mut settings, settings_err) = match &settings_path {
            Some(p) => Settings::load(p),
            None => (Settings::default(), None),
        };
        let ctx_slot: Arc<OnceLock<egui::Context>> = Arc::new(OnceLock::new());
        let slot = ctx_slot.clone();
        let repaint: Repaint = Arc::new(move || {
            if let Some(ctx) = slot.get() {
                ctx.request_repaint();
            }
        });
        let models_dir = opts
            .models_dir
            .clone()
            .or_else(|| settings.models_dir.clone())
            .unwrap_or_else(|| PathBuf::from("models"));
        settings.models_dir = Some(models_dir.clone());
        let inbox_dir = opts.inbox.clone().or_else(|| settings.inbox.clone());
        let (task_tx, task_rx) = crossbeam_channel::unbounded();
        let prefs = Prefs {
            opacity: settings.overlay_opacity.clamp(0.0, 1.0),
            overlay_in_gallery: settings.show_overlay_in_gallery,
            overlay_in_detail: true,
        };
        let mut ws = Workstation {
            restore_bank: settings.last_bank.clone(),
            settings,
            settings_path,
            settings_dirty: false,
            last_settings_save: Instant::now(),
            worker: Worker::spawn(services.backend, repaint.clone()),
            decode: DecodePool::new(2, 24, repaint.clone()),
            textures: TextureCache::default(),
            dialogs: services.dialogs,
            ctx_slot,
            repaint,
            task_tx,
            task_rx,
            inbox_poll: opts.inbox_poll,
            models_dir,
            catalog: Vec::new(),
            catalog_error: None,
            scanning: false,
            insp: Inspector::default(),
            loading: None,
            bank_error: None,
            listing: None,
            folder_error: None,
            next_id: 1,
            progress: HashMap::new(),
            selected: None,
            detail: false,
            scroll_to_selected: false,
            rejects_scrolled_for: None,
            inbox: None,
            inbox_dir,
            inbox_error: None,
            inbox_waiting: Vec::new(),
            dialog: None,
            dialogs_unavailable: false,
            path_prompt: None,
            export_status: None,
            exporting: false,
            notices: Vec::new(),
            prefs,
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

    fn id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    /// Runs `f` on a short-lived thread and delivers its result as a task.
    fn spawn_task(&self, f: impl FnOnce() -> Task + Send + 'static) {
        let tx = self.task_tx.clone();
        let repaint = self.repaint.clone();
        let _ = std::thread::Builder::new()
            .name("patchcore-task".into())
            .spawn(move || {
                let _ = tx.send(f());
                repaint();
            });
    }

    fn rescan(&mut self) {
        self.scanning = true;
        let dir = self.models_dir.clone();
        self.spawn_task(move || Task::Catalog(catalog::scan_models(&dir)));
    }

    pub fn is_busy(&self) -> bool {
        self.loading.is_some()
            || self.listing.is_some()
            || self.insp.is_busy()
            || self.exporting
            || self.scanning
    }

    /// `(done, total)` over all live scoring jobs.
    pub fn overall_progress(&self) -> (usize, usize) {
        self.progress
            .values()
            .fold((0, 0), |(d, t), (dd, tt)| (d + dd, t + tt))
    }

    // ---------------------------------------------------------------- state changes

    fn cancel_jobs(&mut self) {
        for job in self.insp.clear_items() {
            self.worker.cancel(job);
        }
        self.progress.clear();
        self.selected = None;
        self.detail = false;
        self.textures.clear();
    }

    fn choose_bank(&mut self, bank: PathBuf) {
        if self.loading.as_ref() == Some(&bank) {
            return;
        }
        self.cancel_jobs();
        self.listing = None;
        self.bank_error = None;
        self.folder_error = None;
        self.loading = Some(bank.clone());
        self.worker.send(Request::LoadBank { bank });
    }

    fn bank_loaded(&mut self, bank: PathBuf, meta: crate::bank::BankMeta, device: String) {
        if self.loading.as_ref() != Some(&bank) {
            return; // the operator chose another bank meanwhile
        }
        self.loading = None;
        let info = BankInfo::new(bank, meta, device);
        let threshold = self
            .settings
            .threshold_for(&info.file_name, &info.meta.created)
            .unwrap_or(info.calibrated_threshold());
        self.settings.last_bank = Some(info.file_name.clone());
        self.settings_dirty = true;
        // `test_dir` may name the dataset root (MVTec layout: train/, test/, ground_truth/);
        // the parts to inspect are then under test/.
        let folder = match info.meta.test_dir.clone().filter(|d| d.is_dir()) {
            Some(d) if d.join("test").is_dir() => d.join("test"),
            Some(d) => d,
            None => info.meta.train_dir.clone(),
        };
        self.cancel_jobs();
        self.insp.set_bank(info, threshold);
        self.open_folder(folder);
        let waiting = std::mem::take(&mut self.inbox_waiting);
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
        let id = self.id();
        self.listing = Some((id, dir.clone()));
        self.spawn_task(move || {
            let result = crate::data::list_images(&dir).map_err(|e| e.to_string());
            Task::Listed { id, dir, result }
        });
    }

    fn start_job(&mut self, paths: Vec<PathBuf>, inbox: bool) {
        let Some(bank) = self.insp.bank.as_ref().map(|b| b.path.clone()) else {
            return;
        };
        if paths.is_empty() {
            return;
        }
        let job = self.id();
        let paths = self.insp.add_job(job, paths, inbox);
        self.progress.insert(job, (0, paths.len()));
        self.worker.send(Request::Score { job, bank, paths });
    }

    fn score_inbox(&mut self, paths: Vec<PathBuf>) {
        if self.insp.bank.is_none() || self.loading.is_some() {
            self.inbox_waiting.extend(paths);
        } else {
            self.start_job(paths, true);
        }
    }

    fn start_inbox(&mut self, dir: PathBuf) {
        self.inbox_error = None;
        self.inbox = Some(Inbox::watch(
            dir.clone(),
            self.inbox_poll,
            self.repaint.clone(),
        ));
        self.settings.inbox = Some(dir.clone());
        self.settings_dirty = true;
        self.inbox_dir = Some(dir);
    }

    fn set_threshold(&mut self, t: f32) {
        self.insp.set_threshold(t);
        if let Some(b) = &self.insp.bank {
            let key = b.file_name.clone();
            if (t - b.calibrated_threshold()).abs() <= f32::EPSILON * t.abs().max(1.0) {
                self.settings.thresholds.remove(&key);
            } else {
                self.settings.thresholds.insert(
                    key,
                    SavedThreshold {
                        value: t,
                        bank_created: b.meta.created.clone(),
                    },
                );
            }
            self.settings_dirty = true;
        }
    }

    fn export(&mut self, path: PathBuf) {
        let Some(bank) = &self.insp.bank else {
            self.export_status = Some(Err("nothing to export: no category loaded".into()));
            return;
        };
        let threshold = self.insp.threshold();
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
                    (Some(ins), _) => ins.outcome(),
                    (None, Some(e)) => Outcome::Failed(e.to_string()),
                    (None, None) => return None,
                };
                Some(CsvRecord {
                    path: item.path.clone(),
                    outcome,
                    threshold,
                    category: category.clone(),
                    bank: bank_path.clone(),
                    timestamp: item.scored_at.clone(),
                })
            })
            .collect();
        self.exporting = true;
        self.export_status = None;
        self.spawn_task(move || {
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

    fn apply(&mut self, action: Action) {
        match action {
            Action::ChooseBank(bank) => self.choose_bank(bank),
            Action::RescanModels => self.rescan(),
            Action::OpenFolderDialog => {
                if self.insp.bank.is_none() {
                    self.folder_error = Some("choose a category first".into());
                } else {
                    let start = self.insp.source.clone();
                    let suggestion = start.clone().unwrap_or_else(working_dir);
                    self.ask(DialogPurpose::OpenFolder, start, suggestion);
                }
            }
            Action::InboxEnabled(on) => {
                if !on {
                    self.inbox = None;
                    self.inbox_error = None;
                } else if let Some(dir) = self.inbox_dir.clone() {
                    self.start_inbox(dir);
                } else {
                    self.ask(DialogPurpose::InboxFolder, None, working_dir());
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
                self.ask(DialogPurpose::Export, start, working_dir().join(name));
            }
            Action::CancelScoring => {
                for job in self.insp.live_jobs() {
                    self.worker.cancel(job);
                }
            }
            Action::Select(i) => {
                self.selected = Some(i);
            }
            Action::OpenDetail(i) => {
                self.selected = Some(i);
                self.detail = true;
            }
            Action::CloseDetail => {
                self.detail = false;
                self.scroll_to_selected = true;
            }
            Action::Step(delta) => {
                if let Some(next) = self.insp.step(self.selected, delta) {
                    self.selected = Some(next);
                    self.scroll_to_selected = true;
                }
            }
            Action::SetThreshold(t) => self.set_threshold(t),
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
                let Some(p) = self.path_prompt.take() else {
                    return;
                };
                let text = p.text.trim();
                if text.is_empty() {
                    self.path_prompt = Some(p);
                } else {
                    self.dialog_chose(p.purpose, PathBuf::from(text));
                }
            }
            Action::PromptCancel => self.path_prompt = None,
        }
    }

    // ---------------------------------------------------------------- inputs

    fn drain_worker(&mut self) -> bool {
        let start = Instant::now();
        while start.elapsed() < REPLY_BUDGET {
            let Some(reply) = self.worker.try_recv() else {
                return false;
            };
            self.on_reply(reply);
        }
        true
    }

    fn on_reply(&mut self, reply: Reply) {
        match reply {
            Reply::BankLoading { .. } => {}
            Reply::BankLoaded { bank, meta, device } => self.bank_loaded(bank, *meta, device),
            Reply::BankFailed { bank, error } => {
                if self.loading.as_ref() == Some(&bank) {
                    self.loading = None;
                    self.bank_error = Some(error);
                }
            }
            Reply::Progress { job, done, total } => {
                if let Some(p) = self.progress.get_mut(&job) {
                    *p = (done, total);
                }
            }
            Reply::Scored {
                job,
                index,
                inspection,
            } => {
                let now = crate::report::now_rfc3339();
                self.insp.set_result(job, index, *inspection, &now);
            }
            Reply::ImageFailed {
                job, index, error, ..
            } => {
                self.insp.set_failed(job, index, error);
            }
            Reply::JobDone { job, error, .. } => {
                let known = self.progress.remove(&job).is_some();
                self.insp.finish_job(job, error.as_deref());
                if let (true, Some(e)) = (known, error) {
                    // A crash was already reported by `WorkerError`; say it once.
                    if !self.notices.iter().any(|n| n.contains(&e)) {
                        self.notices.push(format!("Scoring stopped: {e}"));
                    }
                }
            }
            Reply::WorkerError { error } => {
                // A bank load in flight died with the worker. Not retried automatically: a
                // bank that crashes the backend would loop; the operator can pick it again.
                if self.loading.take().is_some() {
                    self.bank_error = Some(error.clone());
                }
                self.notices.push(format!("Worker: {error}"));
            }
        }
    }

    fn drain_tasks(&mut self) {
        while let Ok(task) = self.task_rx.try_recv() {
            match task {
                Task::Catalog(result) => {
                    self.scanning = false;
                    match result {
                        Ok(list) => {
                            self.catalog = list;
                            self.catalog_error = None;
                        }
                        Err(e) => {
                            self.catalog.clear();
                            self.catalog_error = Some(e);
                        }
                    }
                    if let Some(name) = self.restore_bank.take() {
                        let found = self
                            .catalog
                            .iter()
                            .find(|c| c.file_name == name && c.meta.is_ok())
                            .map(|c| c.path.clone());
                        if let Some(p) = found {
                            self.choose_bank(p);
                        }
                    }
                    // A models folder with a single usable bank: open it, there is nothing to pick.
                    let mut usable = self.catalog.iter().filter(|c| c.meta.is_ok());
                    if let (Some(only), None) = (usable.next(), usable.next()) {
                        if self.loading.is_none() && self.insp.bank.is_none() {
                            let path = only.path.clone();
                            self.choose_bank(path);
                        }
                    }
                }
                Task::Listed { id, dir, result } => {
                    if self.listing.as_ref().map(|l| l.0) != Some(id) {
                        continue;
                    }
                    self.listing = None;
                    match result {
                        Ok(paths) if paths.is_empty() => {
                            self.insp.source = Some(dir.clone());
                            self.folder_error = Some(format!("no images in {}", dir.display()));
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
                    self.exporting = false;
                    self.export_status = Some(result);
                }
            }
        }
    }

    fn drain_inbox(&mut self) {
        let mut arrived = Vec::new();
        if let Some(inbox) = &self.inbox {
            while let Some(ev) = inbox.try_recv() {
                match ev {
                    InboxEvent::Arrived(paths) => arrived.extend(paths),
                    InboxEvent::Error(e) => self.inbox_error = Some(e),
                    InboxEvent::Ok => self.inbox_error = None,
                }
            }
        }
        if !arrived.is_empty() {
            self.score_inbox(arrived);
        }
    }

    fn drain_dialog(&mut self) {
        let Some((_, rx, _)) = &self.dialog else {
            return;
        };
        let outcome = match rx.try_recv() {
            Ok(a) => a,
            Err(crossbeam_channel::TryRecvError::Empty) => return,
            Err(crossbeam_channel::TryRecvError::Disconnected) => DialogOutcome::Cancelled,
        };
        let Some((purpose, _, suggestion)) = self.dialog.take() else {
            return;
        };
        match outcome {
            DialogOutcome::Chosen(path) => self.dialog_chose(purpose, path),
            DialogOutcome::Cancelled => {}
            DialogOutcome::Unavailable => {
                self.dialogs_unavailable = true;
                self.prompt(purpose, suggestion);
            }
        }
    }

    fn dialog_chose(&mut self, purpose: DialogPurpose, path: PathBuf) {
        match purpose {
            DialogPurpose::OpenFolder => self.open_folder(path),
            DialogPurpose::InboxFolder => self.start_inbox(path),
            DialogPurpose::Export => self.export(path),
        }
    }

    /// Asks for a path: the native dialog, or the text field where there is none.
    /// `suggestion` pre-fills the text field.
    fn ask(&mut self, purpose: DialogPurpose, start: Option<PathBuf>, suggestion: PathBuf) {
        if self.dialog.is_some() {
            return;
        }
        if self.dialogs_unavailable {
            self.prompt(purpose, suggestion);
            return;
        }
        let answer = match purpose {
            DialogPurpose::OpenFolder | DialogPurpose::InboxFolder => {
                self.dialogs.pick_folder(start.as_deref())
            }
            DialogPurpose::Export => {
                let name = suggestion
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_else(|| "rejects.csv".into());
                self.dialogs.save_csv(start.as_deref(), &name)
            }
        };
        self.dialog = Some((purpose, answer, suggestion));
    }

    fn prompt(&mut self, purpose: DialogPurpose, suggestion: PathBuf) {
        self.path_prompt = Some(PathPrompt {
            purpose,
            text: suggestion.display().to_string(),
        });
    }

    pub fn inbox_on(&self) -> bool {
        self.inbox.is_some()
    }

    // ---------------------------------------------------------------- frame

    /// One frame: take in what arrived, lay out the panels, apply the actions.
    pub fn ui(&mut self, ui: &mut egui::Ui) {
        let ctx = ui.ctx().clone();
        let _ = self.ctx_slot.set(ctx.clone());

        let mut more = self.drain_worker();
        self.drain_tasks();
        self.drain_inbox();
        self.drain_dialog();
        more |= self.textures.receive(&ctx, &self.decode, TEXTURE_BUDGET);
        if more {
            ctx.request_repaint();
        }

        let mut actions = Vec::new();
        self.slider_ids.clear();
        egui::Panel::top("toolbar").show(ui, |ui| toolbar::show(ui, self, &mut actions));
        let left = egui::Panel::left("controls")
            .resizable(true)
            .default_size(self.settings.window.left_panel)
            .size_range(220.0..=520.0)
            .show(ui, |ui| controls::show(ui, self, &mut actions));
        let right = egui::Panel::right("rejects")
            .resizable(true)
            .default_size(self.settings.window.right_panel)
            .size_range(260.0..=800.0)
            .show(ui, |ui| rejects::show(ui, self, &mut actions));
        egui::CentralPanel::default().show(ui, |ui| {
            if self.detail && self.selected.is_some() {
                detail::show(ui, self, &mut actions);
            } else {
                gallery::show(ui, self, &mut actions);
            }
        });
        self.remember_layout(
            &ctx,
            left.response.rect.width(),
            right.response.rect.width(),
        );
        self.keyboard(&ctx, &mut actions);

        for a in actions {
            self.apply(a);
        }
        self.textures.end_frame();
        self.save_settings_if_due(&ctx, false);
    }

    /// Arrow keys move through the gallery order, Escape leaves the detail view. Skipped
    /// while a text field or a focused slider wants the keys.
    fn keyboard(&self, ctx: &egui::Context, actions: &mut Vec<Action>) {
        if ctx.egui_wants_keyboard_input() {
            return;
        }
        let focused = ctx.memory(|m| m.focused());
        if focused.is_some_and(|id| self.slider_ids.contains(&id)) {
            return;
        }
        ctx.input(|i| {
            for (key, delta) in [
                (egui::Key::ArrowRight, 1),
                (egui::Key::ArrowDown, 1),
                (egui::Key::ArrowLeft, -1),
                (egui::Key::ArrowUp, -1),
                (egui::Key::Home, isize::MIN / 2),
                (egui::Key::End, isize::MAX / 2),
            ] {
                if i.key_pressed(key) {
                    actions.push(Action::Step(delta));
                }
            }
            if i.key_pressed(egui::Key::Escape) && self.detail {
                actions.push(Action::CloseDetail);
            }
            if i.key_pressed(egui::Key::Enter) && !self.detail {
                if let Some(s) = self.selected {
                    actions.push(Action::OpenDetail(s));
                }
            }
        });
    }

    fn remember_layout(&mut self, ctx: &egui::Context, left: f32, right: f32) {
        let w = &mut self.settings.window;
        if self.layout_seen != Some((left, right)) {
            if self.layout_seen.is_some() {
                w.left_panel = left;
                w.right_panel = right;
                self.settings_dirty = true;
            }
            self.layout_seen = Some((left, right));
        }
        let (inner, outer, maximized) = ctx.input(|i| {
            let v = i.viewport();
            (v.inner_rect, v.outer_rect, v.maximized)
        });
        if let Some(inner) = inner {
            let maximized = maximized.unwrap_or(false);
            let pos = outer.map(|o| (o.min.x, o.min.y));
            let changed = (w.width - inner.width()).abs() > 0.5
                || (w.height - inner.height()).abs() > 0.5
                || w.maximized != maximized
                || pos.is_some_and(|(x, y)| w.x != Some(x) || w.y != Some(y));
            if changed {
                if !maximized {
                    w.width = inner.width();
                    w.height = inner.height();
                    if let Some((x, y)) = pos {
                        w.x = Some(x);
                        w.y = Some(y);
                    }
                }
                w.maximized = maximized;
                self.settings_dirty = true;
            }
        }
        let p = &self.prefs;
        let s = &mut self.settings;
        if s.overlay_opacity != p.opacity || s.show_overlay_in_gallery != p.overlay_in_gallery {
            s.overlay_opacity = p.opacity;
            s.show_overlay_in_gallery = p.overlay_in_gallery;
            self.settings_dirty = true;
        }
    }

    /// Writes settings at most once a second while they change, and always when `force`d.
    fn save_settings_if_due(&mut self, ctx: &egui::Context, force: bool) {
        if !self.settings_dirty {
            return;
        }
        let due = force || self.last_settings_save.elapsed() >= Duration::from_secs(1);
        if !due {
            ctx.request_repaint_after(Duration::from_secs(1));
            return;
        }
        self.settings_dirty = false;
        self.last_settings_save = Instant::now();
        if let Some(path) = &self.settings_path {
            if let Err(e) = self.settings.save(path) {
                self.report_settings_error(e);
            }
        }
    }

    fn report_settings_error(&mut self, e: SettingsError) {
        let msg = e.to_string();
        if !self.notices.contains(&msg) {
            self.notices.push(msg);
        }
    }

    /// Saves pending settings now (window closing).
    pub fn flush_settings(&mut self) {
        if let Some(ctx) = self.ctx_slot.get().cloned() {
            self.save_settings_if_due(&ctx, true);
        } else if self.settings_dirty {
            if let Some(path) = &self.settings_path {
                let _ = self.settings.save(path);
            }
            self.settings_dirty = false;
        }
    }

    pub fn settings(&self) -> &Settings {
        &self.settings
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
        self.catalog.len()
    }

    pub fn models_dir(&self) -> &Path {
        &self.models_dir
    }

    /// The paths of the items in gallery order (for tests and scripting).
    pub fn gallery_paths(&mut self) -> Vec<PathBuf> {
        let view = self.insp.view().to_vec();
        view.into_iter()
            .map(|i| self.insp.items[i].path.clone())
            .collect()
    }

    pub fn selected_path(&self) -> Option<&Path> {
        self.selected
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

/// The process's working folder, absolute where it can be found.
fn working_dir() -> PathBuf {
    std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."))
}

impl Drop for Workstation {
    fn drop(&mut self) {
        self.flush_settings();
    }
}
