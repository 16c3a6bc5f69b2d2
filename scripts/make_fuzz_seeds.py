"""Writes the seed inputs of the fuzz targets that torch and Pillow make: small `.pth` files for
the `pickle` (legacy format) and `zip` targets and small images for the `image` target, under tests/fuzz_corpus/<target>/.
(The `bank` seeds are written by the Rust code itself: see `tests/fuzz.rs`.)

Run once with the setup venv's python (~/.cache/patchcore/torch-2.13.0/bin/python) when the
seeds should change; the outputs are committed, so neither the tests nor the fuzzers need torch
or Pillow. Seeds are tiny on purpose: a fuzzer mutates small inputs far faster, and every
structure the readers handle (each pickle opcode torch emits, zip records, image header fields)
already appears at this size.
"""
import collections
import io
import os
import sys

import numpy as np
import torch
from PIL import Image

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(REPO, "tests", "fuzz_corpus")


def write(target, name, data):
    folder = os.path.join(OUT, target)
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, name), "wb") as f:
        f.write(data)


def torch_bytes(obj, zip_format):
    buf = io.BytesIO()
    torch.save(obj, buf, _use_new_zipfile_serialization=zip_format)
    return buf.getvalue()


def pth_seeds():
    g = torch.Generator().manual_seed(0)
    sd = collections.OrderedDict()
    sd["conv.weight"] = torch.randn(2, 1, 1, 1, generator=g)
    sd["bn.num_batches_tracked"] = torch.tensor(3)
    sd["half"] = torch.randn(3, generator=g).half()
    sd["flag"] = torch.tensor([True, False])
    x = torch.randn(2, 3, generator=g)
    # Views sharing one storage, a transposed one and a stride-0 one: the strided-build paths.
    sd["x"], sd["x.t"], sd["x.row"] = x, x.t(), x[1]
    sd["expanded"] = torch.arange(2.0).expand(3, 2)
    sd["param"] = torch.nn.Parameter(torch.ones(1))
    sd._metadata = collections.OrderedDict([("", {"version": 1}), ("bn", {"version": 2})])
    nested = {"state_dict": sd, "epoch": 3, "lr": 0.5, "names": ["a"], "big": 2**40}
    for zip_format, target in [(False, "pickle"), (True, "zip")]:
        write(target, "seed-flat.pth", torch_bytes(sd, zip_format))
        write(target, "seed-nested.pth", torch_bytes(nested, zip_format))


def image_seeds():
    rng = np.random.default_rng(0)
    rgb = Image.fromarray(rng.integers(0, 256, (6, 8, 3), dtype=np.uint8), "RGB")
    gray = rgb.convert("L")
    rgba = Image.fromarray(rng.integers(0, 256, (5, 4, 4), dtype=np.uint8), "RGBA")
    gray16 = Image.fromarray(rng.integers(0, 65536, (4, 7), dtype=np.uint16))
    tall = Image.fromarray(rng.integers(0, 256, (9, 2, 3), dtype=np.uint8), "RGB")

    def save(img, name, fmt, **kwargs):
        buf = io.BytesIO()
        img.save(buf, fmt, **kwargs)
        write("image", name, buf.getvalue())

    save(rgb, "seed-rgb.png", "PNG")
    save(gray, "seed-gray.png", "PNG")
    save(rgba, "seed-rgba.png", "PNG")
    save(gray16, "seed-gray16.png", "PNG")
    save(rgb.convert("P", palette=Image.ADAPTIVE, colors=4), "seed-palette.png", "PNG")
    save(tall, "seed-tall.png", "PNG")
    save(rgb, "seed-baseline.jpg", "JPEG", quality=50)
    save(rgb, "seed-progressive.jpg", "JPEG", quality=50, progressive=True)
    save(gray, "seed-gray.jpg", "JPEG", quality=50)
    save(rgb, "seed-rgb.tiff", "TIFF")
    save(rgb, "seed-lzw.tiff", "TIFF", compression="tiff_lzw")
    save(gray16, "seed-gray16.tiff", "TIFF")
    save(tall, "seed-rgb.bmp", "BMP")
    save(gray, "seed-gray.bmp", "BMP")


if __name__ == "__main__":
    pth_seeds()
    image_seeds()
