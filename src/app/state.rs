//! The workstation's data model, free of any drawing: the images of the open folder, their
//! results, the threshold, filter and sort, and the derived lists (gallery order, reject list,
//! counts, histogram). Views are cached and rebuilt only when an input changes, so the GUI stays
//! smooth with thousands of images and moving the threshold never rescores anything.
//!
//! Here: the items and their results; the derived lists are in [`order`] and [`histogram`].
use super::colormap::ColorScale;
use super::protocol::JobId;
use crate::bank::BankMeta;
use crate::decide::Rules;
use crate::engine::Inspection;
pub use crate::report::Decision;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[cfg(test)]
mod fixtures;
mod histogram;
mod order;

pub use histogram::Histogram;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Filter {
    All,
    Accepted,
    Review,
    Rejected,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SortKey {
    /// Worst first: what an operator checks first.
    ScoreDesc,
    ScoreAsc,
    Name,
}

/// Columns of the reject table, each sortable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RejectColumn {
    Name,
    Score,
    Normalized,
    Location,
}

#[derive(Clone, Debug)]
pub enum ItemStatus {
    /// Sent to the worker, no answer yet.
    Pending,
    Scored(Arc<Inspection>),
    /// The image could not be scored; the message names why.
    Failed(String),
}

/// One image of the open folder (or of the inbox).
#[derive(Clone, Debug)]
pub struct Item {
    pub path: PathBuf,
    /// File name shown in the gallery and tables (the full path is in the detail view).
    pub name: String,
    pub status: ItemStatus,
    /// Arrival order for inbox images; they are listed first, newest on top.
    pub inbox_seq: Option<u64>,
    /// When the result or the failure arrived (RFC 3339 UTC), for the CSV.
    pub scored_at: String,
    /// The operator's decision on a review image (recorded in the bank's verdicts file).
    pub hand: Option<Decision>,
}

impl Item {
    /// `root` is the folder the image was listed from: the name is the path below it, so
    /// `crack/001.png` and `stain/001.png` stay apart; without it, the file name.
    pub fn new(path: PathBuf, inbox_seq: Option<u64>, root: Option<&Path>) -> Item {
        let relative = root
            .and_then(|r| path.strip_prefix(r).ok())
            .filter(|r| !r.as_os_str().is_empty())
            .map(|r| {
                r.components()
                    .map(|c| c.as_os_str().to_string_lossy())
                    .collect::<Vec<_>>()
                    .join("/")
            });
        let name = relative.unwrap_or_else(|| {
            path.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| path.to_string_lossy().into_owned())
        });
        Item {
            path,
            name,
            status: ItemStatus::Pending,
            inbox_seq,
            scored_at: String::new(),
            hand: None,
        }
    }

    pub fn inspection(&self) -> Option<&Arc<Inspection>> {
        match &self.status {
            ItemStatus::Scored(i) => Some(i),
            _ => None,
        }
    }

    pub fn score(&self) -> Option<f32> {
        self.inspection().map(|i| i.score)
    }

    /// The rules' decision, or the operator's where they decided a review image by hand.
    pub fn decision(&self, rules: &Rules) -> Option<Decision> {
        let ruled = self.inspection().map(|i| i.decide(rules))?;
        Some(match (ruled, self.hand) {
            (Decision::Review, Some(hand)) => hand,
            _ => ruled,
        })
    }

    pub fn error(&self) -> Option<&str> {
        match &self.status {
            ItemStatus::Failed(e) => Some(e),
            _ => None,
        }
    }
}

/// A loaded bank as the GUI knows it: metadata and the colour scale derived from it.
#[derive(Clone, Debug)]
pub struct BankInfo {
    pub path: PathBuf,
    /// File name, the key for per-bank settings.
    pub file_name: String,
    pub meta: BankMeta,
    pub scale: ColorScale,
    pub device: String,
}

impl BankInfo {
    pub fn new(path: PathBuf, meta: BankMeta, device: String) -> BankInfo {
        let file_name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let scale = ColorScale::for_bank(&meta);
        BankInfo {
            path,
            file_name,
            meta,
            scale,
            device,
        }
    }

