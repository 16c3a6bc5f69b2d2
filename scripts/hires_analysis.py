"""Per size class and position metrics for the high-resolution benchmark (scripts/hires_benchmark.sh).

    python scripts/hires_analysis.py DATA RUN [RUN ...]

DATA is the category folder `patchcore synth --kind long` wrote; each RUN is a folder holding
`eval.json` (`patchcore eval --json`), `maps/` (`--dump-maps`), `bank.safetensors` and `flags.txt`.
Prints one markdown table: per configuration, rows `all`, `small`, `medium`, `large` (defects 3-10,
10-20, 20-40 px across), `centre` and `end` (middle or outer thirds of the long axis).

- image AUROC: the group's defective images against every good test image (sklearn's tie rule);
- pixel AUROC and PRO (AUPRO to FPR 0.3, 8-connected regions, exact threshold sweep as in
  src/metrics.rs): the group's defective images plus every good image, at each dumped map's size;
- `masks in view`: how many of the group's defect masks keep any pixel in the map: a centre-crop
  map cannot show defects outside the crop, and a mask shrunk to a small map loses defects thinner
  than a few source pixels per map pixel. Image AUROC counts every defective image regardless.

Masks are brought to each map as eval brings them (`data::load_mask`): the bank's geometry (`crop` in
its metadata) is replayed in Python (`plan`, the same rules as src/data/preprocess.rs): the paper's
centre crop, the squash, or the whole image at the bank's scale centred in its input, so a shorter
bar's mask lands where the bar sits in the map. The mask is resized as the image is (Pillow's
antialiased bilinear) then binarised at >= 128, and pixels of padding are left out of the pixel
metrics as eval leaves them out, so the `all` row reproduces eval's own figures. The bank's stored
calibration geometry (where the Rust code placed each calibration image) is recomputed first, and a
disagreement stops the analysis. `python scripts/hires_analysis.py --self-check` checks `plan`
against cases of the Rust tests.
Needs numpy, scipy and Pillow (the setup venv has them).
"""
import json
import math
import os
import struct
import sys

import numpy as np
from PIL import Image
from scipy.ndimage import label

PRO_MAX_FPR = 0.3
CLASSES = ["small", "medium", "large"]
POSITIONS = ["centre", "end"]


WHOLE_ALIGN = 8  # src/data/preprocess.rs: a whole input within one grid cell of the image fills it


def bank_meta(bank):
    """The bank's `patchcore` metadata (from the safetensors header)."""
    try:
        with open(bank, "rb") as f:
            n = struct.unpack("<Q", f.read(8))[0]
            header = json.loads(f.read(n))
        return json.loads(header["__metadata__"]["patchcore"])
    except (OSError, ValueError, KeyError, struct.error) as e:
        sys.exit(f"{bank}: cannot read the bank's metadata ({e}); the analysis needs its geometry")


def round_half_away(v):
    """Rust's f64::round (halves away from zero), for non-negative v."""
    return math.floor(v + 0.5)


