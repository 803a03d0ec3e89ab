#!/usr/bin/env python3
"""Writes cnn_fixture.safetensors: a PyTorch reference forward and backward of a small CNN.

Re-running
----------
PyTorch is never a dependency of ddp-train; use a throwaway virtual environment outside the repository:

    python3 -m venv /work/venv-torch
    /work/venv-torch/bin/pip install torch numpy safetensors
    /work/venv-torch/bin/python Tests/LayersTests/Fixtures/make_cnn_fixture.py

(from the repository root; the output is written next to this script whatever the working directory).
The script is deterministic (torch.manual_seed(20261122), CPU only): running it twice writes byte-identical files.

The network (module indices count every module, as in its state_dict):

    torch.nn.Sequential(
      torch.nn.Conv2d(2, 4, kernel_size=3, stride=1, padding=1),   # 0   -> [N,4,8,8]
      torch.nn.ReLU(),                                              # 1
      torch.nn.MaxPool2d(kernel_size=3, stride=2),                  # 2   -> [N,4,3,3]
      torch.nn.Conv2d(4, 6, kernel_size=3, stride=2, padding=1),    # 3   -> [N,6,2,2]
      torch.nn.ReLU(),                                              # 4
      torch.nn.Flatten(),                                           # 5   -> [N,24]
      torch.nn.Linear(24, 5),                                       # 6
    )

The parameters are PyTorch's default initialisation scaled by 2 (biases included, so they are nonzero), drawn as
float32; the input is uniform in [0, 1) as float32. The forward and backward are then computed in float64 (model
and input cast with .double()) from those float32 values, so the references are exact to float32 precision;
loss = F.cross_entropy(logits, labels, reduction='mean') over the N = 3 samples.

Contents (every tensor float32, contiguous, row-major; no __metadata__):

    input           [3,2,8,8]   NCHW
    labels          [3]         class indices 0, 3, 4 stored as float32
    0.weight        [4,2,3,3]   [out, in, kh, kw]      0.bias [4]
    3.weight        [6,4,3,3]                          3.bias [6]
    6.weight        [5,24]      [out, in]              6.bias [5]
    logits          [3,5]
    loss            [1]         mean cross-entropy (natural log) over the 3 samples
    grad.0.weight, grad.0.bias, grad.3.weight, grad.3.bias, grad.6.weight, grad.6.bias
                                gradients of the mean loss, shaped as their parameters
    grad.input      [3,2,8,8]   gradient of the mean loss with respect to the input
    act.0           [3,4,8,8]   conv 0 output (before ReLU)
    act.2           [3,4,3,3]   max-pool output
    act.3           [3,6,2,2]   conv 3 output (before ReLU)

The summary printed also reports how far the pre-activations of both ReLUs are from 0 and the gap between the
largest and second-largest value of every max-pool window whose maximum is positive: both are far above float32
rounding, so a float32 implementation takes the same ReLU and max-pool branches as this reference.
"""
import hashlib
import os

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.numpy import save_file

SEED = 20261122
HERE = os.path.dirname(os.path.abspath(__file__))
OUTPUT = os.path.join(HERE, "cnn_fixture.safetensors")


def build():
    return torch.nn.Sequential(
        torch.nn.Conv2d(2, 4, kernel_size=3, stride=1, padding=1),
        torch.nn.ReLU(),
        torch.nn.MaxPool2d(kernel_size=3, stride=2),
        torch.nn.Conv2d(4, 6, kernel_size=3, stride=2, padding=1),
        torch.nn.ReLU(),
        torch.nn.Flatten(),
        torch.nn.Linear(24, 5),
    )


def f32(t):
    return np.ascontiguousarray(t.detach().cpu().numpy().astype(np.float32))


def main():
    torch.manual_seed(SEED)
    torch.use_deterministic_algorithms(True)
    model = build()  # float32, PyTorch's default init
    with torch.no_grad():
        for p in model.parameters():
            p.mul_(2.0)
    x32 = torch.rand(3, 2, 8, 8, dtype=torch.float32)
    labels = torch.tensor([0, 3, 4], dtype=torch.long)

    # float64 forward and backward from exactly the float32 values above.
    params32 = {name: p.detach().clone() for name, p in model.state_dict().items()}
    model64 = model.double()
    x = x32.double().requires_grad_(True)
    act0 = model64[0](x)
    act1 = model64[1](act0)
    act2 = model64[2](act1)
    act3 = model64[3](act2)
    act4 = model64[4](act3)
    logits = model64[6](model64[5](act4))
    loss = F.cross_entropy(logits, labels, reduction="mean")
    loss.backward()

    tensors = {
        "input": f32(x32),
        "labels": f32(labels.float()),
        "logits": f32(logits),
        "loss": f32(loss.reshape(1)),
        "grad.input": f32(x.grad),
        "act.0": f32(act0),
        "act.2": f32(act2),
        "act.3": f32(act3),
    }
    for name, p in params32.items():
        assert p.dtype == torch.float32
        tensors[name] = f32(p)
    for name, p in model64.named_parameters():
        tensors["grad." + name] = f32(p.grad)
    # The float32 parameters saved must be exactly those the float64 model used.
    for name, p in model64.state_dict().items():
        assert np.array_equal(p.numpy(), tensors[name].astype(np.float64)), name
    for name, t in tensors.items():
        assert t.dtype == np.float32 and t.flags["C_CONTIGUOUS"], name

    save_file(tensors, OUTPUT)

    # Summary.
    for name in sorted(tensors):
        print(f"  {name:14s} {list(tensors[name].shape)}")
    print(f"loss {loss.item():.9f}  logits argmax {logits.argmax(1).tolist()}  labels {labels.tolist()}")
    with torch.no_grad():
        for label, pre in (("relu 1 (after conv 0)", act0), ("relu 4 (after conv 3)", act3)):
            active = (pre > 0).double().mean().item()
            print(f"{label}: {active:.0%} active, min |pre-activation| {pre.abs().min().item():.3e}")
        windows = F.unfold(act1.reshape(-1, 1, 8, 8), kernel_size=3, stride=2)  # [N*C, 9, 9 windows]
        top2 = windows.topk(2, dim=1).values
        positive = top2[:, 0, :] > 0
        gap = (top2[:, 0, :] - top2[:, 1, :])[positive]
        print(f"max-pool: {positive.sum().item()}/{positive.numel()} windows with positive max, "
              f"min gap to second-largest {gap.min().item():.3e}")
    with open(OUTPUT, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()
    print(f"wrote {OUTPUT} ({os.path.getsize(OUTPUT)} bytes, sha256 {digest})")


if __name__ == "__main__":
    main()
