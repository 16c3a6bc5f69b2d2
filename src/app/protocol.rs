//! The messages between the GUI thread and the scoring worker, and the `Backend` seam.
//!
//! The GUI never touches libtorch: it only sends [`Request`]s and receives [`Reply`]s made of
//! plain data. Everything device-specific hides behind [`Backend`], so tests and demos can run
//! the real worker loop with a synthetic scorer.
use crate::bank::BankMeta;
use crate::engine::Inspection;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Identifies one batch of images sent for scoring, so late replies of a cancelled or replaced
/// job can be told apart from the current one.
pub type JobId = u64;

/// What the GUI asks the worker to do. Requests are handled in order.
#[derive(Clone, Debug)]
pub enum Request {
    /// Load (or touch in the cache) the bank at this path; answered by `BankLoaded`/`BankFailed`.
    LoadBank { bank: PathBuf },
    /// Score `paths` with `bank`; answered by one `Scored`/`ImageFailed` per image, `Progress`,
    /// and finally `JobDone`.
    Score {
        job: JobId,
        bank: PathBuf,
        paths: Vec<PathBuf>,
    },
    /// Change `bank` (its ROI, recalibrating under it, or its decision rules) as a new version
    /// and reload it; answered by `BankLoaded` with the new metadata, or `ChangeFailed`.
    ChangeBank {
        bank: PathBuf,
        change: crate::engine::calibrate::BankChange,
    },
    /// Teach `bank` (still at `version`, as loaded) that `paths` are good parts: the engine's
    /// update as `patchcore update` runs it, `force` letting in images far above the threshold.
    /// Answered by `Taught` and then `BankLoaded` with the new version, or `TeachFailed`.
    Teach {
        bank: PathBuf,
        version: u32,
        paths: Vec<PathBuf>,
        force: bool,
    },
    /// Stop a job at the next image boundary (the handle also flags it immediately).
    Cancel { job: JobId },
    /// Leave the loop; the thread ends after the current image.
    Shutdown,
}

/// What the worker reports back. Plain data only, never tensors.
#[derive(Clone, Debug)]
pub enum Reply {
    /// A bank load started (it can take seconds: backbone weights plus the bank rows).
    BankLoading {
        bank: PathBuf,
    },
    BankLoaded {
        bank: PathBuf,
        meta: Box<BankMeta>,
        /// Where the model runs, e.g. "cpu" or "cuda:0", shown in the status bar.
        device: String,
    },
    BankFailed {
        bank: PathBuf,
        error: String,
    },
    /// `done` of `total` images of `job` have a result (success or failure).
    Progress {
        job: JobId,
        done: usize,
        total: usize,
    },
    /// The result for `paths[index]` of `job`.
    Scored {
        job: JobId,
        index: usize,
        inspection: Box<Inspection>,
    },
    /// `paths[index]` of `job` could not be scored (unreadable image, ...). Other images go on.
    ImageFailed {
        job: JobId,
        index: usize,
        path: PathBuf,
        error: String,
    },
    /// The job ended. `error` is set when the whole job failed (bank unusable, worker crash):
    /// images without a result then stay unscored and the GUI marks them with it.
    JobDone {
        job: JobId,
        cancelled: bool,
        error: Option<String>,
    },
    /// A `ChangeBank` could not be stored (the bank is unchanged): why, and whether it was an ROI.
    ChangeFailed {
        bank: PathBuf,
        roi: bool,
        error: String,
    },
    /// A `Teach` was stored as a new bank version: its history entry (rows added per image,
    /// threshold before and after). `warning`: the verdicts file could not be written.
    Taught {
        bank: PathBuf,
        entry: Box<crate::bank::HistoryEntry>,
        warning: Option<String>,
    },
    /// A `Teach` was refused or failed; the bank is unchanged.
    TeachFailed {
        bank: PathBuf,
        error: String,
    },
    /// The worker hit a failure outside any one image (panic, backend could not start).
    /// It has restarted itself; the message is shown in the GUI.
    WorkerError {
        error: String,
    },
}

/// The device side of the worker: loading banks and scoring images. Runs on the worker thread
/// only, so implementations need not be `Send` (libtorch handles stay on one thread).
pub trait Backend {
    /// Loads `bank` (or finds it in a cache) and returns its metadata.
    fn load(&mut self, bank: &Path) -> Result<BankMeta, String>;

    /// Scores `paths` with `bank` in batches, calling `on_each(index, result)` in order; stops
    /// early when `on_each` returns false. `Err` means nothing more can be scored (e.g. the bank
    /// does not load); per-image problems go to `on_each` instead.
    fn inspect(
        &mut self,
        bank: &Path,
        paths: &[PathBuf],
        on_each: &mut dyn FnMut(usize, Result<Inspection, String>) -> bool,
    ) -> Result<(), String>;

    /// Where the model runs, for display ("cpu", "cuda:0", "synthetic").
    fn device_name(&self) -> String;

    /// Grows `bank`, if still at `version`, with the good images `paths` and stores it as a new
    /// version (`engine::update_and_commit`); returns the history entry. Scorers without a model
    /// cannot.
    fn update(
        &mut self,
        bank: &Path,
        version: u32,
        paths: &[PathBuf],
        force: bool,
    ) -> Result<crate::bank::HistoryEntry, String> {
        let _ = (version, paths, force);
        Err(format!(
            "{}: {} has no model to teach the bank with",
            bank.display(),
            self.device_name()
        ))
    }
}

/// Builds a backend on the worker thread. Called again after a crash, so a poisoned device
/// context is not reused.
pub type BackendFactory = Arc<dyn Fn() -> Result<Box<dyn Backend>, String> + Send + Sync>;
