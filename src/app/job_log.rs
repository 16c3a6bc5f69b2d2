//! The production record of scoring: each finished job — a folder, or a burst of inbox
//! arrivals — becomes one log line (images, seconds, images per second, rejected, failed), and
//! the status bar shows the current rate. Kept apart from the worker so the counts use the
//! rules the operator sees.
use super::protocol::JobId;
use std::collections::{HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Where scoring work came from. Inbox jobs that start while an inbox burst is still being
/// scored join that burst, so a line PC dropping images in bursts gets one line per burst.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JobKind {
    Folder,
    Inbox,
}

impl JobKind {
    pub fn name(self) -> &'static str {
        match self {
            JobKind::Folder => "folder",
            JobKind::Inbox => "inbox",
        }
    }
}

/// How a logged job ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JobEnd {
    Done,
    Cancelled,
    Error,
}

/// One finished job, as logged.
#[derive(Clone, Debug, PartialEq)]
pub struct JobSummary {
    pub kind: JobKind,
    /// Images with a result or a failure.
    pub images: usize,
    pub seconds: f64,
    pub rejected: usize,
    pub failed: usize,
    pub end: JobEnd,
    /// File name of the bank that scored them.
    pub bank: String,
}

impl JobSummary {
    pub fn images_per_second(&self) -> f64 {
        self.images as f64 / self.seconds.max(1e-9)
    }

    /// The log line (documented in the README): `key=value` fields after an RFC 3339 time,
    /// the bank's file name last so it may hold spaces.
    pub fn line(&self, timestamp: &str) -> String {
        let end = match self.end {
            JobEnd::Done => "done",
            JobEnd::Cancelled => "cancelled",
            JobEnd::Error => "error",
        };
        format!(
            "{timestamp} patchcore-job kind={} images={} seconds={:.2} images_per_s={:.2} ms_per_image={:.1} rejected={} failed={} end={end} bank={}",
            self.kind.name(),
            self.images,
            self.seconds,
            self.images_per_second(),
            self.seconds * 1000.0 / self.images.max(1) as f64,
            self.rejected,
            self.failed,
            self.bank,
        )
    }
}

struct Burst {
    kind: JobKind,
    bank: String,
    live: HashSet<JobId>,
    started: Instant,
    images: usize,
    rejected: usize,
    failed: usize,
    end: JobEnd,
}

/// How far back the status bar's rate looks.
const RATE_WINDOW: Duration = Duration::from_secs(5);

/// Tracks live bursts and recent results.
#[derive(Default)]
pub struct JobMeter {
    bursts: Vec<Burst>,
    /// When recent results arrived (within `RATE_WINDOW`), for the current rate.
    recent: VecDeque<Instant>,
    /// The last finished job, shown after scoring stops.
    pub last: Option<JobSummary>,
}

impl JobMeter {
    /// `job` starts now: it joins the live burst of its kind and bank, or starts one.
    pub fn started(&mut self, job: JobId, kind: JobKind, bank: &str, now: Instant) {
        let joins = self
            .bursts
            .iter_mut()
            .find(|b| b.kind == kind && b.bank == bank && kind == JobKind::Inbox);
        match joins {
            Some(b) => {
                b.live.insert(job);
            }
            None => self.bursts.push(Burst {
                kind,
                bank: bank.to_string(),
                live: HashSet::from([job]),
                started: now,
                images: 0,
                rejected: 0,
                failed: 0,
                end: JobEnd::Done,
            }),
        }
    }

    /// An image of `job` got a result (`Some(rejected)`) or failed (`None`).
    pub fn result(&mut self, job: JobId, rejected: Option<bool>, now: Instant) {
        let Some(b) = self.bursts.iter_mut().find(|b| b.live.contains(&job)) else {
            return;
        };
        b.images += 1;
        match rejected {
            Some(r) => b.rejected += usize::from(r),
            None => b.failed += 1,
        }
        self.recent.push_back(now);
        self.forget_before(now);
    }

    /// `job` ended; returns the summary when it was the last live job of its burst.
    pub fn finished(
        &mut self,
        job: JobId,
        cancelled: bool,
        error: bool,
        now: Instant,
    ) -> Option<JobSummary> {
        let at = self.bursts.iter().position(|b| b.live.contains(&job))?;
        let b = &mut self.bursts[at];
        b.live.remove(&job);
        if error {
            b.end = JobEnd::Error;
        } else if cancelled && b.end == JobEnd::Done {
            b.end = JobEnd::Cancelled;
        }
        if !b.live.is_empty() {
            return None;
        }
        let b = self.bursts.remove(at);
        if b.images == 0 && b.end == JobEnd::Cancelled {
            // Replaced before it started (another category or folder chosen): nothing to log.
            return None;
        }
        let summary = JobSummary {
            kind: b.kind,
            images: b.images,
            seconds: (now - b.started).as_secs_f64(),
            rejected: b.rejected,
            failed: b.failed,
            end: b.end,
            bank: b.bank,
        };
        self.last = Some(summary.clone());
        Some(summary)
    }

