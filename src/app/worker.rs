//! The scoring worker: one thread that owns the backend (and so the device) and answers
//! [`Request`]s with [`Reply`]s over crossbeam channels.
//!
//! Why a single thread: libtorch handles and GPU memory are owned by one place, so two
//! categories never fight for the device and the GUI thread never blocks on it. A panic while
//! handling a request is caught, reported, and the backend is rebuilt from the factory; if the
//! thread dies anyway, the handle notices the closed channel and starts a new one.
use super::colormap::reduce_map;
use super::protocol::{Backend, BackendFactory, JobId, Reply, Request};
use crate::engine::calibrate::BankChange;
use crossbeam_channel::{Receiver, Sender, TryRecvError};
use std::collections::HashSet;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// Called by background threads after they send something, so the GUI wakes up and drains.
pub type Repaint = Arc<dyn Fn() + Send + Sync>;

/// The longest a background message waits for a repaint; the GUI's repaint callback asks for
/// one this far ahead, so results and progress redraw about ten times a second at most.
pub const BACKGROUND_REPAINT: std::time::Duration = std::time::Duration::from_millis(100);

/// Largest side of the anomaly maps sent to the GUI. Maps are display-only there, and thousands
/// of full-resolution maps would cost gigabytes; max-pooling keeps every hot spot visible.
pub const GUI_MAP_SIDE: u32 = 128;

/// Jobs the GUI has cancelled, shared so the worker sees a cancel between two images without
/// waiting for the `Cancel` request to come up in its queue.
type Cancelled = Arc<Mutex<HashSet<JobId>>>;

/// The GUI's end of the worker.
pub struct Worker {
    tx: Sender<Request>,
    rx: Receiver<Reply>,
    cancelled: Cancelled,
    thread: Option<JoinHandle<()>>,
    factory: BackendFactory,
    repaint: Repaint,
    /// Score jobs sent and not yet answered by `JobDone`, so a dead thread's jobs can be closed.
    outstanding: HashSet<JobId>,
    /// Replies made up by the handle itself (after a restart), delivered before the channel's.
    synthetic: Vec<Reply>,
}

impl Worker {
    /// Starts the worker thread. The backend is built on that thread, on first use.
    pub fn spawn(factory: BackendFactory, repaint: Repaint) -> Worker {
        let cancelled = Cancelled::default();
        let (tx, rx, thread) = start_thread(factory.clone(), repaint.clone(), cancelled.clone());
        Worker {
            tx,
            rx,
            cancelled,
            thread: Some(thread),
            factory,
            repaint,
            outstanding: HashSet::new(),
            synthetic: Vec::new(),
        }
    }

    /// Queues a request; a dead worker is restarted first, so the request is never lost.
    pub fn send(&mut self, request: Request) {
        match &request {
            Request::Score { job, .. } => {
                self.outstanding.insert(*job);
            }
            Request::Cancel { job } => {
                if let Ok(mut set) = self.cancelled.lock() {
                    set.insert(*job);
                }
            }
            _ => {}
        }
        if let Err(crossbeam_channel::SendError(request)) = self.tx.send(request) {
            self.restart("the worker thread had stopped");
            let _ = self.tx.send(request);
        }
    }

    /// Flags `job` as cancelled (seen by the worker at the next image) and tells the worker.
    pub fn cancel(&mut self, job: JobId) {
        self.send(Request::Cancel { job });
    }

    /// The next reply, if any. A dead worker is restarted and reported as a `WorkerError`.
    pub fn try_recv(&mut self) -> Option<Reply> {
        if !self.synthetic.is_empty() {
            return Some(self.synthetic.remove(0));
        }
        match self.rx.try_recv() {
            Ok(reply) => {
                if let Reply::JobDone { job, .. } = &reply {
                    self.outstanding.remove(job);
                    if let Ok(mut set) = self.cancelled.lock() {
                        set.remove(job);
                    }
                }
                Some(reply)
            }
            Err(TryRecvError::Empty) => None,
            Err(TryRecvError::Disconnected) => {
                self.restart("the worker thread stopped unexpectedly");
                (!self.synthetic.is_empty()).then(|| self.synthetic.remove(0))
            }
        }
    }

