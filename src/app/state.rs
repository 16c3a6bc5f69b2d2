//! The workstation's data model, free of any drawing: the images of the open folder, their
//! results, the threshold, filter and sort, and the derived lists (gallery order, reject list,
//! counts, histogram). Views are cached and rebuilt only when an input changes, so the GUI stays
//! smooth with thousands of images and moving the threshold never rescores anything.
use super::colormap::ColorScale;
use super::protocol::JobId;
use crate::bank::BankMeta;
use crate::engine::Inspection;
pub use crate::report::Decision;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Filter {
    All,
    Accepted,
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
    /// When the result arrived (RFC 3339 UTC), for the CSV.
    pub scored_at: String,
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

    pub fn decision(&self, threshold: f32) -> Option<Decision> {
        self.score().map(|s| Decision::of(s, threshold))
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

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub total: usize,
    pub accepted: usize,
    pub rejected: usize,
    pub failed: usize,
    pub pending: usize,
}

/// Histogram of the scored images: `bins` counts over `[lo, hi)` in equal steps.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Histogram {
    pub lo: f32,
    pub width: f32,
    pub bins: Vec<u32>,
}

/// The images being inspected and everything derived from them.
#[derive(Debug)]
pub struct Inspector {
    pub bank: Option<BankInfo>,
    /// Folder the images came from (shown in the toolbar).
    pub source: Option<PathBuf>,
    pub items: Vec<Item>,
    by_path: HashMap<PathBuf, usize>,
    /// For each live job, the item index of each of its paths.
    jobs: HashMap<JobId, Vec<usize>>,
    next_inbox_seq: u64,

    threshold: f32,
    filter: Filter,
    sort: SortKey,
    reject_sort: (RejectColumn, bool),

    /// Bumped on any change to `items`; the caches compare against it.
    version: u64,
    view_key: Option<(u64, u32, Filter, SortKey)>,
    view: Vec<usize>,
    /// Position of each item in `view` (None when filtered out).
    view_pos: Vec<Option<usize>>,
    counts: Counts,
    rejects_key: Option<(u64, u32, RejectColumn, bool)>,
    rejects: Vec<usize>,
    hist_key: Option<u64>,
    hist: Histogram,
}

impl Default for Inspector {
    fn default() -> Self {
        Inspector {
            bank: None,
            source: None,
            items: Vec::new(),
            by_path: HashMap::new(),
            jobs: HashMap::new(),
            next_inbox_seq: 0,
            threshold: 0.0,
            filter: Filter::All,
            sort: SortKey::ScoreDesc,
            reject_sort: (RejectColumn::Score, false),
            version: 0,
            view_key: None,
            view: Vec::new(),
            view_pos: Vec::new(),
            counts: Counts::default(),
            rejects_key: None,
            rejects: Vec::new(),
            hist_key: None,
            hist: Histogram::default(),
        }
    }
}

