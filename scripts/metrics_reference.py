"""Writes tests/metrics_reference.json: the values tests/metrics.rs checks our metrics against,
from the reference implementations on the same pseudo-random data.

- AUROC: scikit-learn's `roc_auc_score`.
- Best F1: the maximum of `2pr / (p + r)` over scikit-learn's `precision_recall_curve`; its
  threshold is the highest score reaching that maximum, found by an exact sweep over every
  distinct score in rationals (float F1 values that tie could round apart).
- PRO: the MVTec AD evaluation script's `compute_pro` + `trapezoid` (scipy.ndimage.label with a
  3x3 structure; false-positive rates in float64, see `compute_pro`), normalised by the
  integration limit, as `evaluate_experiment.py` does.

The data come from the 64-bit LCG (Knuth's MMIX constants, top 31 bits) that tests/metrics.rs
implements, drawn in the same order, so both sides see identical scores, labels and masks.

Run with a python that has numpy, scipy and scikit-learn (`pip install scikit-learn` into the
setup venv, ~/.cache/patchcore/torch-2.13.0/bin/python) when the test data change; the JSON is
committed, so the tests need no Python. Records the library versions it used.
"""
import json
import os
import sys
from bisect import bisect
from fractions import Fraction

import numpy as np
import scipy
import sklearn
from scipy.ndimage import label
from sklearn.metrics import precision_recall_curve, roc_auc_score

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(REPO, "tests", "metrics_reference.json")
MASK64 = (1 << 64) - 1


class Lcg:
    def __init__(self, seed):
        self.state = seed

    def next(self):
        self.state = (self.state * 6364136223846793005 + 1442695040888963407) & MASK64
        return self.state >> 33


def tied(n, seed):
    """Scores in quarter steps with many ties; one third positive."""
    g = Lcg(seed)
    scores, labels = [], []
    for _ in range(n):
        positive = g.next() % 3 == 0
        scores.append(((g.next() % 20) + (6 if positive else 0)) / 4)
        labels.append(positive)
    return np.array(scores, dtype=np.float32), np.array(labels)


def continuous(n, seed):
    """Scores on a 2^-20 grid (exact in f32), one quarter positive."""
    g = Lcg(seed)
    scores, labels = [], []
    for _ in range(n):
        positive = g.next() % 4 == 0
        scores.append((g.next() % (1 << 20)) / (1 << 20) + (0.25 if positive else 0.0))
        labels.append(positive)
    return np.array(scores, dtype=np.float32), np.array(labels)


def best_f1(scores, labels):
    precision, recall, _ = precision_recall_curve(labels, scores)
    with np.errstate(invalid="ignore", divide="ignore"):
        f1 = np.nan_to_num(2 * precision * recall / (precision + recall))
    positives = int(labels.sum())
    exact = {}
    for t in np.unique(scores):
        predicted = scores >= t
        tp = int((predicted & labels).sum())
        fp = int((predicted & ~labels).sum())
        exact[float(t)] = Fraction(2 * tp, tp + fp + positives)
    best = max(exact.values())
    threshold = max(t for t, f in exact.items() if f == best)
    assert abs(float(best) - f1.max()) <= 1e-15, (best, f1.max())
    return float(f1.max()), threshold


def pro_data():
    """Five 32x24 images with up to two rectangles each (they may touch and merge), and
    quantised scores (many ties)."""
    w, h = 32, 24
    g = Lcg(3)
    maps, masks = [], []
    for _ in range(5):
        m = np.zeros((h, w), dtype=np.uint8)
        for _ in range(g.next() % 3):
            x0, y0 = g.next() % w, g.next() % h
            rw, rh = 1 + g.next() % 7, 1 + g.next() % 5
            m[y0 : min(y0 + rh, h), x0 : min(x0 + rw, w)] = 1
        a = [(g.next() % 64) / 16 + (2.0 if v else 0.0) for v in m.ravel()]
        maps.append(np.array(a, dtype=np.float32).reshape(h, w))
        masks.append(m)
    return maps, masks