    /// Replaces a dead thread. Jobs it held are closed with an error so the GUI does not wait.
    fn restart(&mut self, why: &str) {
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let (tx, rx, thread) = start_thread(
            self.factory.clone(),
            self.repaint.clone(),
            self.cancelled.clone(),
        );
        self.tx = tx;
        self.rx = rx;
        self.thread = Some(thread);
        let error = format!("{why}; it was restarted");
        self.synthetic.push(Reply::WorkerError {
            error: error.clone(),
        });
        for job in self.outstanding.drain() {
            self.synthetic.push(Reply::JobDone {
                job,
                cancelled: false,
                error: Some(error.clone()),
            });
        }
        (self.repaint)();
    }
}

impl Drop for Worker {
    /// Asks the thread to stop and waits for it, so the device is released before exit.
    fn drop(&mut self) {
        if let Ok(mut set) = self.cancelled.lock() {
            set.extend(self.outstanding.iter().copied());
        }
        let _ = self.tx.send(Request::Shutdown);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn start_thread(
    factory: BackendFactory,
    repaint: Repaint,
    cancelled: Cancelled,
) -> (Sender<Request>, Receiver<Reply>, JoinHandle<()>) {
    let (req_tx, req_rx) = crossbeam_channel::unbounded();
    let (rep_tx, rep_rx) = crossbeam_channel::unbounded();
    let thread = std::thread::Builder::new()
        .name("pc-worker".into())
        .spawn(move || {
            let mut ctx = Loop {
                factory,
                backend: None,
                out: Out {
                    tx: rep_tx,
                    repaint,
                },
                cancelled,
                open: Vec::new(),
            };
            ctx.run(&req_rx);
        });
    let thread = match thread {
        Ok(t) => t,
        // Without a thread nothing can be scored; a thread that exits at once makes the handle
        // report it (closed channel) instead of panicking in the GUI.
        Err(_) => std::thread::spawn(|| {}),
    };
    (req_tx, rep_rx, thread)
}

/// Sends replies and wakes the GUI.
struct Out {
    tx: Sender<Reply>,
    repaint: Repaint,
}

impl Out {
    fn send(&self, reply: Reply) {
        let _ = self.tx.send(reply);
        (self.repaint)();
    }
}

struct Loop {
    factory: BackendFactory,
    backend: Option<Box<dyn Backend>>,
    out: Out,
    cancelled: Cancelled,
    /// Jobs of the run in progress that have no `JobDone` yet, closed with the error if the
    /// run panics.
    open: Vec<JobId>,
}

/// One score request inside a coalesced run: its images are answered in order, so `done` is
/// also the index of the next image to score.
#[derive(Debug)]
pub struct Segment {
    pub job: JobId,
    pub paths: Vec<PathBuf>,
    pub done: usize,
}

/// Takes every score request for `bank` already waiting in `requests` into `run`, so arrivals
/// that queued up while the worker was busy are scored as full batches in one pass. Returns
/// the first request that cannot join (another bank, a load, shutdown), to be handled next.
pub fn coalesce(
    requests: &Receiver<Request>,
    bank: &Path,
    run: &mut Vec<Segment>,
) -> Option<Request> {
    while let Ok(request) = requests.try_recv() {
        match request {
            Request::Score {
                job,
                bank: b,
                paths,
            } if b == bank => run.push(Segment {
                job,
                paths,
                done: 0,
            }),
            // The shared set already carries the flag; the run checks it between images.
            Request::Cancel { .. } => {}
            other => return Some(other),
        }
    }
    None
}

impl Loop {
    fn run(&mut self, requests: &Receiver<Request>) {
        let mut next: Option<Request> = None;
        loop {
            let request = match next.take() {
                Some(r) => r,
                None => match requests.recv() {
                    Ok(r) => r,
                    Err(_) => break,
                },
            };
            let work = match request {
                Request::Shutdown => break,
                Request::Score { job, bank, paths } => {
                    let mut run = vec![Segment {
                        job,
                        paths,
                        done: 0,
                    }];
                    next = coalesce(requests, &bank, &mut run);
                    Work::Score(bank, run)
                }
                Request::LoadBank { bank } => Work::Load(bank),
                Request::ChangeBank { bank, change } => Work::Change(bank, change),
                Request::Teach {
                    bank,
                    version,
                    paths,
                    force,
                } => Work::Teach(bank, version, paths, force),
                // The shared set already carries the flag; a queued job is skipped when it
                // comes up.
                Request::Cancel { .. } => continue,
            };
            let result = catch_unwind(AssertUnwindSafe(|| match work {
                Work::Load(bank) => self.load(bank),
                Work::Change(bank, change) => {
                    let roi = matches!(change, BankChange::Roi(_));
                    match change.apply(&bank) {
                        Ok(()) => self.load(bank),
                        Err(e) => self.out.send(Reply::ChangeFailed {
                            bank,
                            roi,
                            error: e.to_string(),
                        }),
                    }
                }
                Work::Teach(bank, version, paths, force) => {
                    self.teach(bank, version, &paths, force)
                }
                Work::Score(bank, run) => self.score(&bank, run),
            }));
            if let Err(payload) = result {
                // The backend may hold a half-updated device state: drop it, build a new one.
                self.backend = None;
                let error = format!("worker crashed: {}", panic_message(&*payload));
                // The crash report first, so the GUI can tell the job's error is the same one.
                self.out.send(Reply::WorkerError {
                    error: format!("{error}; it was restarted"),
                });
                for job in std::mem::take(&mut self.open) {
                    self.out.send(Reply::JobDone {
                        job,
                        cancelled: false,
                        error: Some(error.clone()),
                    });
                }
            }
        }
    }

    /// The backend, built on first use (or after a crash).
    fn backend(&mut self) -> Result<&mut Box<dyn Backend>, String> {
        if self.backend.is_none() {
            let backend =
                (self.factory)().map_err(|e| format!("the scoring backend did not start: {e}"))?;
            self.backend = Some(backend);
        }
        self.backend
            .as_mut()
            .ok_or_else(|| "the scoring backend did not start".to_string())
    }

    fn load(&mut self, bank: PathBuf) {
        self.out.send(Reply::BankLoading { bank: bank.clone() });
        let loaded = self
            .backend()
            .and_then(|b| b.load(&bank).map(|meta| (meta, b.device_name())));
        match loaded {
            Ok((meta, device)) => self.out.send(Reply::BankLoaded {
                bank,
                meta: Box::new(meta),
                device,
            }),
            Err(error) => self.out.send(Reply::BankFailed { bank, error }),
        }
    }

    /// Scores a run of jobs as one stream of images, so batches stay full across job
    /// boundaries; each job gets its `JobDone` as soon as its last image is answered. A
    /// cancelled job stops the stream, leaves the run, and the rest goes on from where it was.
    fn score(&mut self, bank: &Path, mut run: Vec<Segment>) {
        self.open = run.iter().map(|s| s.job).collect();
        loop {
            let cancelled = self.cancelled.lock().map(|s| s.clone()).unwrap_or_default();
            for s in &run {
                if cancelled.contains(&s.job) {
                    self.close(s.job, true, None);
                } else if s.done >= s.paths.len() {
                    // A job without images has nothing to wait for.
                    self.close(s.job, false, None);
                }
            }
            run.retain(|s| !cancelled.contains(&s.job) && s.done < s.paths.len());
            if run.is_empty() {
                return;
            }
            let mut stopped = false;
            let result = self
                .backend()
                .map(|_| ())
                .and_then(|()| match &mut self.backend {
                    Some(b) => stream(b, bank, &mut run, &self.out, &self.cancelled, &mut stopped),
                    None => Err("the scoring backend did not start".into()),
                });
            // Jobs answered in full are closed by the stream; the rest depends on why it ended.
            run.retain(|s| s.done < s.paths.len());
            self.open.retain(|j| run.iter().any(|s| s.job == *j));
            match result {
                Err(error) => {
                    for s in &run {
                        self.close(s.job, false, Some(error.clone()));
                    }
                    return;
                }
                Ok(()) if !stopped => {
                    for s in &run {
                        let missing = s.paths.len() - s.done;
                        let error = format!("the scorer returned no result for {missing} images");
                        self.close(s.job, false, Some(error));
                    }
                    return;
                }
                // A job was cancelled mid-stream: drop it at the top, go on with the others.
                Ok(()) => {}
            }
        }
    }

    /// Runs the update, records the images as good in the bank's verdicts file, reports what
    /// changed and reloads the bank (its new version).
    fn teach(&mut self, bank: PathBuf, version: u32, paths: &[PathBuf], force: bool) {
        let entry = self
            .backend()
            .and_then(|b| b.update(&bank, version, paths, force));
        match entry {
            Ok(entry) => {
                let warning = record_good(&bank, &entry).err();
                self.out.send(Reply::Taught {
                    bank: bank.clone(),
                    entry: Box::new(entry),
                    warning,
                });
                self.load(bank);
            }
            Err(error) => self.out.send(Reply::TeachFailed { bank, error }),
        }
    }

    fn close(&mut self, job: JobId, cancelled: bool, error: Option<String>) {
        self.open.retain(|j| *j != job);
        self.out.send(Reply::JobDone {
            job,
            cancelled,
            error,
        });
    }
}

/// Remembers the images an update added as good parts in the bank's verdicts file, with the
/// sha256 and score the update recorded.
fn record_good(bank: &Path, entry: &crate::bank::HistoryEntry) -> Result<(), String> {
    use crate::bank::{Verdict, VerdictEntry, Verdicts};
    let mut verdicts = Verdicts::load(bank).map_err(|e| e.to_string())?;
    for image in &entry.images {
        verdicts.record(VerdictEntry {
            path: image.path.clone(),
            sha256: image.sha256.clone(),
            verdict: Verdict::Good,
            score: image.score,
            time: entry.time.clone(),
            operator: entry.operator.clone(),
        });
    }
    verdicts
        .save(bank)
        .map_err(|e| format!("the bank was taught, but the verdicts were not recorded: {e}"))
}

enum Work {
    Load(PathBuf),
    Change(PathBuf, BankChange),
    Teach(PathBuf, u32, Vec<PathBuf>, bool),
    Score(PathBuf, Vec<Segment>),
}

/// One backend pass over the unanswered images of `run`, in order. Sends each result, the
/// job's progress, and `JobDone` when a job's last image is answered; stops (setting
/// `stopped`) as soon as any job of the run is cancelled.
fn stream(
    backend: &mut Box<dyn Backend>,
    bank: &Path,
    run: &mut [Segment],
    out: &Out,
    cancelled: &Cancelled,
    stopped: &mut bool,
) -> Result<(), String> {
    let mut owners = Vec::new();
    let mut paths = Vec::new();
    for (k, s) in run.iter().enumerate() {
        for (i, p) in s.paths.iter().enumerate().skip(s.done) {
            owners.push((k, i));
            paths.push(p.clone());
        }
    }
    let jobs: Vec<JobId> = run.iter().map(|s| s.job).collect();
    backend.inspect(bank, &paths, &mut |at, result| {
        let Some(&(k, index)) = owners.get(at) else {
            return false;
        };
        let s = &mut run[k];
        let job = s.job;
        match result {
            Ok(mut inspection) => {
                inspection.map = reduce_map(&inspection.map, GUI_MAP_SIDE);
                out.send(Reply::Scored {
                    job,
                    index,
                    inspection: Box::new(inspection),
                });
            }
            Err(error) => out.send(Reply::ImageFailed {
                job,
                index,
                path: s.paths.get(index).cloned().unwrap_or_default(),
                error,
            }),
        }
        s.done = index + 1;
        let total = s.paths.len();
        out.send(Reply::Progress {
            job,
            done: s.done,
            total,
        });
        if s.done == total {
            out.send(Reply::JobDone {
                job,
                cancelled: false,
                error: None,
            });
        }
        let any_cancelled = cancelled
            .lock()
            .map(|set| jobs.iter().any(|j| set.contains(j)))
            .unwrap_or(false);
        *stopped = any_cancelled;
        !any_cancelled
    })
}

/// The text of a panic payload (`panic!("...")` gives `&str` or `String`).
pub fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "unknown panic".to_string()
    }
}
