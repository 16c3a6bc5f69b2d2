//! File dialogs behind a trait: native (rfd) in the app, scripted in tests.
//!
//! Native dialogs are started on the GUI thread (what rfd recommends for portability) and
//! awaited on a helper thread, so the window keeps repainting while a dialog is open.
use super::worker::Repaint;
use crossbeam_channel::Receiver;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};

/// What a file dialog answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DialogOutcome {
    Chosen(PathBuf),
    Cancelled,
    /// No dialog could be shown (e.g. Linux without xdg-desktop-portal or zenity): the
    /// workstation then asks for the path in a text field instead.
    Unavailable,
}

/// The answer to a dialog arrives on the channel once.
pub type DialogAnswer = Receiver<DialogOutcome>;

/// rfd answers "no file" both when the operator cancels and when no dialog backend exists.
/// Nobody cancels a dialog this fast, so a quicker "no file" means none was shown.
const UNAVAILABLE_WITHIN: std::time::Duration = std::time::Duration::from_millis(300);

pub trait Dialogs {
    /// Asks for a folder of images to score.
    fn pick_folder(&self, start: Option<&Path>) -> DialogAnswer;
    /// Asks where to save a CSV file, suggesting `file_name`.
    fn save_csv(&self, start: Option<&Path>, file_name: &str) -> DialogAnswer;
}

/// The platform's dialogs via rfd (xdg-desktop-portal or zenity on Linux).
pub struct NativeDialogs {
    pub repaint: Repaint,
}

impl NativeDialogs {
    fn spawn<F>(&self, fut: F) -> DialogAnswer
    where
        F: Future<Output = Option<rfd::FileHandle>> + Send + 'static,
    {
        let (tx, rx) = crossbeam_channel::bounded(1);
        let repaint = self.repaint.clone();
        let asked = std::time::Instant::now();
        let spawned = std::thread::Builder::new()
            .name("patchcore-dialog".into())
            .spawn(move || {
                let answer = match block_on(fut) {
                    Some(h) => DialogOutcome::Chosen(h.path().to_path_buf()),
                    None if asked.elapsed() < UNAVAILABLE_WITHIN => DialogOutcome::Unavailable,
                    None => DialogOutcome::Cancelled,
                };
                let _ = tx.send(answer);
                repaint();
            });
        if spawned.is_err() {
            // The sender went with the closure: the GUI sees a closed channel and gives up.
        }
        rx
    }
}

impl Dialogs for NativeDialogs {
    fn pick_folder(&self, start: Option<&Path>) -> DialogAnswer {
        let mut d = rfd::AsyncFileDialog::new().set_title("Folder of images to inspect");
        if let Some(s) = start.filter(|s| s.is_dir()) {
            d = d.set_directory(s);
        }
        self.spawn(d.pick_folder())
    }

    fn save_csv(&self, start: Option<&Path>, file_name: &str) -> DialogAnswer {
        let mut d = rfd::AsyncFileDialog::new()
            .set_title("Export rejects")
            .add_filter("CSV", &["csv"])
            .set_file_name(file_name);
        if let Some(s) = start.filter(|s| s.is_dir()) {
            d = d.set_directory(s);
        }
        self.spawn(d.save_file())
    }
}

/// Runs a future to completion on the current thread (enough for one dialog).
fn block_on<F: Future>(fut: F) -> F::Output {
    struct Unpark(std::thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut fut = std::pin::pin!(fut);
    loop {
        match fut.as_mut().poll(&mut cx) {
            Poll::Ready(v) => return v,
            Poll::Pending => std::thread::park(),
        }
    }
}

/// Dialogs that answer at once with preset paths (tests, scripted demos). `None` = cancelled.
#[derive(Clone, Debug, Default)]
pub struct ScriptedDialogs {
    pub folder: Option<PathBuf>,
    pub save: Option<PathBuf>,
}

fn answer_now(outcome: DialogOutcome) -> DialogAnswer {
    let (tx, rx) = crossbeam_channel::bounded(1);
    let _ = tx.send(outcome);
    rx
}

fn chosen_or_cancelled(path: &Option<PathBuf>) -> DialogOutcome {
    path.clone()
        .map_or(DialogOutcome::Cancelled, DialogOutcome::Chosen)
}

impl Dialogs for ScriptedDialogs {
    fn pick_folder(&self, _start: Option<&Path>) -> DialogAnswer {
        answer_now(chosen_or_cancelled(&self.folder))
    }

    fn save_csv(&self, _start: Option<&Path>, _file_name: &str) -> DialogAnswer {
        answer_now(chosen_or_cancelled(&self.save))
    }
}

/// A system without file dialogs: every request answers [`DialogOutcome::Unavailable`].
#[derive(Clone, Copy, Debug, Default)]
pub struct NoDialogs;

impl Dialogs for NoDialogs {
    fn pick_folder(&self, _start: Option<&Path>) -> DialogAnswer {
        answer_now(DialogOutcome::Unavailable)
    }

    fn save_csv(&self, _start: Option<&Path>, _file_name: &str) -> DialogAnswer {
        answer_now(DialogOutcome::Unavailable)
    }
}
