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

/// The answer to a dialog arrives on the channel: `Some(path)`, or `None` when cancelled.
pub type DialogAnswer = Receiver<Option<PathBuf>>;

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
        let spawned = std::thread::Builder::new()
            .name("patchcore-dialog".into())
            .spawn(move || {
                let answer = block_on(fut).map(|h| h.path().to_path_buf());
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

impl Dialogs for ScriptedDialogs {
    fn pick_folder(&self, _start: Option<&Path>) -> DialogAnswer {
        let (tx, rx) = crossbeam_channel::bounded(1);
        let _ = tx.send(self.folder.clone());
        rx
    }

    fn save_csv(&self, _start: Option<&Path>, _file_name: &str) -> DialogAnswer {
        let (tx, rx) = crossbeam_channel::bounded(1);
        let _ = tx.send(self.save.clone());
        rx
    }
}
