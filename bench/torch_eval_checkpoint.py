#!/usr/bin/env python3
"""Evaluates a ddp-train checkpoint with PyTorch on the Fashion-MNIST test split: an independent cross-check.

    PYTHON bench/torch_eval_checkpoint.py --checkpoint DIR/step-XXXXXXXX [--data-dir DIR] [--batch-size N]

`--checkpoint` is a checkpoint folder holding `model.safetensors` (the file itself is accepted too). The network is
rebuilt from the safetensors header's `__metadata__`: the string under `ddp_train.architecture` is a PyTorch
expression such as `torch.nn.Sequential(torch.nn.Linear(784, 256), torch.nn.ReLU(), ...)` (or with Conv2d,
MaxPool2d, Flatten), evaluated with only `torch` in scope, so only run this on checkpoints you trust. The tensors are
loaded with `load_state_dict(..., strict=True)`, so every name and shape must match the state_dict of that network.

The test split (t10k-images-idx3-ubyte[.gz], t10k-labels-idx1-ubyte[.gz] in `--data-dir`, default
/usr/share/datasets/fashion-mnist) is fed as x = float32(pixel) / 255, then (x - mean) / std per channel when the
metadata holds ddp_train.normalize_mean and ddp_train.normalize_std, shaped [N, *input_shape]
where input_shape is `ddp_train.input_shape` from the metadata when present (comma-separated, e.g. "1,28,28" or
"784"), else [784] when the first module is Linear and [1, 28, 28] otherwise.

Prints `test loss %.6f  test accuracy %.6f` (mean softmax cross-entropy, natural log, over the whole split; the
fraction of argmax hits), then one JSON object on the last line.

PyTorch is never a dependency of ddp-train: run this from a throwaway venv with torch and safetensors installed
(`python3 -m venv VENV && VENV/bin/pip install torch numpy safetensors`).
"""
import argparse
import json
import os
import sys


sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from pytorch_reference import find, read_idx  # noqa: E402  (the IDX reading the speed reference uses)


def first_module(model):
    import torch
    for module in model.modules():
        if not isinstance(module, torch.nn.Sequential):
            return module
    return model


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoint", required=True, help="a checkpoint folder (DIR/step-XXXXXXXX)")
    parser.add_argument("--data-dir", default="/usr/share/datasets/fashion-mnist")
    parser.add_argument("--batch-size", type=int, default=1000, help="evaluation batch (no effect on the result)")
    args = parser.parse_args()

    import torch
    import torch.nn.functional as F
    from safetensors import safe_open
    from safetensors.torch import load_file

    path = args.checkpoint
    if os.path.isdir(path):
        path = os.path.join(path, "model.safetensors")
    if not os.path.isfile(path):
        sys.exit(f"torch_eval_checkpoint.py: {path} not found")
    with safe_open(path, framework="pt") as f:
        metadata = f.metadata() or {}
    expression = metadata.get("ddp_train.architecture")
    if not expression:
        sys.exit(f"torch_eval_checkpoint.py: {path} has no ddp_train.architecture in its __metadata__")
    # ddp_train.modules: Python source of the classes the expression uses beyond torch.nn (Residual, FlatLinear).
    namespace = {"torch": torch}
    exec(metadata.get("ddp_train.modules", ""), namespace)
    model = eval(expression, namespace)
    if not isinstance(model, torch.nn.Module):
        sys.exit(f"torch_eval_checkpoint.py: ddp_train.architecture is not a torch.nn.Module: {expression}")
    model.load_state_dict(load_file(path), strict=True)
    model.eval()

    if metadata.get("ddp_train.input_shape"):
        input_shape = [int(d) for d in metadata["ddp_train.input_shape"].split(",")]
    elif isinstance(first_module(model), torch.nn.Linear):
        input_shape = [784]
    else:
        input_shape = [1, 28, 28]

    pixels, shape = read_idx(find(args.data_dir, "t10k-images-idx3-ubyte"))
    labels, _ = read_idx(find(args.data_dir, "t10k-labels-idx1-ubyte"))
    n = shape[0]
    x_all = torch.frombuffer(bytearray(pixels), dtype=torch.uint8).reshape(n, *input_shape)
    y_all = torch.frombuffer(bytearray(labels), dtype=torch.uint8).long()
    if y_all.numel() != n:
        sys.exit(f"torch_eval_checkpoint.py: {n} test images but {y_all.numel()} labels")

    # --normalize: (x - mean[c]) / std[c] per channel, as the run trained (ddp_train.normalize_mean / _std).
    mean = std = None
    if metadata.get("ddp_train.normalize_mean"):
        channels = input_shape[0] if len(input_shape) == 3 else 1
        view = [1, channels, 1, 1] if len(input_shape) == 3 else [1, 1]
        mean = torch.tensor([float(v) for v in metadata["ddp_train.normalize_mean"].split(",")]).reshape(view)
        std = torch.tensor([float(v) for v in metadata["ddp_train.normalize_std"].split(",")]).reshape(view)

    loss_sum = 0.0
    correct = 0
    with torch.no_grad():
        for start in range(0, n, args.batch_size):
            x = x_all[start:start + args.batch_size].float().div_(255)
            if mean is not None:
                x = (x - mean) / std
            y = y_all[start:start + args.batch_size]
            logits = model(x)
            loss_sum += F.cross_entropy(logits.double(), y, reduction="sum").item()
            correct += (logits.argmax(dim=1) == y).sum().item()
    loss = loss_sum / n
    accuracy = correct / n

    print(f"test loss {loss:.6f}  test accuracy {accuracy:.6f}")
    result = {
        "bench": "torch_eval_checkpoint", "checkpoint": os.path.abspath(path), "torch": torch.__version__,
        "architecture": expression, "input_shape": input_shape, "samples": n, "correct": correct,
        "test_loss": loss, "test_accuracy": accuracy,
        "parameters": sum(p.numel() for p in model.parameters()),
    }
    print(json.dumps(result, sort_keys=True), flush=True)


if __name__ == "__main__":
    main()