def compute_pro(anomaly_maps, ground_truth_maps):
    """The MVTec AD evaluation script's `compute_pro` (pro_curve_util.py) with one change: the
    false-positive rates stay float64. The script casts them to float32 to save memory, which
    moves the result by about 1e-9; our implementation works in f64 and is checked at 1e-12."""
    structure = np.ones((3, 3), dtype=int)
    num_ok_pixels = 0
    num_gt_regions = 0
    shape = (len(anomaly_maps), anomaly_maps[0].shape[0], anomaly_maps[0].shape[1])
    fp_changes = np.zeros(shape, dtype=np.uint32)
    pro_changes = np.zeros(shape, dtype=np.float64)
    for gt_ind, gt_map in enumerate(ground_truth_maps):
        labeled, n_components = label(gt_map, structure)
        num_gt_regions += n_components
        ok_mask = labeled == 0
        num_ok_pixels += np.sum(ok_mask)
        fp_changes[gt_ind, ok_mask] = 1
        for k in range(n_components):
            region_mask = labeled == (k + 1)
            pro_changes[gt_ind, region_mask] = 1.0 / np.sum(region_mask)
    anomaly_maps_flat = np.array(anomaly_maps).ravel()
    fp_changes = fp_changes.ravel()
    pro_changes = pro_changes.ravel()
    sort_idxs = np.argsort(anomaly_maps_flat).astype(np.uint32)[::-1]
    np.take(anomaly_maps_flat, sort_idxs, out=anomaly_maps_flat)
    anomaly_maps_sorted = anomaly_maps_flat
    np.take(fp_changes, sort_idxs, out=fp_changes)
    np.take(pro_changes, sort_idxs, out=pro_changes)
    np.cumsum(fp_changes, out=fp_changes)
    fp_changes = fp_changes.astype(np.float64, copy=False)
    np.divide(fp_changes, num_ok_pixels, out=fp_changes)
    fprs = fp_changes
    np.cumsum(pro_changes, out=pro_changes)
    np.divide(pro_changes, num_gt_regions, out=pro_changes)
    pros = pro_changes
    keep_mask = np.append(np.diff(anomaly_maps_sorted) != 0, np.True_)
    fprs = fprs[keep_mask]
    pros = pros[keep_mask]
    np.clip(fprs, a_min=None, a_max=1.0, out=fprs)
    np.clip(pros, a_min=None, a_max=1.0, out=pros)
    zero, one = np.array([0.0]), np.array([1.0])
    return np.concatenate((zero, fprs, one)), np.concatenate((zero, pros, one))


def trapezoid(x, y, x_max=None):
    """The MVTec AD evaluation script's `trapezoid` (generic_util.py), unchanged."""
    x, y = np.array(x), np.array(y)
    correction = 0.0
    if x_max is not None:
        if x_max not in x:
            ins = bisect(x, x_max)
            assert 0 < ins < len(x)
            y_interp = y[ins - 1] + (
                (y[ins] - y[ins - 1]) * (x_max - x[ins - 1]) / (x[ins] - x[ins - 1])
            )
            correction = 0.5 * (y_interp + y[ins - 1]) * (x_max - x[ins - 1])
        mask = x <= x_max
        x, y = x[mask], y[mask]
    return np.sum(0.5 * (y[1:] + y[:-1]) * (x[1:] - x[:-1])) + correction


def main():
    reference = {
        "versions": {
            "numpy": np.__version__,
            "scipy": scipy.__version__,
            "scikit-learn": sklearn.__version__,
        },
        "sklearn": [],
        "pro": [],
    }
    for name, make, n, seed in [("tied", tied, 500, 7), ("continuous", continuous, 1000, 11)]:
        scores, labels = make(n, seed)
        f1, threshold = best_f1(scores, labels)
        reference["sklearn"].append(
            {
                "data": name,
                "n": n,
                "seed": seed,
                "auroc": float(roc_auc_score(labels, scores)),
                "f1_max": f1,
                "f1_threshold": threshold,
            }
        )
    maps, masks = pro_data()
    fprs, pros = compute_pro(maps, masks)
    for limit in [0.3, 0.05, 1.0]:
        pro = trapezoid(fprs, pros, x_max=limit) / limit
        reference["pro"].append({"limit": limit, "pro_auc": float(pro)})
    with open(OUT, "w") as f:
        json.dump(reference, f, indent=2)
        f.write("\n")
    json.dump(reference, sys.stdout, indent=2)


if __name__ == "__main__":
    main()