def center_crop_offset(n, crop):
    """torchvision center_crop's offset (round half to even), negative = zero padding."""
    if crop > n:
        return -((crop - n) // 2)
    q, odd = divmod(n - crop, 2)
    return q + 1 if odd and q % 2 == 1 else q


def plan(w, h, crop):
    """Where a w x h image goes in the model input under the bank's `crop` (src/data/preprocess.rs
    `plan`): (resized width, resized height, left, top, input width, input height); the input shows
    the resized image's pixels from (left, top) on, and a negative offset is padding."""
    (kind, p), = crop.items()
    if kind == "center":
        r, c = max(p["resize"], 1), max(p["crop"], 1)
        short, long_ = (w, h) if w <= h else (h, w)
        # torchvision Resize(r): the shorter side becomes r, the other int(r * long / short).
        new_long = max(int(r * long_ / max(short, 1)), 1)
        rw, rh = (r, new_long) if w <= h else (new_long, r)
        return rw, rh, center_crop_offset(rw, c), center_crop_offset(rh, c), c, c
    if kind == "full":
        n = max(p["size"], 1)
        return n, n, 0, 0, n, n
    if kind == "whole":
        ow, oh = max(p["width"], 1), max(p["height"], 1)
        s = min(p["long"] / max(p["native"], 1), ow / max(w, 1), oh / max(h, 1))
        g = p.get("snap", 0)  # the grid a padded part is placed on (0: centred as it comes)

        def size(n, out):
            n = round_half_away(max(n, 1) * s)
            snapped = round_half_away(n / g) * g if g else 0
            return min(max(snapped if snapped > 0 else n, 1), out)

        def offset(out, n):
            centre = (out - n) // 2
            return centre // g * g if g else centre

        rw, rh = size(w, ow), size(h, oh)
        if ow - rw < WHOLE_ALIGN and oh - rh < WHOLE_ALIGN:
            return ow, oh, 0, 0, ow, oh  # fills the input, stretched under one cell
        return rw, rh, -offset(ow, rw), -offset(oh, rh), ow, oh
    sys.exit(f"unknown geometry {kind!r} in the bank")


def geometry(w, h, crop):
    """The plan as the bank's `Geometry` (scale, offset, input size), to compare with stored ones."""
    rw, rh, left, top, ow, oh = plan(w, h, crop)
    return dict(scale_x=rw / max(w, 1), scale_y=rh / max(h, 1), off_x=float(left), off_y=float(top), width=ow, height=oh)


def content(w, h, crop):
    """Which input pixels show the image (False: padding), as `Geometry::content_mask` computes it."""
    g = geometry(w, h, crop)

    def span(off, scale, orig, n):
        start = min(max(math.ceil(-off), 0), n)
        end = min(max(math.floor(orig * scale - off), 0), n)
        return start, max(end, start)

    (x0, x1), (y0, y1) = span(g["off_x"], g["scale_x"], w, g["width"]), span(g["off_y"], g["scale_y"], h, g["height"])
    keep = np.zeros((g["height"], g["width"]), bool)
    keep[y0:y1, x0:x1] = True
    return keep


def resized(mask, h, w):
    """The mask resized to h x w as eval resizes masks (Pillow's antialiased bilinear, then >= 128)."""
    if mask.shape == (h, w):
        return mask >= 128
    return np.asarray(Image.fromarray(mask).resize((w, h), Image.BILINEAR)) >= 128


def mask_for_map(mask, crop):
    """`mask` (uint8, 0/255, the image's size) where the image sits in the model input, as
    `data::load_mask` maps it: resized as the image, cropped or padded with no defect."""
    rw, rh, left, top, ow, oh = plan(mask.shape[1], mask.shape[0], crop)
    m = resized(mask, rh, rw)
    out = np.zeros((oh, ow), bool)
    x0, y0 = max(-left, 0), max(-top, 0)  # first input pixel that shows the image
    x1, y1 = min(ow, rw - left), min(oh, rh - top)
    if x1 > x0 and y1 > y0:
        out[y0:y1, x0:x1] = m[y0 + top : y1 + top, x0 + left : x1 + left]
    return out


def check_calibration_geometry(meta, bank):
    """Recomputes where the Rust code placed each calibration image; any difference stops the run."""
    for g in meta.get("calibration_geometry", []):
        ours = geometry(g["orig_width"], g["orig_height"], meta["crop"])
        theirs = {k: g[k] for k in ours}
        if ours != theirs:
            sys.exit(f"{bank}: this script places a {g['orig_width']} x {g['orig_height']} image at {ours}, "
                     f"the bank at {theirs}: its geometry rules differ from src/data/preprocess.rs")


def self_check():
    """`plan` and `content` against cases of the Rust tests (tests/data.rs, src/decide/roi.rs)."""
    whole = {"whole": {"width": 504, "height": 1264, "long": 1263, "native": 1263}}
    assert plan(500, 1263, whole) == (504, 1264, 0, 0, 504, 1264)
    g = geometry(800, 400, whole)
    assert (g["scale_x"], g["scale_y"]) == (504 / 800, 504 / 800), g
    rows = np.flatnonzero(content(800, 400, whole)[:, 0])
    assert len(rows) == 252 and rows[0] == (1264 - 252) // 2, rows
    centre = {"center": {"resize": 256, "crop": 224}}
    g = geometry(300, 200, centre)
    assert (g["scale_x"], g["scale_y"], g["off_x"], g["off_y"]) == (1.28, 1.28, 80.0, 16.0), g
    assert plan(333, 250, centre)[0] == 340 and plan(333, 250, centre)[2] == 58
    assert plan(341, 256, centre)[2] == 58 and plan(343, 256, centre)[2] == 60
    assert content(300, 200, centre).all()
    full = {"full": {"size": 64}}
    assert geometry(120, 300, full) == dict(scale_x=64 / 120, scale_y=64 / 300, off_x=0.0, off_y=0.0, width=64, height=64)
    # A 100 x 400 image in a 16 x 16 input: 4 columns of image, 6 of padding each side.
    small = {"whole": {"width": 16, "height": 16, "long": 16, "native": 400}}
    assert content(100, 400, small)[0].tolist() == [False] * 6 + [True] * 4 + [False] * 6
    # A mask follows its image: a defect at a short image's left end lands beside the padding.
    mask = np.zeros((400, 100), np.uint8)
    mask[:, :50] = 255
    m = mask_for_map(mask, small)
    assert m[0].tolist() == [False] * 6 + [True] * 2 + [False] * 8, m[0]
    # Parts on the grid (tests/data.rs: padded_parts_sit_on_the_grid_and_older_banks_centre_them).
    snapped = {"whole": {"width": 128, "height": 128, "long": 128, "native": 128, "snap": 8}}
    assert plan(88, 128, snapped) == (88, 128, -16, 0, 128, 128)
    assert plan(85, 128, snapped) == (88, 128, -16, 0, 128, 128)
    assert plan(100, 37, snapped) == (104, 40, -8, -40, 128, 128)
    assert plan(3, 3, snapped) == (3, 3, -56, -56, 128, 128)
    assert plan(100, 37, {"whole": {"width": 128, "height": 128, "long": 128, "native": 128}}) == (100, 37, -14, -45, 128, 128)
    print("self-check passed")


def dumped_map(maps_dir, data, path):
    """The `--dump-maps` map of the image at `path` (named after its path below `data`), with that
    relative path and the image's (width, height)."""
    rel = os.path.relpath(path, data)
    m = np.load(os.path.join(maps_dir, os.path.splitext(rel)[0] + ".npy")).astype(np.float32)
    with Image.open(path) as img:
        return rel, m, img.size


def load_mask(path):
    return np.asarray(Image.open(path).convert("L"))


def auroc(pos, neg):
    """P(pos > neg) + P(pos == neg) / 2 over all pairs (small sets: image scores)."""
    pos, neg = np.asarray(pos, np.float64), np.asarray(neg, np.float64)
    if len(pos) == 0 or len(neg) == 0:
        return None
    greater = (pos[:, None] > neg[None, :]).sum()
    equal = (pos[:, None] == neg[None, :]).sum()
    return (greater + 0.5 * equal) / (len(pos) * len(neg))


def pixel_metrics(scores, is_defect, weight):
    """Pixel AUROC and PRO from pixels already sorted by descending score.

    `weight` is each defect pixel's share of the PRO mean (1 / (region size * number of regions)).
    One (FPR, TPR, PRO) point per distinct score, ties merged, from (0, 0)."""
    n_pos, n_neg = is_defect.sum(), (~is_defect).sum()
    if n_pos == 0 or n_neg == 0:
        return None, None
    last = np.flatnonzero(np.diff(scores) != 0)
    ends = np.concatenate([last, [len(scores) - 1]])
    fp = np.cumsum(~is_defect)[ends] / n_neg
    tp = np.cumsum(is_defect)[ends] / n_pos
    pro = np.cumsum(weight)[ends]
    fp, tp, pro = (np.concatenate([[0.0], a]) for a in (fp, tp, pro))
    pixel_auroc = np.sum((fp[1:] - fp[:-1]) * (tp[1:] + tp[:-1]) / 2)
    # PRO: trapezoid up to PRO_MAX_FPR, the last segment cut with linear interpolation.
    keep = fp <= PRO_MAX_FPR
    f, p = fp[keep], pro[keep]
    area = np.sum((f[1:] - f[:-1]) * (p[1:] + p[:-1]) / 2)
    if f[-1] < PRO_MAX_FPR and len(f) < len(fp):
        j = len(f)
        t = (PRO_MAX_FPR - fp[j - 1]) / (fp[j] - fp[j - 1])
        p_cut = pro[j - 1] + t * (pro[j] - pro[j - 1])
        area += (PRO_MAX_FPR - fp[j - 1]) * (pro[j - 1] + p_cut) / 2
    return pixel_auroc, area / PRO_MAX_FPR


def group_of(defect):
    """(size class, position) of a test folder name, or None for good images."""
    if defect == "good":
        return None
    cls, pos = defect.split("_", 1)
    return cls, pos


def analyse(data, run):
    with open(os.path.join(run, "eval.json")) as f:
        report = json.load(f)
    bank = os.path.join(run, "bank.safetensors")
    meta = bank_meta(bank)
    crop = meta["crop"]
    check_calibration_geometry(meta, bank)
    maps_dir = os.path.join(run, "maps")
    images = []
    for im in report["images"]:
        rel, m, (w, h) = dumped_map(maps_dir, data, im["path"])
        keep = content(w, h, crop)
        if m.shape != keep.shape:
            sys.exit(f"{rel}: map {m.shape[1]} x {m.shape[0]} is not the bank's input {keep.shape[1]} x {keep.shape[0]}")
        group = group_of(im["defect"])
        if group is None:
            mask = np.zeros(m.shape, bool)
        else:
            stem = os.path.splitext(os.path.basename(rel))[0]
            mask = load_mask(os.path.join(data, "ground_truth", im["defect"], stem + "_mask.png"))
            mask = mask_for_map(mask, crop)
        # Padding is no pixel of the image: eval leaves it out of the pixel metrics.
        images.append(dict(score=im["score"], group=group, map=m, mask=mask, keep=keep))
    padded = sum(1 for i in images if not i["keep"].all())
    mapping = f"geometry {json.dumps(crop)}" + (f", {padded} of {len(images)} maps with padding left out" if padded else "")
    shapes = sorted({i["map"].shape for i in images})
    note = f"maps {shapes[0][1]}x{shapes[0][0]}" + (f" to {shapes[-1][1]}x{shapes[-1][0]}" if len(shapes) > 1 else "")

    # Every pixel once, sorted by descending score; groups pick their pixels in that order.
    scores = np.concatenate([i["map"][i["keep"]] for i in images])
    defect = np.concatenate([i["mask"][i["keep"]] for i in images])
    owner = np.concatenate([np.full(i["keep"].sum(), k, np.int32) for k, i in enumerate(images)])
    region = np.zeros(len(scores), np.int32)  # global region id + 1 for defect pixels
    offset, n_regions = 0, 0
    for i in images:
        lab, n = label(i["mask"], structure=np.ones((3, 3), int))
        lab = lab[i["keep"]].astype(np.int32)
        region[offset : offset + lab.size] = np.where(lab > 0, lab + n_regions, 0)
        offset += lab.size
        n_regions += n
    sizes = np.bincount(region, minlength=n_regions + 1)
    # About 30 bytes per map pixel at the peak (the int64 order and the sorted copies).
    order = np.argsort(-scores, kind="stable")
    scores, defect, owner, region = scores[order], defect[order], owner[order], region[order]
    del order

    good = [i["score"] for i in images if i["group"] is None]
    groups = [("all", lambda g: True)]
    groups += [(c, lambda g, c=c: g[0] == c) for c in CLASSES]
    groups += [(p, lambda g, p=p: g[1] == p) for p in POSITIONS]
    rows = []
    for name, member in groups:
        chosen = [k for k, i in enumerate(images) if i["group"] is None or member(i["group"])]
        bad = [images[k] for k in chosen if images[k]["group"] is not None]
        in_view = sum(1 for i in bad if i["mask"].any())
        sel = np.isin(owner, chosen)
        s, d, r = scores[sel], defect[sel], region[sel]
        regions = np.unique(r[r > 0])
        weight = np.zeros(len(s))
        if len(regions):
            weight[r > 0] = 1.0 / (sizes[r[r > 0]] * len(regions))
        pa, pro = pixel_metrics(s, d, weight)
        ia = auroc([i["score"] for i in bad], good)
        rows.append((name, len(bad), in_view, ia, pa, pro))
    return report, mapping, note, rows


def pct(v):
    return "n/a" if v is None else f"{100 * v:.2f}"


def main():
    if sys.argv[1:] == ["--self-check"]:
        return self_check()
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    data = os.path.abspath(sys.argv[1])
    print("| configuration | defects | masks in view | image AUROC | pixel AUROC | PRO |")
    print("|---|---|---|---|---|---|")
    notes = []
    for run in sys.argv[2:]:
        with open(os.path.join(run, "flags.txt")) as f:
            flags = f.read().strip() or "(defaults)"
        report, mapping, note, rows = analyse(data, run)
        for name, n, in_view, ia, pa, pro in rows:
            label_ = f"`{flags}`" if name == "all" else ""
            print(f"| {label_} | {name} | {in_view}/{n} | {pct(ia)} | {pct(pa)} | {pct(pro)} |")
        ours = rows[0][3:]
        theirs = (report["image_auroc"], report["pixel_auroc"], report["pro"])
        agree = all(
            (a is None) == (b is None) and (a is None or abs(a - b) < 1e-4) for a, b in zip(ours, theirs)
        )
        notes.append(
            f"- `{flags}`: {note}; {mapping}; eval's own figures over all test images: "
            f"{pct(theirs[0])} / {pct(theirs[1])} / {pct(theirs[2])}"
            + ("" if agree else " (**differ from the `all` row: this analysis does not reproduce eval**)")
        )
    print()
    print("\n".join(notes))


if __name__ == "__main__":
    main()
