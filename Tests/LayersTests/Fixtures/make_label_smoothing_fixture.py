#!/usr/bin/env python3
"""Writes label_smoothing_fixture.safetensors: PyTorch's cross-entropy with label smoothing
(torch.nn.functional.cross_entropy(logits, labels, label_smoothing=ε, reduction="sum")) and its gradient with
respect to the logits, for SoftmaxCrossEntropy's tests.

Re-running
----------
PyTorch is never a dependency of ddp-train; use a throwaway virtual environment outside the repository:

    python3 -m venv /tmp/torchvenv
    /tmp/torchvenv/bin/pip install torch numpy safetensors
    /tmp/torchvenv/bin/python Tests/LayersTests/Fixtures/make_label_smoothing_fixture.py

(from the repository root; the output is written next to this script whatever the working directory).
Deterministic (torch.manual_seed(20261206), CPU): running it twice writes byte-identical files.

Contents (float32, no __metadata__): logits [8, 10] (float32 draws, spread ×4), labels [8] (class indices stored
as float32); for each ε in 0, 0.1 and 0.35 (named by 1000·ε: 0, 100, 350): loss_<ε> [1], the summed loss computed
in float64 from the float32 logits, and grad_<ε> [8, 10], its gradient with respect to the logits (float64, then
rounded to float32).
"""
import hashlib
import os

import torch
import torch.nn.functional as F
from safetensors.torch import save_file

OUTPUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "label_smoothing_fixture.safetensors")


def main():
    torch.manual_seed(20261206)
    logits = (torch.randn(8, 10) * 4).float()
    labels = torch.tensor([3, 0, 9, 9, 5, 1, 7, 2])
    tensors = {"logits": logits.contiguous(), "labels": labels.float()}
    for epsilon in (0.0, 0.1, 0.35):
        z = logits.double().clone().requires_grad_(True)
        loss = F.cross_entropy(z, labels, label_smoothing=epsilon, reduction="sum")
        loss.backward()
        name = str(round(epsilon * 1000))
        tensors[f"loss_{name}"] = loss.detach().float().reshape(1)
        tensors[f"grad_{name}"] = z.grad.float().contiguous()
    save_file(tensors, OUTPUT)
    digest = hashlib.sha256(open(OUTPUT, "rb").read()).hexdigest()
    print(f"wrote {OUTPUT} ({len(tensors)} tensors, sha256 {digest})")


if __name__ == "__main__":
    main()
