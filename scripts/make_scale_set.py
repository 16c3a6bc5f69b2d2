"""Writes N training images derived from a folder of good images, for `patchcore bench` at scale.

Each output is a source image (taken in turn) under a seeded flip, a small rotation (+-10 degrees,
edges filled by reflection) and a crop of 85-100 % of the side, resized to 256 x 256 and saved as
PNG. Nothing is written into the repository: the data's licence does not allow redistribution.

    python scripts/make_scale_set.py ../shared/data/mvtec_ad/bottle/train/good 5000 /tmp/scale5000
"""

import random
import sys
from pathlib import Path

from PIL import Image, ImageOps

SIDE = 256


def variant(img: Image.Image, rng: random.Random) -> Image.Image:
    if rng.random() < 0.5:
        img = ImageOps.mirror(img)
    if rng.random() < 0.5:
        img = ImageOps.flip(img)
    w, h = img.size
    pad = w // 6
    wide = reflect_pad(img, pad).rotate(rng.uniform(-10, 10), resample=Image.BILINEAR)
    side = int(w * rng.uniform(0.85, 1.0))
    x0 = pad + rng.randint(0, w - side)
    y0 = pad + rng.randint(0, h - side)
    return wide.crop((x0, y0, x0 + side, y0 + side)).resize((SIDE, SIDE), Image.BILINEAR)


def reflect_pad(img: Image.Image, pad: int) -> Image.Image:
    """Mirror-pads every side by `pad` pixels, so rotation never brings in black corners."""
    w, h = img.size
    out = Image.new(img.mode, (w + 2 * pad, h + 2 * pad))
    mirrored = ImageOps.mirror(img)
    flipped = ImageOps.flip(img)
    both = ImageOps.flip(mirrored)
    for dx in (-1, 0, 1):
        for dy in (-1, 0, 1):
            tile = [[img, flipped], [mirrored, both]][dx != 0][dy != 0]
            out.paste(tile, (pad + dx * w, pad + dy * h))
    return out


def main() -> None:
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    src, n, out = Path(sys.argv[1]), int(sys.argv[2]), Path(sys.argv[3])
    sources = sorted(p for p in src.iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg"))
    if not sources:
        sys.exit(f"no images in {src}")
    out.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        img = Image.open(sources[i % len(sources)]).convert("RGB")
        variant(img, random.Random(i)).save(out / f"{i:05d}.png", compress_level=1)
    print(f"wrote {n} images to {out}")


if __name__ == "__main__":
    main()