    /// Images per second over the last few seconds while something is scoring.
    pub fn rate(&self, now: Instant) -> Option<f64> {
        let live = self.bursts.iter().map(|b| b.started).min()?;
        let first = *self.recent.front()?;
        let since = live.max(now.checked_sub(RATE_WINDOW).unwrap_or(first));
        let counted = self.recent.iter().filter(|t| **t >= since).count();
        let span = (now - since).as_secs_f64();
        (span > 0.0).then(|| counted as f64 / span)
    }

    fn forget_before(&mut self, now: Instant) {
        while let Some(t) = self.recent.front() {
            if now.duration_since(*t) > RATE_WINDOW {
                self.recent.pop_front();
            } else {
                break;
            }
        }
    }
}

/// The job log beside the settings file (`jobs.log` next to `gui.json`).
pub fn log_path(settings: &Path) -> PathBuf {
    settings.with_file_name("jobs.log")
}

/// Appends one line with a single write, so lines of two app instances never interleave.
pub fn append_line(path: &Path, line: &str) -> Result<(), String> {
    use std::io::Write;
    let fail = |e: std::io::Error| format!("cannot write the job log {}: {e}", path.display());
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(fail)?;
    }
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(fail)?;
    file.write_all(format!("{line}\n").as_bytes()).map_err(fail)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inbox_jobs_that_overlap_are_one_burst_with_one_summary() {
        let t0 = Instant::now();
        let at = |ms| t0 + Duration::from_millis(ms);
        let mut m = JobMeter::default();
        m.started(1, JobKind::Inbox, "b.safetensors", t0);
        m.result(1, Some(true), at(100));
        m.started(2, JobKind::Inbox, "b.safetensors", at(150));
        assert_eq!(
            m.finished(1, false, false, at(200)),
            None,
            "job 2 still runs"
        );
        m.result(2, Some(false), at(300));
        m.result(2, None, at(400));
        let s = m.finished(2, false, false, at(2000)).expect("burst done");
        assert_eq!((s.images, s.rejected, s.failed), (3, 1, 1));
        assert_eq!(s.end, JobEnd::Done);
        assert!((s.seconds - 2.0).abs() < 1e-6);
        let line = s.line("2026-01-01T00:00:00Z");
        assert_eq!(
            line,
            "2026-01-01T00:00:00Z patchcore-job kind=inbox images=3 seconds=2.00 images_per_s=1.50 ms_per_image=666.7 rejected=1 failed=1 end=done bank=b.safetensors"
        );
        assert_eq!(m.last.as_ref(), Some(&s));
    }

    #[test]
    fn folder_jobs_stand_alone_and_cancel_is_recorded() {
        let t0 = Instant::now();
        let mut m = JobMeter::default();
        m.started(1, JobKind::Folder, "b", t0);
        m.started(2, JobKind::Folder, "b", t0);
        m.started(4, JobKind::Folder, "b", t0);
        m.result(1, Some(false), t0);
        let s = m.finished(1, true, false, t0 + Duration::from_secs(1));
        assert_eq!(s.map(|s| (s.images, s.end)), Some((1, JobEnd::Cancelled)));
        assert_eq!(
            m.finished(4, true, false, t0),
            None,
            "cancelled before any image"
        );
        assert!(m.finished(2, false, false, t0).is_some(), "its own burst");
        assert!(m.finished(3, false, false, t0).is_none(), "unknown job");
    }

    #[test]
    fn lines_are_appended_and_an_unwritable_log_names_the_file() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let log = log_path(&tmp.path().join("cfg").join("gui.json"));
        append_line(&log, "one").expect("first");
        append_line(&log, "two").expect("second");
        assert_eq!(std::fs::read_to_string(&log).expect("read"), "one\ntwo\n");
        // A file where the folder should be: the error says which log could not be written.
        let blocked = tmp.path().join("cfg").join("jobs.log").join("jobs.log");
        let err = append_line(&blocked, "x").expect_err("not a folder");
        assert!(err.contains(&blocked.display().to_string()), "{err}");
    }

    #[test]
    fn rate_counts_recent_results_while_scoring() {
        let t0 = Instant::now();
        let mut m = JobMeter::default();
        assert_eq!(m.rate(t0), None);
        m.started(1, JobKind::Folder, "b", t0);
        for i in 1..=20 {
            m.result(1, Some(false), t0 + Duration::from_millis(100 * i));
        }
        let r = m.rate(t0 + Duration::from_secs(2)).expect("rate");
        assert!((r - 10.0).abs() < 1e-6, "{r}");
        // 20 s later only the window counts: nothing arrived in it.
        let r = m.rate(t0 + Duration::from_secs(22)).expect("rate");
        assert!(r < 1e-9, "{r}");
        m.finished(1, false, false, t0);
        assert_eq!(m.rate(t0), None, "nothing live");
    }
}
