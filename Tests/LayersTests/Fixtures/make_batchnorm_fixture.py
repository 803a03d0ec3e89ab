#!/usr/bin/env python3
"""Writes batchnorm_fixture.safetensors: PyTorch's training-mode forward and backward of a small network with
batch normalisation (BatchNorm2d after a convolution, BatchNorm1d after a linear layer), the running statistics
one training forward leaves, and the evaluation-mode logits that use them.

Re-running
----------
PyTorch is never a dependency of ddp-train; use a throwaway virtual environment outside the repository:

    python3 -m venv /tmp/torchvenv
    /tmp/torchvenv/bin/pip install torch numpy safetensors
    /tmp/torchvenv/bin/python Tests/LayersTests/Fixtures/make_batchnorm_fixture.py

(from the repository root; the output is written next to this script whatever the working directory).
The script is deterministic (torch.manual_seed(20261206), CPU only): running it twice writes byte-identical files.

The network, as `seq:conv4k3p1,bn,relu,pool2,flatten,linear6,bn,relu,linear5` on [2, 8, 8] samples:

    torch.nn.Sequential(
      torch.nn.Conv2d(2, 4, kernel_size=3, stride=1, padding=1),   # 0   -> [N,4,8,8]
      torch.nn.BatchNorm2d(4),                                      # 1
      torch.nn.ReLU(),                                              # 2
      torch.nn.MaxPool2d(kernel_size=2, stride=2),                  # 3   -> [N,4,4,4]
      torch.nn.Flatten(),                                           # 4   -> [N,64]
      torch.nn.Linear(64, 6),                                       # 5
      torch.nn.BatchNorm1d(6),                                      # 6
      torch.nn.ReLU(),                                              # 7
      torch.nn.Linear(6, 5),                                        # 8
    )

Conv and linear parameters are PyTorch's default initialisation scaled by 2 (biases nonzero); the batch norms'
γ ~ U(0.5, 1.5) and β ~ U(−0.5, 0.5), and their running statistics start at running_mean ~ U(−0.5, 0.5) and
running_var ~ U(0.5, 2) (not the defaults 0 and 1, so the update is seen to take them in); all drawn as float32.
The input is uniform in [0, 1) + the sample's index (so the batch's statistics are far from 0 and 1); N = 4.
The forward and backward are computed in float64 (model and input cast with .double()) from those float32 values.
loss = F.cross_entropy(logits, labels, reduction='mean').

Contents (every tensor float32, contiguous, row-major; no __metadata__):

    input [4,2,8,8], labels [4] (class indices 0, 3, 4, 1 stored as float32)
    0.weight, 0.bias, 1.weight, 1.bias, 5.weight, 5.bias, 6.weight, 6.bias, 8.weight, 8.bias
    1.running_mean, 1.running_var, 6.running_mean, 6.running_var   before the training forward
    logits [4,5], loss [1]                                         training mode (batch statistics)
    grad.<parameter> for each parameter above, grad.input [4,2,8,8]
    after.1.running_mean, after.1.running_var, after.6.running_mean, after.6.running_var
                                     after that one training forward (momentum 0.1, unbiased variance)
    eval_logits [4,5]                evaluation mode (running statistics after the update), same input

The summary printed reports the smallest |pre-activation| at both ReLUs and the smallest gap between the largest
and second-largest value of a pooling window: far above float32 rounding, so a float32 implementation takes the
same branches.
"""
import hashlib
import os

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.numpy import save_file

SEED = 20261206
HERE = os.path.dirname(os.path.abspath(__file__))
OUTPUT = os.path.join(HERE, "batchnorm_fixture.safetensors")


def build():
    return torch.nn.Sequential(
        torch.nn.Conv2d(2, 4, kernel_size=3, stride=1, padding=1),
        torch.nn.BatchNorm2d(4),
        torch.nn.ReLU(),
        torch.nn.MaxPool2d(kernel_size=2, stride=2),
        torch.nn.Flatten(),
        torch.nn.Linear(64, 6),
        torch.nn.BatchNorm1d(6),
        torch.nn.ReLU(),
        torch.nn.Linear(6, 5),
    )


def f32(t):
    return np.ascontiguousarray(t.detach().cpu().numpy().astype(np.float32))


def main():
    torch.manual_seed(SEED)
    model = build()
    with torch.no_grad():
        for index in (0, 5, 8):
            for p in model[index].parameters():
                p.mul_(2)
        for index in (1, 6):
            bn = model[index]
            bn.weight.copy_(torch.rand_like(bn.weight) + 0.5)
            bn.bias.copy_(torch.rand_like(bn.bias) - 0.5)
            bn.running_mean.copy_(torch.rand_like(bn.running_mean) - 0.5)
            bn.running_var.copy_(torch.rand_like(bn.running_var) * 1.5 + 0.5)
    x32 = (torch.rand(4, 2, 8, 8) + torch.arange(4.0).view(4, 1, 1, 1)).float()
    labels = torch.tensor([0, 3, 4, 1])
    tensors = {"input": f32(x32), "labels": f32(labels.float())}
    for name, value in model.state_dict().items():
        if not name.endswith("num_batches_tracked"):
            tensors[name] = f32(value)

    model = model.double().train()
    x = x32.double().requires_grad_(True)
    pre_relu = {}
    model[1].register_forward_hook(lambda m, i, o: pre_relu.__setitem__("1", o.detach()))
    model[6].register_forward_hook(lambda m, i, o: pre_relu.__setitem__("6", o.detach()))
    pooled_input = {}
    model[3].register_forward_hook(lambda m, i, o: pooled_input.__setitem__("x", i[0].detach()))
    logits = model(x)
    loss = F.cross_entropy(logits, labels, reduction="mean")
    loss.backward()
    tensors["logits"] = f32(logits)
    tensors["loss"] = f32(loss.reshape(1))
    for name, p in model.named_parameters():
        tensors["grad." + name] = f32(p.grad)
    tensors["grad.input"] = f32(x.grad)
    for index in (1, 6):
        tensors[f"after.{index}.running_mean"] = f32(model[index].running_mean)
        tensors[f"after.{index}.running_var"] = f32(model[index].running_var)
        assert int(model[index].num_batches_tracked) == 1
    model.eval()
    with torch.no_grad():
        tensors["eval_logits"] = f32(model(x32.double()))

    save_file(tensors, OUTPUT)
    margin = min(float(v.abs().min()) for v in pre_relu.values())
    windows = pooled_input["x"].clamp(min=0).unfold(2, 2, 2).unfold(3, 2, 2).reshape(4, 4, 4, 4, 4)
    top2 = windows.topk(2, dim=-1).values
    gaps = (top2[..., 0] - top2[..., 1])[top2[..., 0] > 0]
    digest = hashlib.sha256(open(OUTPUT, "rb").read()).hexdigest()
    print(f"wrote {OUTPUT} ({len(tensors)} tensors, sha256 {digest})")
    print(f"loss {float(loss.detach()):.6f}; smallest |pre-ReLU| {margin:.3e}; smallest pooling gap {float(gaps.min()):.3e}")


if __name__ == "__main__":
    main()