impl Inspector {
    /// Switches to a bank: clears the images and sets the threshold (saved or calibrated).
    pub fn set_bank(&mut self, bank: BankInfo, threshold: f32) {
        self.threshold = threshold;
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
                    self.items.push(Item::new(path.clone(), seq, root));
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

    pub fn set_failed(&mut self, job: JobId, index: usize, error: String) -> Option<usize> {
        let i = self.item_of(job, index)?;
        self.items[i].status = ItemStatus::Failed(error);
        self.touch();
        Some(i)
    }

    /// Closes a job; with an error, its images still pending get that error.
    pub fn finish_job(&mut self, job: JobId, error: Option<&str>) {
        if let Some(indices) = self.jobs.remove(&job) {
            for i in indices {
                if let (Some(item), Some(e)) = (self.items.get_mut(i), error) {
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
        }
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

    /// Sorts the reject table by `column`; choosing the same column again flips the direction.
    pub fn toggle_reject_sort(&mut self, column: RejectColumn) {
        self.reject_sort = if self.reject_sort.0 == column {
            (column, !self.reject_sort.1)
        } else {
            // Scores read best worst-first; names alphabetically.
            (
                column,
                matches!(column, RejectColumn::Name | RejectColumn::Location),
            )
        };
    }

    /// Gallery order: inbox arrivals first (newest on top), then the rest by the sort key;
    /// only items passing the filter. Pending and failed items show under "All" only.
    pub fn view(&mut self) -> &[usize] {
        self.refresh_view();
        &self.view
    }

    pub fn view_position(&mut self, item: usize) -> Option<usize> {
        self.refresh_view();
        self.view_pos.get(item).copied().flatten()
    }

    pub fn counts(&mut self) -> Counts {
        self.refresh_view();
        self.counts
    }

    fn refresh_view(&mut self) {
        let key = (
            self.version,
            self.threshold.to_bits(),
            self.filter,
            self.sort,
        );
        if self.view_key == Some(key) {
            return;
        }
        self.view_key = Some(key);
        let t = self.threshold;
        let mut counts = Counts {
            total: self.items.len(),
            ..Counts::default()
        };
        let mut view = Vec::with_capacity(self.items.len());
        for (i, item) in self.items.iter().enumerate() {
            let decision = item.decision(t);
            match (&item.status, decision) {
                (ItemStatus::Pending, _) => counts.pending += 1,
                (ItemStatus::Failed(_), _) => counts.failed += 1,
                (_, Some(Decision::Accept)) => counts.accepted += 1,
                (_, Some(Decision::Reject)) => counts.rejected += 1,
                _ => {}
            }
            let keep = match self.filter {
                Filter::All => true,
                Filter::Accepted => decision == Some(Decision::Accept),
                Filter::Rejected => decision == Some(Decision::Reject),
            };
            if keep {
                view.push(i);
            }
        }
        let items = &self.items;
        let sort = self.sort;
        view.sort_by(|&a, &b| {
            let (ia, ib) = (&items[a], &items[b]);
            // Inbox first, newest first.
            let inbox = ib.inbox_seq.cmp(&ia.inbox_seq);
            inbox
                .then_with(|| match sort {
                    SortKey::Name => ia.name.cmp(&ib.name),
                    SortKey::ScoreDesc => cmp_score_desc(ia.score(), ib.score()),
                    SortKey::ScoreAsc => cmp_score_asc(ia.score(), ib.score()),
                })
                .then_with(|| ia.path.cmp(&ib.path))
        });
        self.view_pos = vec![None; self.items.len()];
        for (pos, &i) in view.iter().enumerate() {
            self.view_pos[i] = Some(pos);
        }
        self.view = view;
        self.counts = counts;
    }

    /// Item indices of the rejected images, in the reject table's sort order.
    pub fn rejects(&mut self) -> &[usize] {
        let key = (
            self.version,
            self.threshold.to_bits(),
            self.reject_sort.0,
            self.reject_sort.1,
        );
        if self.rejects_key != Some(key) {
            self.rejects_key = Some(key);
            let t = self.threshold;
            let items = &self.items;
            let mut list: Vec<usize> = (0..items.len())
                .filter(|&i| items[i].decision(t) == Some(Decision::Reject))
                .collect();
            let (column, ascending) = self.reject_sort;
            list.sort_by(|&a, &b| {
                let (ia, ib) = (&items[a], &items[b]);
                let ord = match column {
                    RejectColumn::Name => ia.name.cmp(&ib.name),
                    // Normalisation is monotone in the score, so both sort the same way.
                    RejectColumn::Score | RejectColumn::Normalized => {
                        cmp_score_asc(ia.score(), ib.score())
                    }
                    RejectColumn::Location => {
                        let loc = |i: &Item| i.inspection().map(|x| x.top_patch.box_original);
                        loc(ia).cmp(&loc(ib))
                    }
                };
                let ord = if ascending { ord } else { ord.reverse() };
                ord.then_with(|| ia.path.cmp(&ib.path))
            });
            self.rejects = list;
        }
        &self.rejects
    }

    /// Histogram of all scored images, with bins spanning the scores and the thresholds.
    pub fn histogram(&mut self, bins: usize) -> &Histogram {
        if self.hist_key != Some(self.version) {
            self.hist_key = Some(self.version);
            let scores: Vec<f32> = self.items.iter().filter_map(Item::score).collect();
            let cal = self.bank.as_ref().map(|b| b.calibrated_threshold());
            let mut lo = scores.iter().copied().fold(f32::INFINITY, f32::min);
            let mut hi = scores.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            if let Some(c) = cal {
                lo = lo.min(c);
                hi = hi.max(c);
            }
            if !lo.is_finite() || !hi.is_finite() {
                self.hist = Histogram::default();
            } else {
                let span = (hi - lo).max(1e-3);
                let lo = lo - 0.05 * span;
                let width = span * 1.1 / bins.max(1) as f32;
                let mut counts = vec![0u32; bins.max(1)];
                for s in scores {
                    let b = (((s - lo) / width) as usize).min(counts.len() - 1);
                    counts[b] += 1;
                }
                self.hist = Histogram {
                    lo,
                    width,
                    bins: counts,
                };
            }
        }
        &self.hist
    }

    /// Range for the threshold slider: covers calibration and every score seen, and does not
    /// move while the operator drags (it depends on the data, not on the threshold).
    pub fn threshold_range(&self) -> (f32, f32) {
        let Some(bank) = &self.bank else {
            return (0.0, 1.0);
        };
        let c = &bank.meta.calibration;
        let mut lo = c.min.min(c.threshold);
        let mut hi = (2.0 * c.threshold).max(c.max);
        for s in self.items.iter().filter_map(Item::score) {
            lo = lo.min(s);
            hi = hi.max(s);
        }
        if !lo.is_finite() || !hi.is_finite() || hi <= lo {
            return (0.0, c.threshold.abs().max(1.0) * 2.0);
        }
        let pad = 0.02 * (hi - lo);
        ((lo - pad).max(0.0), hi + pad)
    }

    pub fn index_of_path(&self, path: &Path) -> Option<usize> {
        self.by_path.get(path).copied()
    }

    /// The item `delta` steps from `current` in the gallery order (clamped at the ends).
    pub fn step(&mut self, current: Option<usize>, delta: isize) -> Option<usize> {
        self.refresh_view();
        if self.view.is_empty() {
            return None;
        }
        let pos = current.and_then(|i| self.view_pos.get(i).copied().flatten());
        let next = match pos {
            Some(p) => (p as isize)
                .saturating_add(delta)
                .clamp(0, self.view.len() as isize - 1) as usize,
            None if delta < 0 => self.view.len() - 1,
            None => 0,
        };
        Some(self.view[next])
    }
}

/// Highest score first; unscored items (pending, failed) last.
fn cmp_score_desc(a: Option<f32>, b: Option<f32>) -> std::cmp::Ordering {
    match (a, b) {
        (Some(a), Some(b)) => b.total_cmp(&a),
        (Some(_), None) => std::cmp::Ordering::Less,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (None, None) => std::cmp::Ordering::Equal,
    }
}

/// Lowest score first; unscored items last.
fn cmp_score_asc(a: Option<f32>, b: Option<f32>) -> std::cmp::Ordering {
    match (a, b) {
        (Some(a), Some(b)) => a.total_cmp(&b),
        (Some(_), None) => std::cmp::Ordering::Less,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (None, None) => std::cmp::Ordering::Equal,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{AnomalyMap, PhaseTimes, TopPatch};

    fn inspection(path: &Path, score: f32) -> Inspection {
        Inspection {
            path: path.to_path_buf(),
            score,
            normalized: score,
            map: AnomalyMap {
                width: 1,
                height: 1,
                values: vec![score],
            },
            geometry: crate::data::Geometry {
                orig_width: 10,
                orig_height: 10,
                scale_x: 1.0,
                scale_y: 1.0,
                off_x: 0.0,
                off_y: 0.0,
                crop: 10,
            },
            top_patch: TopPatch {
                row: 0,
                col: 0,
                score,
                box_original: [0, 0, 1, 1],
            },
            times: PhaseTimes::default(),
        }
    }

    fn scored(scores: &[(&str, Option<f32>)]) -> Inspector {
        let mut s = Inspector::default();
        s.set_threshold(1.0);
        s.source = Some(PathBuf::from("/data"));
        let paths: Vec<PathBuf> = scores
            .iter()
            .map(|(n, _)| Path::new("/data").join(n))
            .collect();
        s.add_job(7, paths.clone(), false);
        for (i, (_, score)) in scores.iter().enumerate() {
            match score {
                Some(v) => {
                    s.set_result(7, i, inspection(&paths[i], *v), "t");
                }
                None => {
                    s.set_failed(7, i, "bad".into());
                }
            }
        }
        s.finish_job(7, None);
        s
    }

    #[test]
    fn threshold_filter_and_counts_without_rescoring() {
        let mut s = scored(&[
            ("good/a.png", Some(0.5)),
            ("crack/b.png", Some(2.0)),
            ("crack/c.png", Some(1.5)),
            ("d.png", None),
        ]);
        let c = s.counts();
        assert_eq!((c.accepted, c.rejected, c.failed, c.pending), (1, 2, 1, 0));
        assert_eq!(s.items[1].name, "crack/b.png", "names keep the sub-folder");
        // Worst first, failures last.
        assert_eq!(s.view().to_vec(), vec![1, 2, 0, 3]);
        s.set_threshold(1.5); // exactly at the threshold is accepted
        assert_eq!(s.counts().rejected, 1);
        s.set_filter(Filter::Accepted);
        assert_eq!(s.view().to_vec(), vec![2, 0]);
        s.set_filter(Filter::Rejected);
        assert_eq!(s.rejects().to_vec(), vec![1]);
        assert_eq!(s.view().to_vec(), vec![1]);
    }

    #[test]
    fn stepping_and_reject_sorting() {
        let mut s = scored(&[
            ("a.png", Some(3.0)),
            ("b.png", Some(2.0)),
            ("c.png", Some(4.0)),
        ]);
        assert_eq!(s.step(Some(2), 1), Some(0));
        assert_eq!(s.step(Some(1), 1), Some(1), "clamped at the end");
        assert_eq!(s.step(None, -1), Some(1));
        assert_eq!(s.step(Some(0), isize::MIN / 2), Some(2));
        assert_eq!(s.rejects().to_vec(), vec![2, 0, 1]);
        s.toggle_reject_sort(RejectColumn::Name);
        assert_eq!(s.rejects().to_vec(), vec![0, 1, 2]);
        s.toggle_reject_sort(RejectColumn::Name);
        assert_eq!(s.rejects().to_vec(), vec![2, 1, 0]);
    }

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
}
