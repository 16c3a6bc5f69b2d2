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

Masks are brought to each map's size as eval brings them (Pillow's antialiased bilinear resize,
then >= 128, like `data::load_mask`), so the `all` row reproduces eval's own figures: when the bank
records the paper's centre crop (`{"resize": R, "crop": C}`) and the map is C x C, the mask is
resized so its shorter side is R and its centre C x C kept, the region the map covers; otherwise
the whole mask is resized to the map's height x width, which is right for a squashed square map
and for a map of the whole image at any size (a map at the image's size uses the mask as it is).
Needs numpy, scipy and Pillow (the setup venv has them).
"""
import json
import os
import struct
import sys

import numpy as np
from scipy.ndimage import label

PRO_MAX_FPR = 0.3
CLASSES = ["small", "medium", "large"]
POSITIONS = ["centre", "end"]


def bank_crop(bank):
    """The bank's centre-crop setting {"resize", "crop"}, or None (read from the safetensors header)."""
    try:
        with open(bank, "rb") as f:
            n = struct.unpack("<Q", f.read(8))[0]
            header = json.loads(f.read(n))
        meta = json.loads(header.get("__metadata__", {}).get("patchcore", "{}"))
    except (OSError, ValueError, struct.error):
        return None

    def find(node):
        if isinstance(node, dict):
            if "resize" in node and "crop" in node:
                return node
            for v in node.values():
                hit = find(v)
                if hit:
                    return hit
        return None

    return find(meta)


def resized(mask, h, w):
    """The mask resized to h x w as eval resizes masks (Pillow's antialiased bilinear, then >= 128)."""
    from PIL import Image  # the setup venv has Pillow (torchvision needs it)

    if mask.shape == (h, w):
        return mask >= 128
    return np.asarray(Image.fromarray(mask).resize((w, h), Image.BILINEAR)) >= 128


def mask_for_map(mask, shape, crop):
    """The part of `mask` (uint8, 0/255) that a map of `shape` covers, at the map's size."""
    h, w = shape
    if crop and h == w == crop["crop"]:
        r, c = crop["resize"], crop["crop"]
        mh, mw = mask.shape
        # torchvision Resize(r): the shorter side becomes r, the other keeps the aspect (truncated).
        nh, nw = (r, int(r * mw / mh)) if mh <= mw else (int(r * mh / mw), r)
        m = resized(mask, nh, nw)
        top, left = int(round((nh - c) / 2.0)), int(round((nw - c) / 2.0))
        return m[top : top + c, left : left + c]
    return resized(mask, h, w)


def load_mask(path):
    from PIL import Image

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
    crop = bank_crop(os.path.join(run, "bank.safetensors"))
    maps_dir = os.path.join(run, "maps")
    images = []
    for im in report["images"]:
        rel = os.path.relpath(im["path"], data)
        m = np.load(os.path.join(maps_dir, os.path.splitext(rel)[0] + ".npy")).astype(np.float32)
        group = group_of(im["defect"])
        if group is None:
            mask = np.zeros(m.shape, bool)
        else:
            stem = os.path.splitext(os.path.basename(rel))[0]
            mask = load_mask(os.path.join(data, "ground_truth", im["defect"], stem + "_mask.png"))
            mask = mask_for_map(mask, m.shape, crop)
        images.append(dict(score=im["score"], group=group, map=m, mask=mask))
    mapping = (
        f"mask resized to shorter side {crop['resize']}, centre {crop['crop']} kept"
        if crop and all(i["map"].shape == (crop["crop"],) * 2 for i in images)
        else "whole mask resized to the map's size"
    )
    shapes = sorted({i["map"].shape for i in images})
    note = f"maps {shapes[0][1]}x{shapes[0][0]}" + (f" to {shapes[-1][1]}x{shapes[-1][0]}" if len(shapes) > 1 else "")

    # Every pixel once, sorted by descending score; groups pick their pixels in that order.
    scores = np.concatenate([i["map"].ravel() for i in images])
    defect = np.concatenate([i["mask"].ravel() for i in images])
    owner = np.concatenate([np.full(i["map"].size, k, np.int32) for k, i in enumerate(images)])
    region = np.zeros(len(scores), np.int32)  # global region id + 1 for defect pixels
    offset, n_regions = 0, 0
    for i in images:
        lab, n = label(i["mask"], structure=np.ones((3, 3), int))
        lab = lab.ravel().astype(np.int32)
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
            + ("" if agree else " (**differ from the `all` row: the masks were mapped otherwise than eval maps them**)")
        )
    print()
    print("\n".join(notes))


if __name__ == "__main__":
    main()
