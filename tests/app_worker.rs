//! The scoring worker's batching, driven through its real thread with a recording backend:
//! score requests that queued up while the worker was busy are scored as one stream of full
//! batches, and a job cancelled mid-stream leaves without stopping the others. And the app's
//! teach round trip with the real backend: mark as good, then undo.
mod common;

use patchcore::app::worker::Worker;
use patchcore::app::{Backend, BackendFactory, JobId, Reply, Request};
use patchcore::bank::BankMeta;
use patchcore::data::Geometry;
use patchcore::engine::{AnomalyMap, Inspection, PhaseTimes, TopPatch};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Opens once; the backend waits at it.
#[derive(Clone, Default)]
struct Gate(Arc<AtomicBool>);

impl Gate {
    fn open(&self) {
        self.0.store(true, Ordering::SeqCst);
    }
    fn wait(&self) {
        let start = Instant::now();
        while !self.0.load(Ordering::SeqCst) {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "gate never opened"
            );
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}

/// Records the paths of every `inspect` call. `load` waits at `loading`; the second image of
/// each call waits at `second`.
#[derive(Clone, Default)]
struct Recorder {
    calls: Arc<Mutex<Vec<Vec<PathBuf>>>>,
    loading: Gate,
    second: Gate,
}

fn inspection(path: &Path) -> Inspection {
    Inspection {
        path: path.to_path_buf(),
        score: 1.0,
        normalized: 0.5,
        map: AnomalyMap {
            width: 4,
            height: 4,
            values: vec![1.0; 16],
        },
        geometry: Geometry {
            orig_width: 4,
            orig_height: 4,
            scale_x: 1.0,
            scale_y: 1.0,
            off_x: 0.0,
            off_y: 0.0,
            width: 4,
            height: 4,
        },
        top_patch: TopPatch {
            row: 0,
            col: 0,
            score: 1.0,
            box_original: [0, 0, 1, 1],
        },
        regions: Vec::new(),
        times: PhaseTimes::default(),
    }
}

impl Backend for Recorder {
    fn load(&mut self, _bank: &Path) -> Result<BankMeta, String> {
        self.loading.wait();
        Err("no bank in this test".into())
    }

    fn inspect(
        &mut self,
        _bank: &Path,
        paths: &[PathBuf],
        on_each: &mut dyn FnMut(usize, Result<Inspection, String>) -> bool,
    ) -> Result<(), String> {
        self.calls.lock().expect("lock").push(paths.to_vec());
        for (i, p) in paths.iter().enumerate() {
            if i == 1 {
                self.second.wait();
            }
            let result = if p.ends_with("bad.png") {
                Err(format!("{}: not an image", p.display()))
            } else {
                Ok(inspection(p))
            };
            if !on_each(i, result) {
                break;
            }
        }
        Ok(())
    }

