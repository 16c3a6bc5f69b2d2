"""Writes the reference fixtures that tests/backbones.rs compares the Rust backbones against.

Run with the setup venv's python (~/.cache/patchcore/torch-2.13.0/bin/python); the test runs it
itself when the fixtures are missing. Outputs go to target/fixtures/ (or the folder given as the
first argument), each written to a temporary name and renamed, so parallel runs never see half a
file; the manifest is written last and marks the set complete.

- wide_resnet50_2_seed0.safetensors: torchvision's wide_resnet50_2 built right after
  torch.manual_seed(0) (its default init), conv1, bn1 and layer1..layer3 only. Later parity tests
  and benchmarks use it; it matches ../shared/data/reference/weights_checksum.json.
- wide_resnet50_2_seed0_io.safetensors: a small input and the eval-mode layer1..layer3 outputs.
- efficientnet_lite{0,1,2}_io.safetensors: inputs and block outputs of the reference
  efficientnet_lite_pytorch model with the real weights from models/, at the native resolution,
  at 224 (lite1/lite2) and at an odd non-square size, all with TF "SAME" padding computed from the
  actual input (the package's dynamic-padding mode).
- efficientnet_lite0_state.pth: the lite0 state dict in torch.save's zip format, to test .pth loading.
"""
import json
import os
import sys

import torch
import torchvision
from efficientnet_lite_pytorch import EfficientNet
from safetensors.torch import load_file, save_file

# Bump when the fixture contents change, together with FIXTURE_VERSION in tests/backbones.rs.
VERSION = 1
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WRN_PREFIXES = ("conv1.", "bn1.", "layer1.", "layer2.", "layer3.")
# Blocks recorded per variant: the first, the last of each stride group, and the last.
LITE_BLOCKS = {
    0: [0, 2, 4, 7, 10, 14, 15],
    1: [0, 3, 6, 10, 14, 19, 20],
    2: [0, 3, 6, 10, 14, 19, 20],
}
LITE_NATIVE = {0: 224, 1: 240, 2: 260}


def atomic_save_safetensors(tensors, path):
    tmp = f"{path}.{os.getpid()}.tmp"
    save_file({k: v.detach().contiguous() for k, v in tensors.items()}, tmp)
    os.replace(tmp, path)


def wide_resnet(out):
    torch.manual_seed(0)
    model = torchvision.models.wide_resnet50_2(weights=None).eval()
    state = {k: v for k, v in model.state_dict().items() if k.startswith(WRN_PREFIXES)}
    atomic_save_safetensors(state, os.path.join(out, "wide_resnet50_2_seed0.safetensors"))

    x = torch.randn(2, 3, 192, 256, generator=torch.Generator().manual_seed(1234))
    with torch.no_grad():
        h = model.maxpool(model.relu(model.bn1(model.conv1(x))))
        l1 = model.layer1(h)
        l2 = model.layer2(l1)
        l3 = model.layer3(l2)
    io = {"input": x, "layer1": l1, "layer2": l2, "layer3": l3}
    atomic_save_safetensors(io, os.path.join(out, "wide_resnet50_2_seed0_io.safetensors"))


def lite_model(variant, image_size):
    """The reference model; image_size None selects padding computed from each input."""
    model = EfficientNet.from_name(f"efficientnet-lite{variant}", image_size=image_size)
    state = load_file(os.path.join(REPO, "models", f"efficientnet_lite{variant}.safetensors"))
    model.load_state_dict(state)
    return model.eval(), state


def block_outputs(model, x, wanted):
    outputs = {}
    with torch.no_grad():
        h = model._swish(model._bn0(model._conv_stem(x)))
        for i, block in enumerate(model._blocks):
            h = block(h)  # drop connect is a no-op in eval mode
            if i in wanted:
                outputs[i] = h
    return outputs


def efficientnet_lite(out, variant):
    model, state = lite_model(variant, None)
    native = LITE_NATIVE[variant]
    wanted = LITE_BLOCKS[variant]
    gen = torch.Generator().manual_seed(100 + variant)
    cases = {"native": torch.rand(1, 3, native, native, generator=gen) * 2 - 1}
    if native != 224:
        cases["s224"] = torch.rand(1, 3, 224, 224, generator=gen) * 2 - 1
    cases["odd"] = torch.rand(2, 3, 197, 250, generator=gen) * 2 - 1

    io = {}
    for case, x in cases.items():
        io[f"{case}.input"] = x
        for i, y in block_outputs(model, x, wanted).items():
            io[f"{case}.block{i}"] = y

    # The package's static padding (fixed at construction for the native size) must agree with
    # the dynamic one at that size; at any other size it would not, which is what the Rust
    # implementation must avoid.
    static, _ = lite_model(variant, native)
    ref = block_outputs(static, cases["native"], wanted)
    for i, y in ref.items():
        assert torch.equal(y, io[f"native.block{i}"]), f"lite{variant} block{i}: static != dynamic"

    atomic_save_safetensors(io, os.path.join(out, f"efficientnet_lite{variant}_io.safetensors"))
    if variant == 0:
        path = os.path.join(out, "efficientnet_lite0_state.pth")
        tmp = f"{path}.{os.getpid()}.tmp"
        torch.save(state, tmp)
        os.replace(tmp, path)


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(REPO, "target", "fixtures")
    os.makedirs(out, exist_ok=True)
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    wide_resnet(out)
    for variant in (0, 1, 2):
        efficientnet_lite(out, variant)
    manifest = os.path.join(out, "backbones_manifest.json")
    tmp = f"{manifest}.{os.getpid()}.tmp"
    with open(tmp, "w") as f:
        json.dump({"version": VERSION, "torch": torch.__version__,
                   "torchvision": torchvision.__version__}, f, indent=1)
    os.replace(tmp, manifest)
    print(f"backbone fixtures v{VERSION} written to {out}")


if __name__ == "__main__":
    main()
