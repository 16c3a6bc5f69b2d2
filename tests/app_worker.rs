//! The scoring worker's batching, driven through its real thread with a recording backend:
//! score requests that queued up while the worker was busy are scored as one stream of full
//! batches, and a job cancelled mid-stream leaves without stopping the others.
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