    pub fn calibrated_threshold(&self) -> f32 {
        self.meta.calibration.threshold
    }
}

/// Images an operator judged with this bank (its verdicts file): decision and score, by path.
pub type Judged = HashMap<PathBuf, (Decision, f32)>;

/// Confirmed defects needed before the F1-best threshold is shown: with fewer, one image moves it.
pub const F1_MIN_DEFECTS: usize = 3;

/// The threshold that best separates the judged images (see `metrics::f1_best_threshold`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct F1Best {
    pub threshold: f32,
    pub f1: f64,
    pub defects: usize,
    /// Good scores used: the bank's calibration images and the images judged good.
    pub good: usize,
}

/// The decision inputs the cached lists depend on: both thresholds (bits) and the minimum area.
type RulesKey = (u32, u32, u64);

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub total: usize,
    pub accepted: usize,
    pub review: usize,
    pub rejected: usize,
    pub failed: usize,
    pub pending: usize,
}

/// The images being inspected and everything derived from them.
#[derive(Debug)]
pub struct Inspector {
    pub bank: Option<BankInfo>,
    /// Folder the images came from (shown in the toolbar).
    pub source: Option<PathBuf>,
    pub items: Vec<Item>,
    by_path: HashMap<PathBuf, usize>,
    /// The operator's earlier decisions by hand on this bank (its verdicts file), by path.
    remembered: Judged,
    /// For each live job, the item index of each of its paths.
    jobs: HashMap<JobId, Vec<usize>>,
    next_inbox_seq: u64,

    threshold: f32,
    /// Second threshold: scores above it are rejected, between the two reviewed.
    reject_from: f32,
    /// The bank's other rules (min area, pixel threshold), changeable here.
    min_area: u64,
    filter: Filter,
    sort: SortKey,
    reject_sort: (RejectColumn, bool),

    /// Bumped on any change to `items`; the caches compare against it.
    version: u64,
    view_key: Option<(u64, RulesKey, Filter, SortKey)>,
    /// Shared, so the gallery takes it each frame without copying thousands of indices.
    view: Arc<[usize]>,
    /// Position of each item in `view` (None when filtered out).
    view_pos: Vec<Option<usize>>,
    counts: Counts,
    rejects_key: Option<(u64, RulesKey, RejectColumn, bool)>,
    rejects: Vec<usize>,
    hist_key: Option<u64>,
    hist: Histogram,
    /// Lowest and highest score (None: nothing scored), for the slider range.
    span_key: Option<u64>,
    span: Option<(f32, f32)>,
}

impl Default for Inspector {
    fn default() -> Self {
        Inspector {
            bank: None,
            source: None,
            items: Vec::new(),
            by_path: HashMap::new(),
            remembered: HashMap::new(),
            jobs: HashMap::new(),
            next_inbox_seq: 0,
            threshold: 0.0,
            reject_from: 0.0,
            min_area: 0,
            filter: Filter::All,
            sort: SortKey::ScoreDesc,
            reject_sort: (RejectColumn::Score, false),
            version: 0,
            view_key: None,
            view: Arc::from(Vec::new()),
            view_pos: Vec::new(),
            counts: Counts::default(),
            rejects_key: None,
            rejects: Vec::new(),
            hist_key: None,
            hist: Histogram::default(),
            span_key: None,
            span: None,
        }
    }
}

impl Inspector {
    /// Switches to a bank: clears the images and sets the threshold (saved or calibrated).
    pub fn set_bank(&mut self, bank: BankInfo, threshold: f32) {
        let rules = bank.meta.rules();
        self.threshold = threshold;
        self.reject_from = rules.reject_from.max(threshold);
        self.min_area = rules.min_area;
        self.bank = Some(bank);
        self.clear_items();
    }

    /// Forgets all images (a new folder is being opened). Live jobs are forgotten too; the
    /// caller cancels them on the worker.
    pub fn clear_items(&mut self) -> Vec<JobId> {
        self.items.clear();
        self.by_path.clear();
        self.source = None;
        self.touch();
        self.jobs.drain().map(|(j, _)| j).collect()
    }

