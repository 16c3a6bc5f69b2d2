//! The settings as the workstation holds them, saved by a writer thread.
//!
//! Why a thread: a save is an atomic write with fsync, tens of milliseconds on a slow disk or
//! network home folder, and the threshold slider changes the settings every frame. The UI
//! thread only hands over a snapshot (a small clone); the writer keeps the latest one and
//! writes at most once per interval, so a drag of hundreds of frames costs a couple of writes.
use super::settings::{Settings, SettingsError};
use super::worker::Repaint;
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use std::path::PathBuf;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// At most one write per interval while the settings keep changing.
pub const SAVE_INTERVAL: Duration = Duration::from_secs(1);

/// Where snapshots end up: the settings file in the app, a recorder in tests.
pub type Sink = Box<dyn FnMut(&Settings) -> Result<(), SettingsError> + Send>;

enum Msg {
    Save(Box<Settings>),
    /// Write what is pending now, then answer.
    Flush(Sender<()>),
}

/// The current settings plus the channel to their writer.
pub struct SettingsStore {
    current: Settings,
    /// Changed since the last snapshot was handed to the writer.
    dirty: bool,
    /// `None` where there is no settings file (no platform config folder): nothing is saved.
    tx: Option<Sender<Msg>>,
    errors: Receiver<SettingsError>,
    thread: Option<JoinHandle<()>>,
}

impl SettingsStore {
    /// A store for `settings` (as read from `path`) that saves them back to `path`; without
    /// a path (no platform config folder) they live for this session only.
    pub fn open(settings: Settings, path: Option<PathBuf>, repaint: Repaint) -> SettingsStore {
        match path {
            Some(path) => {
                let sink: Sink = Box::new(move |s: &Settings| s.save(&path));
                SettingsStore::with_sink(settings, SAVE_INTERVAL, sink, repaint)
            }
            None => SettingsStore {
                current: settings,
                dirty: false,
                tx: None,
                errors: crossbeam_channel::never(),
                thread: None,
            },
        }
    }

    /// A store whose snapshots go to `sink`, at most once per `interval`.
    pub fn with_sink(
        settings: Settings,
        interval: Duration,
        sink: Sink,
        repaint: Repaint,
    ) -> SettingsStore {
        let (tx, rx) = crossbeam_channel::unbounded();
        let (err_tx, errors) = crossbeam_channel::unbounded();
        let thread = std::thread::Builder::new()
            .name("patchcore-settings".into())
            .spawn(move || write_loop(&rx, interval, sink, &err_tx, &repaint))
            .ok();
        SettingsStore {
            current: settings,
            dirty: false,
            // Without a thread the settings live for this session only (as without a file).
            tx: thread.is_some().then_some(tx),
            errors,
            thread,
        }
    }

    pub fn get(&self) -> &Settings {
        &self.current
    }

    /// Changes the settings; the change is handed to the writer at the next [`Self::commit`].
    pub fn update(&mut self, f: impl FnOnce(&mut Settings)) {
        f(&mut self.current);
        self.dirty = true;
    }

    /// Hands the latest settings to the writer if they changed (once per frame).
    pub fn commit(&mut self) {
        if !std::mem::take(&mut self.dirty) {
            return;
        }
        if let Some(tx) = &self.tx {
            let _ = tx.send(Msg::Save(Box::new(self.current.clone())));
        }
    }

    /// Commits and waits until the writer has written everything (window closing).
    pub fn flush(&mut self) {
        self.commit();
        let Some(tx) = &self.tx else { return };
        let (ack_tx, ack_rx) = crossbeam_channel::bounded(1);
        if tx.send(Msg::Flush(ack_tx)).is_ok() {
            let _ = ack_rx.recv();
        }
    }

    /// A write that failed since the last call, to show the operator.
    pub fn take_error(&self) -> Option<SettingsError> {
        self.errors.try_recv().ok()
    }
}

