//! The job tracker: everything running off the GUI thread on the workstation's behalf — the
//! scoring worker's jobs and their progress, short tasks (model scans, folder listings, CSV
//! exports) and the inbox poller — and what the toolbar shows about them.
use super::catalog::CatalogEntry;
use super::inbox::{Inbox, InboxEvent};
use super::job_log::{self, JobMeter, JobSummary};
use super::protocol::{BackendFactory, JobId, Reply, Request};
use super::worker::{Repaint, Worker};
use crossbeam_channel::{Receiver, Sender};
use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

/// Results of short background jobs (folder scans, listings, exports).
pub(crate) enum Task {
    Catalog(Result<Vec<CatalogEntry>, String>),
    Listed {
        id: u64,
        dir: PathBuf,
        result: Result<Vec<PathBuf>, String>,
    },
    /// The status line of a finished export, or why it failed.
    Exported(Result<String, String>),
    /// The bank's remembered decisions by hand (its verdicts file), or why they could not be read.
    Remembered(PathBuf, Result<super::state::Judged, String>),
    /// A decision by hand written to the verdicts file, or why it was not.
    Recorded(Result<(), String>),
    /// The bank's current ROI, read for the editor.
    RoiLoaded(Result<Option<crate::decide::Roi>, String>),
    /// A job log line was appended, or why not.
    Logged(Result<(), String>),
}

/// The watched inbox folder and what arrived in it.
pub(crate) struct InboxWatch {
    poller: Option<Inbox>,
    poll: Duration,
    /// The folder watched, or remembered for the next time watching is turned on.
    pub(crate) dir: Option<PathBuf>,
    pub(crate) error: Option<String>,
    /// Arrivals that wait for a category to be loaded.
    pub(crate) waiting: Vec<PathBuf>,
}

impl InboxWatch {
    pub(crate) fn is_on(&self) -> bool {
        self.poller.is_some()
    }
}

pub(crate) struct Jobs {
    worker: Worker,
    repaint: Repaint,
    task_tx: Sender<Task>,
    task_rx: Receiver<Task>,
    next_id: u64,
    /// `(done, total)` of each live scoring job.
    progress: HashMap<JobId, (usize, usize)>,
    /// The folder being listed, with the id that tells its answer from a superseded one.
    pub(crate) listing: Option<(u64, PathBuf)>,
    pub(crate) exporting: bool,
    /// What the last export did (shown beside the export button).
    pub(crate) export_status: Option<Result<String, String>>,
    pub(crate) inbox: InboxWatch,
    /// Bursts being scored, their counts and the current rate.
    pub(crate) meter: JobMeter,
    /// The job log file; `None` when there is no settings folder to put it in.
    log_path: Option<PathBuf>,
}

impl Jobs {
    pub(crate) fn new(
        backend: BackendFactory,
        repaint: Repaint,
        inbox_dir: Option<PathBuf>,
        inbox_poll: Duration,
        log_path: Option<PathBuf>,
    ) -> Jobs {
        let (task_tx, task_rx) = crossbeam_channel::unbounded();
        Jobs {
            worker: Worker::spawn(backend, repaint.clone()),
            repaint,
            task_tx,
            task_rx,
            next_id: 1,
            progress: HashMap::new(),
            listing: None,
            exporting: false,
            export_status: None,
            inbox: InboxWatch {
                poller: None,
                poll: inbox_poll,
                dir: inbox_dir,
                error: None,
                waiting: Vec::new(),
            },
            meter: JobMeter::default(),
            log_path,
        }
    }

    /// Reports a finished job: one line on stderr and appended to the job log (off this
    /// thread; a failed write comes back as `Task::Logged`).
    pub(crate) fn log(&self, summary: &JobSummary) {
        let line = summary.line(&crate::report::now_rfc3339());
        eprintln!("{line}");
        if let Some(path) = self.log_path.clone() {
            self.spawn_task(move || Task::Logged(job_log::append_line(&path, &line)));
        }
    }