    pub fn live_jobs(&self) -> Vec<JobId> {
        self.jobs.keys().copied().collect()
    }

    /// Adds images for a new job and returns the paths to send. Paths already present (an
    /// inbox file seen twice) are rescored in place.
    pub fn add_job(&mut self, job: JobId, paths: Vec<PathBuf>, inbox: bool) -> Vec<PathBuf> {
        let mut indices = Vec::with_capacity(paths.len());
        for path in &paths {
            let seq = inbox.then(|| {
                self.next_inbox_seq += 1;
                self.next_inbox_seq
            });
            let i = match self.by_path.get(path) {
                Some(&i) => {
                    self.items[i].status = ItemStatus::Pending;
                    if seq.is_some() {
                        self.items[i].inbox_seq = seq;
                    }
                    i
                }
                None => {
                    let root = if inbox { None } else { self.source.as_deref() };
                    let mut item = Item::new(path.clone(), seq, root);
                    item.hand = self.remembered.get(path).map(|h| h.0);
                    self.items.push(item);
                    self.by_path.insert(path.clone(), self.items.len() - 1);
                    self.items.len() - 1
                }
            };
            indices.push(i);
        }
        self.jobs.insert(job, indices);
        self.touch();
        paths
    }

    fn item_of(&self, job: JobId, index: usize) -> Option<usize> {
        self.jobs.get(&job).and_then(|v| v.get(index)).copied()
    }

    /// Stores a result; results of unknown (cancelled) jobs are dropped. Returns the item.
    pub fn set_result(
        &mut self,
        job: JobId,
        index: usize,
        inspection: Inspection,
        now: &str,
    ) -> Option<usize> {
        let i = self.item_of(job, index)?;
        let item = &mut self.items[i];
        item.status = ItemStatus::Scored(Arc::new(inspection));
        item.scored_at = now.to_string();
        self.touch();
        Some(i)
    }

    /// Records why an image could not be inspected, and when (its CSV row carries both).
    pub fn set_failed(
        &mut self,
        job: JobId,
        index: usize,
        error: String,
        now: &str,
    ) -> Option<usize> {
        let i = self.item_of(job, index)?;
        self.items[i].status = ItemStatus::Failed(error);
        self.items[i].scored_at = now.to_string();
        self.touch();
        Some(i)
    }

    /// Closes a job; with an error, its images still pending get that error.
    /// Closes `job`. With a reason (the worker failed, or the job was cancelled), its images
    /// still waiting become errors naming it: left as "scoring…" they would never get a decision.
    pub fn finish_job(&mut self, job: JobId, unscored: Option<&str>) {
        if let Some(indices) = self.jobs.remove(&job) {
            for i in indices {
                if let (Some(item), Some(e)) = (self.items.get_mut(i), unscored) {
                    if matches!(item.status, ItemStatus::Pending) {
                        item.status = ItemStatus::Failed(format!("not scored: {e}"));
                    }
                }
            }
            self.touch();
        }
    }

    pub fn is_busy(&self) -> bool {
        !self.jobs.is_empty()
    }

    fn touch(&mut self) {
        self.version += 1;
    }

    pub fn threshold(&self) -> f32 {
        self.threshold
    }

    pub fn set_threshold(&mut self, t: f32) {
        if t.is_finite() {
            self.threshold = t;
            self.reject_from = self.reject_from.max(t);
        }
    }

    /// The reject threshold; never below the review threshold.
    pub fn reject_from(&self) -> f32 {
        self.reject_from.max(self.threshold)
    }

    pub fn set_reject_from(&mut self, t: f32) {
        if t.is_finite() {
            self.reject_from = t;
            self.threshold = self.threshold.min(t);
        }
    }

    pub fn set_min_area(&mut self, area: u64) {
        self.min_area = area;
    }

    /// The rules the app decides with: the bank's, with the thresholds and minimum area set here.
    pub fn rules(&self) -> Rules {
        let base = self.bank.as_ref().map(|b| b.meta.rules()).unwrap_or(Rules {
            review_from: self.threshold,
            reject_from: self.threshold,
            min_area: 0,
            pixel_threshold: f32::INFINITY,
            mm_per_pixel: None,
        });
        Rules {
            review_from: self.threshold,
            reject_from: self.reject_from(),
            min_area: self.min_area,
            ..base
        }
    }