impl Drop for SettingsStore {
    /// The writer writes what is pending when its channel closes; wait for it.
    fn drop(&mut self) {
        self.commit();
        self.tx = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Keeps the latest snapshot and writes it one interval after the previous write (at once if
/// that is past). A flush or the closed channel writes it immediately.
fn write_loop(
    rx: &Receiver<Msg>,
    interval: Duration,
    mut sink: Sink,
    errors: &Sender<SettingsError>,
    repaint: &Repaint,
) {
    let mut pending: Option<(Box<Settings>, Instant)> = None;
    // Counted from the start, as the settings were just read.
    let mut last_write = Instant::now();
    loop {
        let msg = match &pending {
            Some((_, due)) => rx.recv_deadline(*due),
            None => rx.recv().map_err(|_| RecvTimeoutError::Disconnected),
        };
        let (ack, closing) = match msg {
            Ok(Msg::Save(s)) => {
                let due = match &pending {
                    Some((_, due)) => *due,
                    None => last_write + interval,
                };
                pending = Some((s, due));
                continue;
            }
            Ok(Msg::Flush(ack)) => (Some(ack), false),
            Err(RecvTimeoutError::Timeout) => (None, false),
            Err(RecvTimeoutError::Disconnected) => (None, true),
        };
        if let Some((s, _)) = pending.take() {
            last_write = Instant::now();
            if let Err(e) = sink(&s) {
                let _ = errors.send(e);
                repaint();
            }
        }
        if let Some(ack) = ack {
            let _ = ack.send(());
        }
        if closing {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    /// A store writing into a shared list, and that list.
    fn recording(interval: Duration) -> (SettingsStore, Arc<Mutex<Vec<f32>>>) {
        let written = Arc::new(Mutex::new(Vec::new()));
        let w = written.clone();
        let sink: Sink = Box::new(move |s: &Settings| {
            w.lock().expect("lock").push(s.overlay_opacity);
            Ok(())
        });
        let store = SettingsStore::with_sink(Settings::default(), interval, sink, Arc::new(|| {}));
        (store, written)
    }

    #[test]
    fn rapid_updates_are_coalesced_and_flush_writes_the_last() {
        let interval = Duration::from_millis(300);
        let start = Instant::now();
        let (mut store, written) = recording(interval);
        for i in 1..=1000 {
            store.update(|s| s.overlay_opacity = i as f32);
            store.commit();
        }
        store.flush();
        let elapsed = start.elapsed();
        let w = written.lock().expect("lock").clone();
        // At most one write per interval that passed, plus the flush's.
        let bound = 1 + (elapsed.as_millis() / interval.as_millis()) as usize;
        assert!(w.len() <= bound, "{} writes in {elapsed:?}: {w:?}", w.len());
        assert_eq!(w.last(), Some(&1000.0), "the last value wins");
        assert_eq!(store.get().overlay_opacity, 1000.0);
        // Nothing changed since: closing writes nothing more.
        drop(store);
        assert_eq!(written.lock().expect("lock").len(), w.len());
    }

    #[test]
    fn a_pending_change_is_written_when_due_and_when_dropped() {
        let (mut store, written) = recording(Duration::from_millis(50));
        store.update(|s| s.overlay_opacity = 0.25);
        store.commit();
        let deadline = Instant::now() + Duration::from_secs(10);
        while written.lock().expect("lock").is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(written.lock().expect("lock").as_slice(), &[0.25]);
        store.update(|s| s.overlay_opacity = 0.5);
        drop(store);
        assert_eq!(written.lock().expect("lock").as_slice(), &[0.25, 0.5]);
    }

    #[test]
    fn write_errors_reach_the_store() {
        let sink: Sink = Box::new(|_: &Settings| {
            Err(SettingsError::Write {
                path: PathBuf::from("/nowhere/gui.json"),
                source: std::io::Error::other("read-only"),
            })
        });
        let mut store =
            SettingsStore::with_sink(Settings::default(), SAVE_INTERVAL, sink, Arc::new(|| {}));
        store.update(|s| s.overlay_opacity = 0.1);
        store.flush();
        let e = store.take_error().expect("the error");
        assert!(e.to_string().contains("/nowhere/gui.json"), "{e}");
    }
}