    fn device_name(&self) -> String {
        "recorder".into()
    }
}

fn factory(r: &Recorder) -> BackendFactory {
    let r = r.clone();
    Arc::new(move || Ok(Box::new(r.clone()) as Box<dyn Backend>))
}

fn score(job: JobId, names: &[&str]) -> Request {
    Request::Score {
        job,
        bank: PathBuf::from("/banks/b.safetensors"),
        paths: names.iter().map(|n| Path::new("/in").join(n)).collect(),
    }
}

/// Replies until `jobs` have all had their `JobDone`.
fn replies_until_done(w: &mut Worker, jobs: &[JobId]) -> Vec<Reply> {
    let start = Instant::now();
    let mut out = Vec::new();
    loop {
        while let Some(r) = w.try_recv() {
            out.push(r);
        }
        let done = jobs.iter().all(|j| {
            out.iter()
                .any(|r| matches!(r, Reply::JobDone { job, .. } if job == j))
        });
        if done {
            return out;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "timed out: {out:?}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn scored(replies: &[Reply], of: JobId) -> Vec<usize> {
    replies
        .iter()
        .filter_map(|r| match r {
            Reply::Scored { job, index, .. } if *job == of => Some(*index),
            _ => None,
        })
        .collect()
}

fn done_of(replies: &[Reply], of: JobId) -> Vec<(bool, Option<String>)> {
    replies
        .iter()
        .filter_map(|r| match r {
            Reply::JobDone {
                job,
                cancelled,
                error,
            } if *job == of => Some((*cancelled, error.clone())),
            _ => None,
        })
        .collect()
}

#[test]
fn three_inbox_arrivals_of_one_image_are_scored_as_one_batch() {
    let r = Recorder::default();
    r.second.open();
    let mut w = Worker::spawn(factory(&r), Arc::new(|| {}));
    // The worker is busy loading while three arrivals of one image each queue up.
    w.send(Request::LoadBank {
        bank: PathBuf::from("/banks/b.safetensors"),
    });
    w.send(score(1, &["a.png"]));
    w.send(score(2, &["b.png"]));
    w.send(score(3, &["bad.png"]));
    r.loading.open();
    let replies = replies_until_done(&mut w, &[1, 2, 3]);

    let calls = r.calls.lock().expect("lock").clone();
    let names: Vec<Vec<String>> = calls
        .iter()
        .map(|c| c.iter().map(|p| p.display().to_string()).collect())
        .collect();
    assert_eq!(names, vec![vec!["/in/a.png", "/in/b.png", "/in/bad.png"]]);
    // Each job still gets its own answers, indexed within the job.
    assert_eq!(scored(&replies, 1), vec![0]);
    assert_eq!(scored(&replies, 2), vec![0]);
    assert!(replies.iter().any(|r| matches!(
        r,
        Reply::ImageFailed { job: 3, index: 0, path, .. } if path.ends_with("bad.png")
    )));
    for job in [1, 2, 3] {
        assert_eq!(done_of(&replies, job), vec![(false, None)], "job {job}");
        assert!(replies.iter().any(|r| matches!(
            r,
            Reply::Progress { job: j, done: 1, total: 1 } if *j == job
        )));
    }
    // Job 1's JobDone comes before job 2's result: a finished job is closed at once.
    let pos = |f: &dyn Fn(&Reply) -> bool| replies.iter().position(f).expect("reply");
    assert!(
        pos(&|r| matches!(r, Reply::JobDone { job: 1, .. }))
            < pos(&|r| matches!(r, Reply::Scored { job: 2, .. }))
    );
}

#[test]
fn a_cancelled_job_leaves_the_stream_and_the_others_go_on() {
    let r = Recorder::default();
    let mut w = Worker::spawn(factory(&r), Arc::new(|| {}));
    w.send(Request::LoadBank {
        bank: PathBuf::from("/banks/b.safetensors"),
    });
    w.send(score(1, &["a1.png", "a2.png", "a3.png"]));
    w.send(score(2, &["b1.png", "b2.png"]));
    r.loading.open();
    // Wait for job 1's first result, cancel job 1, then let the stream go on.
    let start = Instant::now();
    let mut replies = Vec::new();
    while !replies
        .iter()
        .any(|r| matches!(r, Reply::Scored { job: 1, .. }))
    {
        while let Some(reply) = w.try_recv() {
            replies.push(reply);
        }
        assert!(start.elapsed() < Duration::from_secs(20), "no first result");
        std::thread::sleep(Duration::from_millis(2));
    }
    w.cancel(1);
    r.second.open();
    replies.extend(replies_until_done(&mut w, &[1, 2]));

    let calls = r.calls.lock().expect("lock").clone();
    assert_eq!(calls.len(), 2, "{calls:?}");
    assert_eq!(calls[0].len(), 5, "both jobs in one stream");
    // The second pass holds only job 2's images, none of them answered in the first.
    let second: Vec<String> = calls[1].iter().map(|p| p.display().to_string()).collect();
    assert_eq!(second, vec!["/in/b1.png", "/in/b2.png"]);
    assert_eq!(scored(&replies, 2), vec![0, 1]);
    assert_eq!(
        scored(&replies, 1),
        vec![0, 1],
        "job 1 stopped after the cancel"
    );
    assert_eq!(done_of(&replies, 1), vec![(true, None)]);
    assert_eq!(done_of(&replies, 2), vec![(false, None)]);
}

/// The next reply that `want` picks out, with every reply seen until then.
fn reply_where(w: &mut Worker, what: &str, want: impl Fn(&Reply) -> bool) -> (Reply, Vec<Reply>) {
    let start = Instant::now();
    let mut seen = Vec::new();
    loop {
        while let Some(r) = w.try_recv() {
            if want(&r) {
                return (r, seen);
            }
            seen.push(r);
        }
        assert!(
            start.elapsed() < Duration::from_secs(300),
            "timed out waiting for {what}: {seen:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// "Mark as good" through the real worker and backend (libtorch on the CPU): the engine's update
/// writes bank version 2, the image is remembered as good in the verdicts file, the bank comes
/// back reloaded at version 2; "Undo" puts version 1 back bit for bit. A stale version (the bank
/// changed on disk) and an over-threshold image without confirmation are refused, the bank
/// untouched.
#[test]
fn mark_as_good_then_undo_through_the_worker() {
    use patchcore::bank::{read_meta, Verdict, Verdicts};
    use patchcore::engine::calibrate::BankChange;
    use patchcore::engine::{NoProgress, PatchCore};
    let tmp = tempfile::tempdir().expect("tempdir");
    let spec = patchcore::data::synthetic::SyntheticSpec {
        n_train: 8,
        n_test_good: 2,
        n_test_defect_per_type: 1,
        ..Default::default()
    };
    let ds = patchcore::data::synthetic::generate(tmp.path(), "parts", &spec).expect("data");
    let opts = common::small_fit_options("efficientnet_lite0", &ds.root);
    let weights_dir = opts.weights.parent().expect("models folder").to_path_buf();
    let (_, file, _) = PatchCore::fit(&ds.train, &opts, &NoProgress).expect("fit");
    let bank = tmp.path().join("parts.safetensors");
    file.save(&bank).expect("save");
    let original = std::fs::read(&bank).expect("bank bytes");
    let defect = ds
        .test
        .iter()
        .find(|s| s.is_anomalous())
        .expect("a defect")
        .path
        .clone();

    let factory = patchcore::app::TorchBackend::factory(weights_dir, "cpu".into(), 4, 0);
    let mut w = Worker::spawn(factory, Arc::new(|| {}));
    let teach = |version: u32, force: bool| Request::Teach {
        bank: bank.clone(),
        version,
        paths: vec![defect.clone()],
        force,
    };
    let answered = |r: &Reply| matches!(r, Reply::Taught { .. } | Reply::TeachFailed { .. });

    // The app shows version 1 but the file says otherwise: refused, nothing written.
    w.send(teach(7, true));
    match reply_where(&mut w, "the refusal", answered).0 {
        Reply::TeachFailed { error, .. } => {
            assert!(error.contains("changed on disk"), "{error}")
        }
        other => panic!("stale version taught: {other:?}"),
    }
    // A synthetic defect scores far above the threshold: refused without the confirmation.
    w.send(teach(1, false));
    match reply_where(&mut w, "the refusal", answered).0 {
        Reply::TeachFailed { error, .. } => assert!(error.contains("far above"), "{error}"),
        other => panic!("far-off image taught without confirmation: {other:?}"),
    }
    assert_eq!(std::fs::read(&bank).expect("bank"), original);

    w.send(teach(1, true));
    let entry = match reply_where(&mut w, "the update", answered).0 {
        Reply::Taught { entry, warning, .. } => {
            assert_eq!(warning, None);
            entry
        }
        other => panic!("not taught: {other:?}"),
    };
    assert_eq!((entry.parent, entry.version), (1, 2));
    assert!(entry.rows_added > 0 && entry.forced);
    assert_eq!(entry.images[0].path, defect);
    let loaded = |r: &Reply| matches!(r, Reply::BankLoaded { .. } | Reply::BankFailed { .. });
    match reply_where(&mut w, "the reload", loaded).0 {
        Reply::BankLoaded { meta, .. } => {
            assert_eq!(meta.version, 2);
            assert_eq!(meta.calibration.threshold, entry.threshold_after);
        }
        other => panic!("bank not reloaded: {other:?}"),
    }
    assert_eq!(read_meta(&bank).expect("meta").version, 2);
    let verdicts = Verdicts::load(&bank).expect("verdicts");
    let v = verdicts.get(&defect).expect("verdict recorded");
    assert_eq!(v.verdict, Verdict::Good);
    assert_eq!(v.sha256, entry.images[0].sha256);

    // Undo, first from a stale version (refused), then from the one on disk.
    let changed = |r: &Reply| loaded(r) || matches!(r, Reply::ChangeFailed { .. });
    w.send(Request::ChangeBank {
        bank: bank.clone(),
        change: BankChange::Revert { from: 1, to: 1 },
    });
    match reply_where(&mut w, "the refused undo", changed).0 {
        Reply::ChangeFailed { error, .. } => assert!(error.contains("changed on disk"), "{error}"),
        other => panic!("stale undo applied: {other:?}"),
    }
    w.send(Request::ChangeBank {
        bank: bank.clone(),
        change: BankChange::Revert { from: 2, to: 1 },
    });
    match reply_where(&mut w, "the undo", changed).0 {
        Reply::BankLoaded { meta, .. } => assert_eq!(meta.version, 1),
        other => panic!("not undone: {other:?}"),
    }
    assert_eq!(
        std::fs::read(&bank).expect("bank"),
        original,
        "undo restores the bytes"
    );
}