    /// What the derived lists depend on besides the items: they rebuild when it changes.
    fn rules_key(&self) -> RulesKey {
        (
            self.threshold.to_bits(),
            self.reject_from().to_bits(),
            self.min_area,
        )
    }

    /// The bank's remembered decisions by hand, applied to the images listed now and later, so
    /// a restart or a bank reload does not send decided images back to review.
    pub fn remember(&mut self, hands: Judged) {
        for item in &mut self.items {
            item.hand = hands.get(&item.path).map(|h| h.0);
        }
        self.remembered = hands;
        self.touch();
    }

    /// Records the operator's decision on item `i` (shown at once; the caller writes it down).
    pub fn set_hand(&mut self, i: usize, decision: Decision) {
        if let Some(item) = self.items.get_mut(i) {
            item.hand = Some(decision);
            if let Some(score) = item.score() {
                self.remembered.insert(item.path.clone(), (decision, score));
            }
            self.touch();
        }
    }

    /// The F1-best threshold from the confirmed defects against the good scores (calibration
    /// and judged good), once there are `F1_MIN_DEFECTS` defects. Judged scores are those given
    /// with the verdicts, so after an update they are the older bank's.
    pub fn f1_best(&self) -> Option<F1Best> {
        let bank = self.bank.as_ref()?;
        let pick = |d: Decision| -> Vec<f32> {
            self.remembered
                .values()
                .filter(|h| h.0 == d)
                .map(|h| h.1)
                .collect()
        };
        let defects = pick(Decision::Reject);
        if defects.len() < F1_MIN_DEFECTS {
            return None;
        }
        let mut good = bank.meta.calibration.scores.clone();
        good.extend(pick(Decision::Accept));
        let (threshold, f1) = crate::metrics::f1_best_threshold(&good, &defects)?;
        Some(F1Best {
            threshold,
            f1,
            defects: defects.len(),
            good: good.len(),
        })
    }

    pub fn filter(&self) -> Filter {
        self.filter
    }

    pub fn set_filter(&mut self, f: Filter) {
        self.filter = f;
    }

    pub fn sort(&self) -> SortKey {
        self.sort
    }

    pub fn set_sort(&mut self, s: SortKey) {
        self.sort = s;
    }

    pub fn reject_sort(&self) -> (RejectColumn, bool) {
        self.reject_sort
    }

    pub fn index_of_path(&self, path: &Path) -> Option<usize> {
        self.by_path.get(path).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::fixtures::{inspection, scored};
    use super::ItemStatus;
    use std::path::Path;

    #[test]
    fn results_of_forgotten_jobs_are_dropped() {
        let mut s = scored(&[("a.png", Some(3.0))]);
        let jobs = s.clear_items();
        assert!(jobs.is_empty());
        assert!(s
            .set_result(7, 0, inspection(Path::new("/x"), 1.0), "t")
            .is_none());
        assert!(s.items.is_empty());
    }

    #[test]
    fn a_cancelled_jobs_waiting_images_become_errors_not_endless_scoring() {
        let mut s = scored(&[("a.png", Some(3.0))]);
        let paths = vec![
            Path::new("/in/b.png").to_path_buf(),
            Path::new("/in/c.png").into(),
        ];
        s.add_job(8, paths.clone(), true);
        s.set_result(8, 0, inspection(&paths[0], 0.5), "t");
        s.finish_job(8, Some("scoring was cancelled"));
        let status = |p: &Path| &s.items[s.by_path[p]].status;
        assert!(matches!(status(&paths[0]), ItemStatus::Scored(_)));
        assert!(
            matches!(status(&paths[1]), ItemStatus::Failed(e) if e == "not scored: scoring was cancelled")
        );
        assert!(matches!(
            status(Path::new("/data/a.png")),
            ItemStatus::Scored(_)
        ));
        assert!(!s.is_busy());
    }
}