    pub(crate) fn next_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    /// Runs `f` on a short-lived thread and delivers its result as a task.
    pub(crate) fn spawn_task(&self, f: impl FnOnce() -> Task + Send + 'static) {
        let tx = self.task_tx.clone();
        let repaint = self.repaint.clone();
        let _ = std::thread::Builder::new()
            .name("pc-task".into())
            .spawn(move || {
                let _ = tx.send(f());
                repaint();
            });
    }

    pub(crate) fn try_task(&self) -> Option<Task> {
        self.task_rx.try_recv().ok()
    }

    pub(crate) fn try_reply(&mut self) -> Option<Reply> {
        self.worker.try_recv()
    }

    pub(crate) fn load_bank(&mut self, bank: PathBuf) {
        self.worker.send(Request::LoadBank { bank });
    }

    pub(crate) fn change_bank(
        &mut self,
        bank: PathBuf,
        change: crate::engine::calibrate::BankChange,
    ) {
        self.worker.send(Request::ChangeBank { bank, change });
    }

    pub(crate) fn teach(&mut self, bank: PathBuf, version: u32, paths: Vec<PathBuf>, force: bool) {
        self.worker.send(Request::Teach {
            bank,
            version,
            paths,
            force,
        });
    }

    pub(crate) fn score(&mut self, job: JobId, bank: PathBuf, paths: Vec<PathBuf>) {
        self.progress.insert(job, (0, paths.len()));
        self.worker.send(Request::Score { job, bank, paths });
    }

    /// Asks the worker to stop `jobs`; their `JobDone` still arrives and closes them.
    pub(crate) fn cancel(&mut self, jobs: Vec<JobId>) {
        for job in jobs {
            self.worker.cancel(job);
        }
    }

    /// Cancels `jobs` and forgets all progress (the images they scored are gone).
    pub(crate) fn abandon(&mut self, jobs: Vec<JobId>) {
        self.cancel(jobs);
        self.progress.clear();
    }

    pub(crate) fn set_progress(&mut self, job: JobId, done: usize, total: usize) {
        if let Some(p) = self.progress.get_mut(&job) {
            *p = (done, total);
        }
    }

    /// Closes `job`; false if it was not live (abandoned before it finished).
    pub(crate) fn finish(&mut self, job: JobId) -> bool {
        self.progress.remove(&job).is_some()
    }

    /// `(done, total)` over all live scoring jobs.
    pub(crate) fn overall_progress(&self) -> (usize, usize) {
        self.progress
            .values()
            .fold((0, 0), |(d, t), (dd, tt)| (d + dd, t + tt))
    }

    /// A listing or an export is running (scoring is tracked by the inspector's jobs).
    pub(crate) fn is_busy(&self) -> bool {
        self.listing.is_some() || self.exporting
    }

    /// Starts watching `dir` (replacing any other watch).
    pub(crate) fn start_inbox(&mut self, dir: PathBuf) {
        let inbox = &mut self.inbox;
        inbox.error = None;
        inbox.poller = Some(Inbox::watch(dir.clone(), inbox.poll, self.repaint.clone()));
        inbox.dir = Some(dir);
    }

    pub(crate) fn stop_inbox(&mut self) {
        self.inbox.poller = None;
        self.inbox.error = None;
    }

    /// Images that arrived in the inbox since the last call; notes read errors on the way.
    pub(crate) fn drain_inbox(&mut self) -> Vec<PathBuf> {
        let mut arrived = Vec::new();
        let inbox = &mut self.inbox;
        if let Some(poller) = &inbox.poller {
            while let Some(ev) = poller.try_recv() {
                match ev {
                    InboxEvent::Arrived(paths) => arrived.extend(paths),
                    InboxEvent::Error(e) => inbox.error = Some(e),
                    InboxEvent::Ok => inbox.error = None,
                }
            }
        }
        arrived
    }
}
