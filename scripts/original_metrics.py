"""Pixel AUROC and PRO of `patchcore eval --dump-maps` maps brought back onto each image's own pixels,
per defect class, so geometries that see an image at different resolutions (the squash, the whole
image at any scale) are compared on the same pixels.

    python scripts/original_metrics.py SPLIT_JSON EVAL_JSON BANK MAPS [--square N] [--peak S,S,...]

SPLIT_JSON is the dataset's split file (`image`/`mask` paths relative to it, as magnetic tile's),
EVAL_JSON the report of `patchcore eval --json`, BANK the bank it scored with (its geometry is read
from its metadata), MAPS the `--dump-maps` folder. Each map's part that shows the image is resized
(bilinear) to the image's size, or to N x N with `--square N` (the squash's protocol: every image
weighs the same); masks are resized as src/data/preprocess.rs resizes them (bilinear, >= 128).
Prints one row per defect class (that class's images and every good one) and one for all.
`--peak 0,8` adds image AUROC per class with each image scored by the peak of its dumped map (the image
part, at the map's resolution) after an extra Gaussian blur of S map pixels (0: the map as dumped),
beside eval's own score (the bank's image score: the highest patch, or the map's peak for a map-peak bank).
Geometries that crop (the paper's `--crop`) do not see the whole image and are refused.
Needs numpy, scipy and Pillow (the setup venv has them).
"""
import json
import os
import sys

import numpy as np
from PIL import Image
from scipy.ndimage import gaussian_filter, label

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import hires_analysis as ha  # noqa: E402  (plan, masks and the metric sweep, shared)


def load(split_json, eval_json, bank, maps_dir, square):
    """Per test image: (defect class, image score, map, mask) at the chosen pixels, and the map's
    image part at the dumped resolution."""
    root = os.path.dirname(os.path.abspath(split_json))
    with open(split_json) as f:
        split = json.load(f)
    masks = {os.path.join(root, t["image"]): t["mask"] and os.path.join(root, t["mask"]) for t in split["test"]}
    with open(eval_json) as f:
        report = json.load(f)
    crop = ha.bank_meta(bank)["crop"]
    out = []
    for im in report["images"]:
        _, m, (w, h) = ha.dumped_map(maps_dir, root, im["path"])
        rw, rh, left, top, _, _ = ha.plan(w, h, crop)
        if left > 0 or top > 0:
            sys.exit(f"{bank}: its geometry crops the image; compare only geometries that see all of it")
        raw = m[-top : -top + rh, -left : -left + rw]
        tw, th = (square, square) if square else (w, h)
        shown = np.asarray(Image.fromarray(raw, mode="F").resize((tw, th), Image.BILINEAR))
        # The report's paths are as eval was given them (relative to where it ran, as here).
        mask_path = masks.get(os.path.abspath(im["path"]))
        if im["defect"] != "good" and not mask_path:
            sys.exit(f"{im['path']}: a defective test image without a mask in {split_json}")
        mask = ha.resized(ha.load_mask(mask_path), th, tw) if mask_path else np.zeros((th, tw), bool)
        out.append((im["defect"], im["score"], shown, mask, raw))
    return out


def metrics(images):
    """Image AUROC, pixel AUROC and PRO over `images` (8-connected regions, FPR up to 0.3)."""
    scores, defect, region, n_regions = [], [], [], 0
    for _, _, m, mask, _ in images:
        lab, n = label(mask, structure=np.ones((3, 3), int))
        region.append(np.where(lab > 0, lab + n_regions, 0).ravel().astype(np.int32))
        n_regions += n
        scores.append(m.ravel())
        defect.append(mask.ravel())
    s, d, r = np.concatenate(scores), np.concatenate(defect), np.concatenate(region)
    sizes = np.bincount(r, minlength=n_regions + 1)
    order = np.argsort(-s, kind="stable")
    s, d, r = s[order], d[order], r[order]
    weight = np.zeros(len(s))
    weight[r > 0] = 1.0 / (sizes[r[r > 0]] * max(n_regions, 1))
    pixel_auroc, pro = ha.pixel_metrics(s, d, weight)
    good = [i[1] for i in images if i[0] == "good"]
    bad = [i[1] for i in images if i[0] != "good"]
    return ha.auroc(bad, good), pixel_auroc, pro


def main():
    args = sys.argv[1:]
    square, peaks = None, None
    if "--square" in args:
        i = args.index("--square")
        square = int(args[i + 1])
        del args[i : i + 2]
    if "--peak" in args:
        i = args.index("--peak")
        peaks = [float(v) for v in args[i + 1].split(",")]
        del args[i : i + 2]
    if len(args) != 4:
        sys.exit(__doc__)
    images = load(*args, square)
    where = f"{square} x {square} per image" if square else "each image's own pixels"
    print(f"{args[1]}: pixel metrics at {where}")
    print("| defects | images | image AUROC | pixel AUROC | PRO |")
    print("|---|---|---|---|---|")
    classes = sorted({i[0] for i in images if i[0] != "good"})
    for cls in classes + ["all"]:
        chosen = [i for i in images if i[0] == "good" or cls in ("all", i[0])]
        ia, pa, pro = metrics(chosen)
        n = sum(1 for i in chosen if i[0] != "good")
        print(f"| {cls} | {n} | {ha.pct(ia)} | {ha.pct(pa)} | {ha.pct(pro)} |")
    if peaks is not None:
        print_peaks(images, classes, peaks)


def print_peaks(images, classes, sigmas):
    """Image AUROC per class: eval's score, then each image's map peak after each extra blur."""
    print("| image score | all | " + " | ".join(classes) + " |")
    print("|---" * (len(classes) + 2) + "|")
    rows = [("eval's score", [i[1] for i in images])]
    for s in sigmas:
        rows.append((f"map peak, extra blur {s:g} px", [float((gaussian_filter(i[4], s) if s else i[4]).max()) for i in images]))
    for name, scores in rows:
        good = [v for i, v in zip(images, scores) if i[0] == "good"]
        per = [ha.auroc([v for i, v in zip(images, scores) if i[0] not in ("good",) and c in ("all", i[0])], good) for c in ["all"] + classes]
        print(f"| {name} | " + " | ".join(ha.pct(a) for a in per) + " |")


if __name__ == "__main__":
    main()
