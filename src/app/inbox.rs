//! Watching an inbox folder for new images (a camera or line PC dropping files), by polling:
//! portable, and robust on network shares where change notifications are unreliable.
//!
//! Files present when watching starts are taken as already handled. A new file is reported
//! only once its size and modification time are the same on two polls in a row, so an image
//! still being written is not scored half-written.
use super::worker::Repaint;
use crate::data::is_image_path;
use crossbeam_channel::Receiver;
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

#[derive(Clone, Debug)]
pub enum InboxEvent {
    /// New, complete images, oldest first.
    Arrived(Vec<PathBuf>),
    /// The folder could not be read (shown next to the inbox toggle; polling goes on).
    Error(String),
    /// The folder is readable again after an error.
    Ok,
}

pub struct Inbox {
    pub dir: PathBuf,
    stop: Arc<AtomicBool>,
    rx: Receiver<InboxEvent>,
}

type Stamp = (u64, Option<SystemTime>);

fn listing(dir: &Path) -> std::io::Result<HashMap<PathBuf, Stamp>> {
    let mut out = HashMap::new();
    for entry in std::fs::read_dir(dir)?.flatten() {
        let p = entry.path();
        if !is_image_path(&p) {
            continue;
        }
        if let Ok(md) = entry.metadata() {
            if md.is_file() {
                out.insert(p, (md.len(), md.modified().ok()));
            }
        }
    }
    Ok(out)
}

impl Inbox {
    pub fn watch(dir: PathBuf, interval: Duration, repaint: Repaint) -> Inbox {
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, rx) = crossbeam_channel::unbounded();
        let thread_stop = stop.clone();
        let thread_dir = dir.clone();
        let _ = std::thread::Builder::new()
            .name("patchcore-inbox".into())
            .spawn(move || {
                let send = |e: InboxEvent| {
                    let ok = tx.send(e).is_ok();
                    repaint();
                    ok
                };
                let mut seen: HashSet<PathBuf> = HashSet::new();
                let mut candidates: HashMap<PathBuf, Stamp> = HashMap::new();
                let mut failing = false;
                let mut first = true;
                while !thread_stop.load(Ordering::Relaxed) {
                    match listing(&thread_dir) {
                        Ok(now) => {
                            if failing && !send(InboxEvent::Ok) {
                                return;
                            }
                            failing = false;
                            if first {
                                seen.extend(now.keys().cloned());
                                first = false;
                            }
                            let mut ready = Vec::new();
                            for (p, stamp) in &now {
                                if seen.contains(p) {
                                    continue;
                                }
                                if candidates.get(p) == Some(stamp) {
                                    ready.push((stamp.1, p.clone()));
                                } else {
                                    candidates.insert(p.clone(), *stamp);
                                }
                            }
                            // Forget files that vanished before they were complete.
                            candidates.retain(|p, _| now.contains_key(p));
                            if !ready.is_empty() {
                                ready.sort();
                                let paths: Vec<PathBuf> =
                                    ready.into_iter().map(|(_, p)| p).collect();
                                for p in &paths {
                                    candidates.remove(p);
                                    seen.insert(p.clone());
                                }
                                if !send(InboxEvent::Arrived(paths)) {
                                    return;
                                }
                            }
                        }
                        Err(e) => {
                            if !failing {
                                failing = true;
                                let msg =
                                    format!("cannot read inbox {}: {e}", thread_dir.display());
                                if !send(InboxEvent::Error(msg)) {
                                    return;
                                }
                            }
                        }
                    }
                    // Sleep in small steps so turning the inbox off is quick.
                    let mut slept = Duration::ZERO;
                    while slept < interval && !thread_stop.load(Ordering::Relaxed) {
                        let step = Duration::from_millis(50).min(interval - slept);
                        std::thread::sleep(step);
                        slept += step;
                    }
                }
            });
        Inbox { dir, stop, rx }
    }

    pub fn try_recv(&self) -> Option<InboxEvent> {
        self.rx.try_recv().ok()
    }
}

impl Drop for Inbox {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}
