//! The derived lists of the inspector: gallery order (filtered, sorted), counts, the reject
//! table and stepping through the gallery. Cached against the inspector's version, threshold
//! and sort choices, so a frame that changes nothing sorts nothing.
use super::{Counts, Decision, Filter, Inspector, Item, ItemStatus, RejectColumn, SortKey};

impl Inspector {
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

    /// The gallery order as a shared list: a frame takes it without copying it.
    pub fn view_shared(&mut self) -> std::sync::Arc<[usize]> {
        self.refresh_view();
        self.view.clone()
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
        let key = (self.version, self.rules_key(), self.filter, self.sort);
        if self.view_key == Some(key) {
            return;
        }
        self.view_key = Some(key);
        let rules = self.rules();
        let mut counts = Counts {
            total: self.items.len(),
            ..Counts::default()
        };
        let mut view = Vec::with_capacity(self.items.len());
        for (i, item) in self.items.iter().enumerate() {
            let decision = item.decision(&rules);
            match (&item.status, decision) {
                (ItemStatus::Pending, _) => counts.pending += 1,
                (ItemStatus::Failed(_), _) => counts.failed += 1,
                (_, Some(Decision::Accept)) => counts.accepted += 1,
                (_, Some(Decision::Review)) => counts.review += 1,
                (_, Some(Decision::Reject)) => counts.rejected += 1,
                _ => {}
            }
            let keep = match self.filter {
                Filter::All => true,
                Filter::Accepted => decision == Some(Decision::Accept),
                Filter::Review => decision == Some(Decision::Review),
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
        self.view = view.into();
        self.counts = counts;
    }

    /// Item indices of the rejected images, in the reject table's sort order.
    pub fn rejects(&mut self) -> &[usize] {
        let key = (
            self.version,
            self.rules_key(),
            self.reject_sort.0,
            self.reject_sort.1,
        );
        if self.rejects_key != Some(key) {
            self.rejects_key = Some(key);
            let rules = self.rules();
            let items = &self.items;
            let mut list: Vec<usize> = (0..items.len())
                .filter(|&i| items[i].decision(&rules) == Some(Decision::Reject))
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
    use super::super::fixtures::scored;
    use super::*;

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
    fn review_band_filter_and_decisions_by_hand() {
        let mut s = scored(&[
            ("a.png", Some(0.5)),
            ("b.png", Some(1.5)),
            ("c.png", Some(2.5)),
        ]);
        s.set_reject_from(2.0); // review above 1, reject above 2
        let c = s.counts();
        assert_eq!((c.accepted, c.review, c.rejected), (1, 1, 1));
        s.set_filter(Filter::Review);
        assert_eq!(s.view().to_vec(), vec![1]);
        assert_eq!(s.rejects().to_vec(), vec![2]);
        // The operator rejects the review image: it joins the rejects at once.
        s.set_hand(1, Decision::Reject);
        assert_eq!(s.view().to_vec(), Vec::<usize>::new());
        assert_eq!(s.rejects().to_vec(), vec![2, 1]);
        // A hand decision only overrides a review: moved out of the band, the rules decide.
        s.set_reject_from(1.2);
        s.set_hand(1, Decision::Accept);
        assert_eq!(s.counts().rejected, 2);
        // The review threshold never passes the reject threshold.
        s.set_threshold(3.0);
        assert_eq!(s.reject_from(), 3.0);
        assert_eq!(s.counts().accepted, 3);
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
}
