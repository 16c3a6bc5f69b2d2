"""Drifted "good" images for the `update` measurement (README, "Teaching the bank"): a colour cast
applied to every PNG of a folder, written to another folder (keep it outside the repo and shared/).

usage: python scripts/drift.py SRC_DIR OUT_DIR warm2|cold|bright
"""
import glob
import os
import sys

import numpy as np
from PIL import Image

CASTS = {
    "warm2": [1.5, 1.0, 0.6],  # much warmer light: red up 50 %, blue down 40 %
    "cold": [0.7, 1.0, 1.4],  # colder light
    "bright": [1.25, 1.25, 1.25],  # brighter lamp
}

src, out, kind = sys.argv[1], sys.argv[2], sys.argv[3]
os.makedirs(out, exist_ok=True)
for p in sorted(glob.glob(os.path.join(src, "*.png"))):
    a = np.asarray(Image.open(p).convert("RGB")).astype(np.float32) * np.array(CASTS[kind], np.float32)
    Image.fromarray(np.clip(a + 0.5, 0, 255).astype(np.uint8)).save(os.path.join(out, os.path.basename(p)))
