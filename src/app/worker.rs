//! The scoring worker: one thread that owns the backend (and so the device) and answers
//! [`Request`]s with [`Reply`]s over crossbeam channels.
//!
//! Why a single thread: libtorch handles and GPU memory are owned by one place, so two
//! categories never fight for the device and the GUI thread never blocks on it. A panic while
//! handling a request is caught, reported, and the backend is rebuilt from the factory; if the
//! thread dies anyway, the handle notices the closed channel and starts a new one.
use super::colormap::reduce_map;
use super::protocol::{Backend, BackendFactory, JobId, Reply, Request};
use crossbeam_channel::{Receiver, Sender, TryRecvError};
use std::collections::HashSet;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// Called by background threads after they send something, so the GUI wakes up and drains.
pub type Repaint = Arc<dyn Fn() + Send + Sync>;

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
        .name("patchcore-worker".into())
        .spawn(move || {
            let mut ctx = Loop {
                factory,
                backend: None,
                out: Out {
                    tx: rep_tx,
                    repaint,
                },
                cancelled,
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
}

impl Loop {
    fn run(&mut self, requests: &Receiver<Request>) {
        while let Ok(request) = requests.recv() {
            if matches!(request, Request::Shutdown) {
                break;
            }
            let job = match &request {
                Request::Score { job, .. } => Some(*job),
                _ => None,
            };
            let result = catch_unwind(AssertUnwindSafe(|| self.handle(request)));
            if let Err(payload) = result {
                // The backend may hold a half-updated device state: drop it, build a new one.
                self.backend = None;
                let error = format!("worker crashed: {}", panic_message(&*payload));
                // The crash report first, so the GUI can tell the job's error is the same one.
                self.out.send(Reply::WorkerError {
                    error: format!("{error}; it was restarted"),
                });
                if let Some(job) = job {
                    self.out.send(Reply::JobDone {
                        job,
                        cancelled: false,
                        error: Some(error),
                    });
                }
            }
        }
    }

    fn is_cancelled(&self, job: JobId) -> bool {
        self.cancelled
            .lock()
            .map(|s| s.contains(&job))
            .unwrap_or(false)
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

    fn handle(&mut self, request: Request) {
        match request {
            Request::LoadBank { bank } => self.load(bank),
            Request::SetRoi { bank, roi } => match crate::engine::calibrate::set_roi(&bank, roi) {
                Ok(_) => self.load(bank),
                Err(e) => self.out.send(Reply::RoiFailed {
                    bank,
                    error: e.to_string(),
                }),
            },
            Request::Score { job, bank, paths } => self.score(job, &bank, &paths),
            // The shared set already carries the flag; a queued job is skipped when it comes up.
            Request::Cancel { .. } | Request::Shutdown => {}
        }
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

    fn score(&mut self, job: JobId, bank: &Path, paths: &[PathBuf]) {
        if self.is_cancelled(job) {
            self.out.send(Reply::JobDone {
                job,
                cancelled: true,
                error: None,
            });
            return;
        }
        let total = paths.len();
        let mut done = 0;
        let mut stopped = false;
        let cancelled = self.cancelled.clone();
        let out = &self.out;
        let backend = match self.backend.as_mut() {
            Some(b) => Ok(b),
            None => match (self.factory)() {
                Ok(b) => Ok(self.backend.insert(b)),
                Err(e) => Err(format!("the scoring backend did not start: {e}")),
            },
        };
        let result = backend.and_then(|backend| {
            backend.inspect(bank, paths, &mut |index, result| {
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
                        path: paths.get(index).cloned().unwrap_or_default(),
                        error,
                    }),
                }
                done += 1;
                out.send(Reply::Progress { job, done, total });
                let go_on = !cancelled.lock().map(|s| s.contains(&job)).unwrap_or(false);
                stopped = !go_on;
                go_on
            })
        });
        self.out.send(Reply::JobDone {
            job,
            cancelled: stopped,
            error: result.err(),
        });
    }
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
