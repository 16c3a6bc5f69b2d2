"""Times the official PatchCore pipeline on this machine: the anchor `patchcore bench` is compared to.

A re-creation of what amazon-science/patchcore-inspection runs with its published settings, with
the same libraries (torch, torchvision, faiss, scipy), so that the ratios compare like with like:
WideResNet-50-2 layer2 + layer3, resize 256 + centre crop 224, batch 2, 3x3 neighbourhoods
(unfold, bilinear alignment of every tap, adaptive average pooling to 1024 per layer and again to
1024), approximate greedy coreset (10 %, 128-d random projection, 10 starting points, the
torch-matmul distance updates), faiss IndexFlatL2 with k = 1, and anomaly maps by bilinear
upsampling plus scipy's Gaussian filter (sigma 4). Weights are torchvision's seed-0 random init:
speed does not depend on their values.

Run through scripts/anchor.sh, which installs faiss-cpu and scipy next to the setup venv.
"""

import argparse
import json
import resource
import time
from pathlib import Path

import faiss
import numpy as np
import scipy.ndimage
import torch
import torch.nn.functional as F
import torchvision
from PIL import Image

MEAN, STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]


def images(folder):
    return sorted(p for p in Path(folder).rglob("*.png") if "ground_truth" not in p.parts)


def batches(paths, size, transform):
    for i in range(0, len(paths), size):
        yield torch.stack([transform(Image.open(p).convert("RGB")) for p in paths[i : i + size]])


def embed(model, x):
    """Patch features (B * 28 * 28, 1024) as the official PatchMaker / Preprocessing / Aggregator."""
    with torch.no_grad():
        h = model.maxpool(model.relu(model.bn1(model.conv1(x))))
        layer2 = model.layer2(model.layer1(h))
        layer3 = model.layer3(layer2)
    per_layer = []
    ref_h, ref_w = layer2.shape[-2:]
    for f in (layer2, layer3):
        b, c, hh, ww = f.shape
        u = F.unfold(f, kernel_size=3, padding=1).reshape(b, c, 3, 3, hh, ww)
        if (hh, ww) != (ref_h, ref_w):
            u = F.interpolate(
                u.reshape(-1, 1, hh, ww), size=(ref_h, ref_w), mode="bilinear", align_corners=False
            ).reshape(b, c, 3, 3, ref_h, ref_w)
        u = u.permute(0, 4, 5, 1, 2, 3).reshape(-1, 1, c * 9)
        per_layer.append(F.adaptive_avg_pool1d(u, 1024).squeeze(1))
    stacked = torch.stack(per_layer, dim=1).reshape(-1, 1, 2 * 1024)
    return F.adaptive_avg_pool1d(stacked, 1024).squeeze(1)


def pairwise(a, b):
    """The official coreset distance: sqrt(clamp(|a|^2 - 2ab + |b|^2, 0))."""
    a2 = a.pow(2).sum(1, keepdim=True)
    b2 = b.pow(2).sum(1, keepdim=True)
    return (a2 - 2 * a @ b.T + b2.T).clamp(min=0).sqrt()


def coreset(features, ratio, seed=0):
    torch.manual_seed(seed)
    n = len(features)
    with torch.no_grad():
        projection = torch.nn.Linear(features.shape[1], 128, bias=False)
        reduced = projection(features)
        starts = np.random.default_rng(seed).choice(n, 10, replace=False)
        anchor = pairwise(reduced, reduced[starts]).mean(dim=1, keepdim=True)
        chosen = []
        for _ in range(int(n * ratio)):
            i = int(torch.argmax(anchor))
            chosen.append(i)
            anchor = torch.cat([anchor, pairwise(reduced, reduced[i : i + 1])], dim=1)
            anchor = anchor.min(dim=1, keepdim=True).values
    return np.array(chosen)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("data", help="an MVTec category folder (train/good, test/*)")
    ap.add_argument("--predict-images", type=int, default=0, help="0 = all test images")
    ap.add_argument("--json")
    args = ap.parse_args()
    torch.set_num_threads(torch.get_num_threads())
    faiss.omp_set_num_threads(torch.get_num_threads())
    transform = torchvision.transforms.Compose(
        [
            torchvision.transforms.Resize(256),
            torchvision.transforms.CenterCrop(224),
            torchvision.transforms.ToTensor(),
            torchvision.transforms.Normalize(MEAN, STD),
        ]
    )
    torch.manual_seed(0)
    model = torchvision.models.wide_resnet50_2().eval()
    train = images(Path(args.data) / "train" / "good")
    test = images(Path(args.data) / "test")
    if args.predict_images:
        test = test[: args.predict_images]

    t0 = time.perf_counter()
    feats = torch.cat([embed(model, x) for x in batches(train, 2, transform)])
    t1 = time.perf_counter()
    bank = feats[coreset(feats, 0.1)].numpy()
    t2 = time.perf_counter()
    index = faiss.IndexFlatL2(bank.shape[1])
    index.add(bank)
    t3 = time.perf_counter()
    fit_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    scores = []
    for x in batches(test, 2, transform):
        rows = embed(model, x).numpy()
        dist, _ = index.search(rows, 1)
        patch = torch.from_numpy(dist.reshape(len(x), 1, 28, 28))
        up = F.interpolate(patch, size=224, mode="bilinear", align_corners=False).numpy()
        for b in range(len(x)):
            scipy.ndimage.gaussian_filter(up[b, 0], sigma=4)
            scores.append(float(dist[b * 784 : (b + 1) * 784].max()))
    t4 = time.perf_counter()

    result = {
        "train_images": len(train),
        "bank_rows": int(bank.shape[0]),
        "features_s": t1 - t0,
        "coreset_s": t2 - t1,
        "fit_s": t3 - t0,
        "fit_peak_rss_mb": fit_rss,
        "predict_images": len(test),
        "predict_ms_per_image": (t4 - t3) * 1000 / max(len(test), 1),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "threads": torch.get_num_threads(),
    }
    print(json.dumps(result, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
