#!/usr/bin/env python3
"""The PyTorch reference for `ddp-train bench`: the same job, timed the same way.

Same network, same data (Fashion-MNIST IDX files, pixels/255, no normalisation), same per-worker batch B, SGD
momentum 0.9, weight decay 5e-4, one intra-op thread per process. PyTorch's default init (only the timing is
compared; the shapes are exactly ddp-train's).

`--model` takes any model expression `ddp-train --model` takes (Sources/Layers/ModelSpec.swift is the grammar
this mirrors) and builds the torch.nn.Sequential a ddp-train checkpoint of that model carries:
  mlp             784-256-128-10: Linear(784, 256), ReLU(), Linear(256, 128), ReLU(), Linear(128, 10) (the default)
  mlp:H1,H2,...   hidden widths H1, H2, ... between 784 and 10, Linear and ReLU alternating (`mlp:` alone: one
                  Linear(784, 10))
  cnn             seq:conv32k3p1,relu,pool2,conv64k3p1,relu,pool2,flatten,linear128,relu,linear10
                  (421,642 parameters)
  seq:T1,T2,...   the layers T1, T2, ... in order, each token one of
                    linearN             Linear(in, N); in is the element count of its input, which is used
                                        flattened (as ddp-train does: no Flatten needed before it)
                    relu                ReLU()
                    flatten             Flatten(): [c, h, w] -> [c*h*w]
                    convNkK[sS][pP]     Conv2d(in, N, kernel_size=K, stride=S, padding=P); S 1 and P 0 unless
                                        given, P < K; needs an image [c, h, w] as input
                    poolK[sS]           MaxPool2d(kernel_size=K, stride=S); S = K unless given; needs an image
                    bn                  BatchNorm2d(c) on an image, BatchNorm1d(n) on features
                    gap                 Sequential(AdaptiveAvgPool2d(1), Flatten()): [c, h, w] -> [c]
                    res(T1,...)         Residual(Sequential(T1, ...), shortcut): body(x) + shortcut(x), the body of
                                        conv, bn and relu tokens; the shortcut None (the identity), or Sequential(
                                        Conv2d(c, c', 1, stride=s), BatchNorm2d(c')) when the body changes the shape
                  and the last token must be linear10 (one value per class).
  resnet          ResNet-20's layout (ModelSpec.resNetLayers): conv16k3p1,bn,relu, three stages of three
                  res(conv,bn,relu,conv,bn),relu blocks at 16, 32, 64 channels (stride 2 first in stages 2 and 3),
                  gap, linear10 (272,970 parameters)
Case and spaces do not matter. The MLPs, and seq: models whose first layer is linear, take the samples flattened
([784]); cnn and any other seq: model take them as images [1, 28, 28]. A linear layer on an image is an
nn.Linear that flattens its input first (FlatLinear), so module indices and parameter names stay ddp-train's
("0.weight", ...; a checkpoint's expression writes it as a plain Linear). An expression ddp-train would refuse
(an unknown token, a layer that does not fit its input, a last layer other than linear10) exits with status 2 and
ddp-train's message, before anything is loaded. `--dry-run` prints the network and its parameter count and exits.

`--world-size 1` trains in this process; `--world-size K` spawns K processes under DistributedDataParallel with
the gloo backend over loopback (every K-th sample of each global batch per rank, as our DistributedSampler).

Samples/s is reported as ddp-train bench does: the median over `--windows` epochs after `--warmup` epochs, each
epoch timed on rank 0 from its first step to its last (no evaluation inside). The human line names the model and
its parameter count; one JSON object is printed last, carrying "model": the expression as given unless it is the
default "mlp".

PyTorch is never a dependency of ddp-train: install it in a throwaway venv (see bench/compare).
"""
import argparse
import gzip
import json
import os
import re
import statistics
import sys
import time


def read_idx(path):
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    dims = data[3]
    shape = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(dims)]
    return data[4 + 4 * dims:], shape


def find(directory, name):
    for candidate in (name, name + ".gz"):
        path = os.path.join(directory, candidate)
        if os.path.exists(path):
            return path
    sys.exit(f"pytorch_reference.py: {name}[.gz] not found in {directory}")


def load(directory):
    import torch
    pixels, shape = read_idx(find(directory, "train-images-idx3-ubyte"))
    labels, _ = read_idx(find(directory, "train-labels-idx1-ubyte"))
    x = torch.frombuffer(bytearray(pixels), dtype=torch.uint8).reshape(shape[0], -1)
    y = torch.frombuffer(bytearray(labels), dtype=torch.uint8).long()
    return x, y


# The data this script reads: Fashion-MNIST, one channel of 28x28 pixels, 10 classes.
IMAGE_SHAPE = (1, 28, 28)
CLASS_COUNT = 10
DEFAULT_HIDDEN = (256, 128)
CNN_TOKENS = "conv32k3p1,relu,pool2,conv64k3p1,relu,pool2,flatten,linear128,relu,linear10"
EXPECTED = ("Expected 'mlp' (hidden layers 256,128), 'mlp:H1,H2,...', 'cnn', 'resnet', or 'seq:' and layers from "
            "linearN, relu, flatten, convNkK[sS][pP], poolK[sS], bn, gap, dropoutP, res(...), "
            "e.g. 'seq:conv16k5p2,relu,pool2,flatten,linear10'.")


class ModelError(Exception):
    """A --model value ddp-train would refuse; str() is the message ModelSpecError prints."""

    def __init__(self, given, problem):
        super().__init__(f"invalid --model '{given}': {problem}. {EXPECTED}")


def token_fields(text, prefix, letters):
    """ModelSpec's LayerSpec.fields: "conv32k3p1" with prefix "conv" and letters "ksp" -> {"": 32, "k": 3, "p": 1}.
    A number after the prefix, then each letter at most once and in the given order, each followed by a number of
    1 to 6 ASCII digits, positive except after p; None if anything else is there."""
    if not text.startswith(prefix):
        return None
    rest, key, allowed, result = text[len(prefix):], "", letters, {}
    while True:
        digits = re.match(r"[0-9]{0,7}", rest).group()
        if not 1 <= len(digits) <= 6 or (int(digits) == 0 and key != "p"):
            return None
        result[key] = int(digits)
        rest = rest[len(digits):]
        if not rest:
            return result
        position = allowed.find(rest[0])
        if position < 0:
            return None
        key, allowed, rest = rest[0], allowed[position + 1:], rest[1:]


def split_top_level(text):
    """A comma list split at its top level (commas inside res(...) belong to it); None if parentheses do not
    balance (LayerSpec.splitTopLevel)."""
    parts, depth, start = [], 0, 0
    for index, char in enumerate(text):
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
            if depth < 0:
                return None
        elif char == "," and depth == 0:
            parts.append(text[start:index])
            start = index + 1
    if depth != 0:
        return None
    return parts + [text[start:]]


RESNET_TOKENS = ",".join(
    ["conv16k3p1,bn,relu"]
    + [f"res(conv{c}k3{'s2' if stage > 0 and block == 0 else ''}p1,bn,relu,conv{c}k3p1,bn),relu"
       for stage, c in enumerate([16, 32, 64]) for block in range(3)]
    + ["gap,linear10"])


def parse_token(token):
    """One seq: token -> ("linear", out) | ("relu",) | ("flatten",) | ("bn",) | ("gap",) | ("dropout", p) |
    ("conv", out, kernel, stride, padding) | ("pool", kernel, stride) | ("res", [layers]), or None; tried in
    ModelSpec's order."""
    text = token.lower()
    if text.startswith("res(") and text.endswith(")"):
        parts = split_top_level(text[4:-1]) if len(text) > 5 else None
        body = [parse_token(part) for part in parts] if parts else None
        return ("res", body) if body and None not in body else None
    if text in ("relu", "flatten", "bn", "gap"):
        return (text,)
    if text.startswith("dropout") and len(text) > 7 and all(c.isdigit() or c == "." for c in text[7:]):
        try:
            return ("dropout", float(text[7:]))
        except ValueError:
            return None
    fields = token_fields(text, "linear", "")
    if fields is not None:
        return ("linear", fields[""])
    fields = token_fields(text, "conv", "ksp")
    if fields is not None and "k" in fields:
        return ("conv", fields[""], fields["k"], fields.get("s", 1), fields.get("p", 0))
    fields = token_fields(text, "pool", "s")
    if fields is not None:
        return ("pool", fields[""], fields.get("s", fields[""]))
    return None


def parse_model(given):
    """A --model value -> (input shape of one sample, layers as parse_token gives them, the shape each layer
    receives, the parameter count), checked as ModelSpec(parsing:sampleShape:classCount:) checks it for
    Fashion-MNIST; raises ModelError with ddp-train's wording otherwise."""
    text = given.replace(" ", "")
    family, colon, argument = text.partition(":")
    argument = argument if colon else None
    family = family.lower()
    features = IMAGE_SHAPE[0] * IMAGE_SHAPE[1] * IMAGE_SHAPE[2]
    if family == "mlp":
        hidden = DEFAULT_HIDDEN if argument is None else []
        for item in (argument.split(",") if argument else []):
            # Swift's Int(String): an optional sign and ASCII digits, nothing else (no spaces, no underscores).
            if not re.fullmatch(r"[+-]?[0-9]+", item):
                shown = f"'{item}'" if item else "an empty entry"
                raise ModelError(given, f"{shown} is not a whole number")
            if int(item) <= 0:
                raise ModelError(given, f"hidden size {int(item)} must be positive")
            hidden.append(int(item))
        layers = []
        for index, size in enumerate(list(hidden) + [CLASS_COUNT]):
            layers += [("relu",)] if index > 0 else []
            layers.append(("linear", size))
        input_shape = (features,)
    elif family == "cnn":
        if argument is not None:
            raise ModelError(given, "'cnn' takes no arguments")
        layers = [parse_token(token) for token in CNN_TOKENS.split(",")]
        input_shape = IMAGE_SHAPE
    elif family == "resnet":
        if argument is not None:
            raise ModelError(given, "'resnet' takes no arguments")
        layers = [parse_token(token) for token in split_top_level(RESNET_TOKENS)]
        input_shape = IMAGE_SHAPE
    elif family == "seq":
        if not argument:
            raise ModelError(given, "'seq:' needs a list of layers")
        layers = []
        tokens = split_top_level(argument)
        if tokens is None:
            raise ModelError(given, "its parentheses do not balance")
        for token in tokens:
            layer = parse_token(token)
            if layer is None:
                shown = f"'{token}'" if token else "an empty entry"
                raise ModelError(given, f"{shown} is not a layer")
            layers.append(layer)
        # As ModelSpec: a first Linear takes the samples flattened (as the MLP always has), anything else images.
        input_shape = (features,) if layers[0][0] == "linear" else IMAGE_SHAPE
    else:
        raise ModelError(given, f"unknown model '{family}'")

    # ModelSpec.init(inputShape:layers:given:): every layer against the shape it receives.
    shape, input_shapes, parameters = tuple(input_shape), [], 0
    for index, layer in enumerate(layers):
        input_shapes.append(shape)
        name = f"layer {index} '{layer_token(layer)}'"
        kind = layer[0]
        if kind in ("conv", "pool", "gap", "res") and len(shape) != 3:
            raise ModelError(given, f"{name} needs an image [channels, height, width] as input, found "
                                    f"{'x'.join(map(str, shape))}")
        if kind == "linear":
            inputs = 1
            for side in shape:
                inputs *= side
            parameters += layer[1] * inputs + layer[1]
            shape = (layer[1],)
        elif kind == "flatten":
            shape = (shape[0] * shape[1] * shape[2],) if len(shape) == 3 else shape
        elif kind == "conv":
            _, out, kernel, stride, padding = layer
            if padding >= kernel:
                raise ModelError(given, f"{name} has padding {padding}, expected less than the kernel")
            if min(shape[1], shape[2]) + 2 * padding < kernel:
                raise ModelError(given, f"{name} has a {kernel}x{kernel} kernel larger than its padded input "
                                        f"{'x'.join(map(str, shape))}")
            parameters += out * shape[0] * kernel * kernel + out
            shape = (out,) + tuple((side + 2 * padding - kernel) // stride + 1 for side in shape[1:])
        elif kind == "bn":
            parameters += 2 * shape[0]
        elif kind == "dropout":
            if not 0 <= layer[1] < 1:
                raise ModelError(given, f"{name} has probability {layer[1]}, expected one in [0, 1) (e.g. dropout0.25)")
        elif kind == "gap":
            shape = (shape[0],)
        elif kind == "res":
            inner = shape
            for part in layer[1]:
                if part[0] not in ("conv", "bn", "relu"):
                    raise ModelError(given, f"{name} holds '{layer_token(part)}': a block's body takes conv, bn and relu")
                if part[0] == "conv":
                    _, out, kernel, stride, padding = part
                    parameters += out * inner[0] * kernel * kernel + out
                    inner = (out,) + tuple((side + 2 * padding - kernel) // stride + 1 for side in inner[1:])
                elif part[0] == "bn":
                    parameters += 2 * inner[0]
            if inner != shape:
                stride = shortcut_stride(shape, inner)
                if stride is None:
                    raise ModelError(given, f"{name} turns {'x'.join(map(str, shape))} into "
                                            f"{'x'.join(map(str, inner))}, which no 1x1 strided convolution "
                                            "shortcut gives")
                parameters += inner[0] * shape[0] + inner[0] + 2 * inner[0]
            shape = inner
        elif kind == "pool":
            _, kernel, stride = layer
            if min(shape[1], shape[2]) < kernel:
                raise ModelError(given, f"{name} has a {kernel}x{kernel} window larger than its input "
                                        f"{'x'.join(map(str, shape))}")
            shape = (shape[0],) + tuple((side - kernel) // stride + 1 for side in shape[1:])
    if layers[-1][0] != "linear":
        raise ModelError(given, "the last layer must be a linear one giving one value per class (e.g. 'linear10')")
    if shape != (CLASS_COUNT,):
        raise ModelError(given, f"the last layer '{layer_token(layers[-1])}' gives {shape[0]} values, but the data "
                                f"has {CLASS_COUNT} classes")
    return input_shape, layers, input_shapes, parameters


def shortcut_stride(before, after):
    """The stride of the 1x1 convolution mapping [c, h, w] to [c', h', w'] (ResidualBlock.shortcutStride)."""
    for stride in range(1, max(before[1], before[2]) + 1):
        if (before[1] - 1) // stride + 1 == after[1] and (before[2] - 1) // stride + 1 == after[2]:
            return stride
    return None


def layer_token(layer):
    """The shortest token that parses back to this layer (LayerSpec.token)."""
    kind = layer[0]
    if kind == "res":
        return "res(" + ",".join(layer_token(part) for part in layer[1]) + ")"
    if kind == "linear":
        return f"linear{layer[1]}"
    if kind == "conv":
        _, out, kernel, stride, padding = layer
        return f"conv{out}k{kernel}" + (f"s{stride}" if stride != 1 else "") + (f"p{padding}" if padding else "")
    if kind == "pool":
        return f"pool{layer[1]}" + (f"s{layer[2]}" if layer[2] != layer[1] else "")
    if kind == "dropout":
        return f"dropout{layer[1]}"
    return kind


def build_model(given):
    """The torch.nn.Sequential ddp-train builds for this --model value (module for module, so the state_dict names
    "0.weight", "0.bias", ... are those of ddp-train's checkpoints), the input shape of one sample, and the
    parameter count ModelSpec computes. Raises ModelError as parse_model."""
    import torch
    import torch.nn as nn

    class FlatLinear(nn.Linear):
        """nn.Linear on an image input: ddp-train's Linear uses any input flattened, where nn.Linear would act
        on the last dimension alone. A subclass rather than an inserted nn.Flatten keeps the module indices, and
        so the parameter names, those of ddp-train's Sequential."""

        def forward(self, x):
            return super().forward(torch.flatten(x, 1))

    class Residual(nn.Module):
        """body(x) + shortcut(x), as a ddp-train checkpoint's ddp_train.modules defines it."""

        def __init__(self, body, shortcut=None):
            super().__init__()
            self.body = body
            self.shortcut = shortcut if shortcut is not None else nn.Identity()

        def forward(self, x):
            return self.body(x) + self.shortcut(x)

    def module(layer, shape):
        """The module of one layer on inputs of `shape`, and its output shape."""
        kind = layer[0]
        if kind == "bn":
            return (nn.BatchNorm2d if len(shape) == 3 else nn.BatchNorm1d)(shape[0]), shape
        if kind == "gap":
            return nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten()), (shape[0],)
        if kind == "relu":
            return nn.ReLU(), shape
        if kind == "conv":
            _, out, kernel, stride, padding = layer
            side = tuple((s + 2 * padding - kernel) // stride + 1 for s in shape[1:])
            return nn.Conv2d(shape[0], out, kernel_size=kernel, stride=stride, padding=padding), (out,) + side
        body, inner = [], shape
        for part in layer[1]:
            made, inner = module(part, inner)
            body.append(made)
        shortcut = None
        if inner != shape:
            shortcut = nn.Sequential(
                nn.Conv2d(shape[0], inner[0], kernel_size=1, stride=shortcut_stride(shape, inner), padding=0),
                nn.BatchNorm2d(inner[0]))
        return Residual(nn.Sequential(*body), shortcut), inner

    input_shape, layers, input_shapes, parameters = parse_model(given)
    modules = []
    for layer, shape in zip(layers, input_shapes):
        kind = layer[0]
        if kind in ("bn", "gap", "res"):
            modules.append(module(layer, shape)[0])
            continue
        if kind == "linear":
            inputs = 1
            for side in shape:
                inputs *= side
            modules.append((FlatLinear if len(shape) > 1 else nn.Linear)(inputs, layer[1]))
        elif kind == "relu":
            modules.append(nn.ReLU())
        elif kind == "dropout":
            modules.append(nn.Dropout(p=layer[1]))
        elif kind == "flatten":
            modules.append(nn.Flatten())
        elif kind == "conv":
            _, out, kernel, stride, padding = layer
            modules.append(nn.Conv2d(shape[0], out, kernel_size=kernel, stride=stride, padding=padding))
        else:
            modules.append(nn.MaxPool2d(kernel_size=layer[1], stride=layer[2]))
    model = nn.Sequential(*modules)
    counted = sum(p.numel() for p in model.parameters())
    assert counted == parameters, f"torch has {counted} parameters, ModelSpec's formula {parameters}"
    return model, input_shape, parameters


def model_label(given):
    """How the human line names the model, as ModelSpec.description decides from the layers rather than the text:
    "mlp 784-256-128-10" for any flat Linear/ReLU alternation (seq:linear100,relu,linear10 too), "cnn" for the
    default CNN's layers, else "seq:" and the shortest tokens."""
    input_shape, layers, _, _ = parse_model(given)
    alternating = all(layer[0] == ("linear" if index % 2 == 0 else "relu") for index, layer in enumerate(layers))
    if len(input_shape) == 1 and alternating and len(layers) % 2 == 1:
        return "mlp " + "-".join(str(size) for size in input_shape + tuple(l[1] for l in layers if l[0] == "linear"))
    tokens = ",".join(layer_token(layer) for layer in layers)
    if input_shape == IMAGE_SHAPE and tokens == RESNET_TOKENS:
        return "resnet"
    return "cnn" if input_shape == IMAGE_SHAPE and tokens == CNN_TOKENS else "seq:" + tokens


def start_process(rank, world, port, seed):
    """What every rank of a PyTorch comparison does first: one intra-op thread, gloo over loopback for K > 1, and
    the seed."""
    import torch

    torch.set_num_threads(1)
    if world > 1:
        import torch.distributed as dist
        os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
        dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    torch.manual_seed(seed)


def train(rank, args):
    import torch
    import torch.nn.functional as F

    world = args.world_size
    start_process(rank, world, args.port, args.seed)
    model, input_shape, parameters = build_model(args.model)
    input_shape = (-1,) + tuple(input_shape)
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel
        model = DistributedDataParallel(model)
    optimizer = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9, weight_decay=5e-4)
    x_all, y_all = load(args.data_dir)
    if args.train_samples:
        # A window over the first N samples: shorter epochs for the slow networks, the same work per sample.
        x_all, y_all = x_all[:args.train_samples], y_all[:args.train_samples]
    n = x_all.shape[0]
    global_batch = world * args.batch_size
    steps = n // global_batch
    generator = torch.Generator().manual_seed(args.seed)
    rates = []
    for epoch in range(args.warmup + args.windows):
        permutation = torch.randperm(n, generator=generator)
        start = time.perf_counter()
        for step in range(steps):
            # This rank's B samples of the global batch: positions step·G + rank + K·j.
            index = permutation[step * global_batch + rank:(step + 1) * global_batch:world]
            x = x_all[index].float().div_(255).reshape(input_shape)
            y = y_all[index]
            optimizer.zero_grad(set_to_none=False)
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            optimizer.step()
        seconds = time.perf_counter() - start
        if epoch >= args.warmup:
            rates.append(steps * global_batch / seconds)
    if rank == 0:
        result = {
            "bench": "pytorch", "torch": torch.__version__, "world_size": world, "batch_size": args.batch_size,
            "global_batch": global_batch, "backend": "gloo" if world > 1 else "none",
            "samples_per_sec": statistics.median(rates), "window_samples_per_sec": rates,
        }
        if args.model != "mlp":
            result["model"] = args.model
        print(f"pytorch {torch.__version__}: {model_label(args.model)} ({parameters:,} parameters),"
              f" K={world} × B={args.batch_size}"
              f"{' (DDP, gloo)' if world > 1 else ''}: {result['samples_per_sec']:.0f} samples/s"
              f" (median of {len(rates)} epochs after {args.warmup} warm-up; min {min(rates):.0f}, max {max(rates):.0f})")
        print(json.dumps(result, sort_keys=True), flush=True)
    if world > 1:
        import torch.distributed as dist
        dist.destroy_process_group()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="mlp", metavar="SPEC",
                        help="as ddp-train --model: mlp (the default), mlp:H1,H2,..., cnn, or seq:T1,T2,... with "
                             "tokens linearN, relu, flatten, convNkK[sS][pP], poolK[sS] (see the docstring)")
    parser.add_argument("--dry-run", action="store_true",
                        help="print the network and its parameter count, then exit without loading data")
    parser.add_argument("--world-size", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--windows", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--port", type=int, default=29517)
    parser.add_argument("--data-dir", default="/usr/share/datasets/fashion-mnist")
    parser.add_argument("--train-samples", type=int, default=0, metavar="N",
                        help="train on the first N samples only (each timed epoch is then N samples; 0: all)")
    args = parser.parse_args()
    # Checked here, before any process is spawned, so a bad expression is reported once (status 2, as argparse).
    try:
        parse_model(args.model)
    except ModelError as error:
        print(f"pytorch_reference.py: {error}", file=sys.stderr)
        sys.exit(2)
    if args.dry_run:
        model, input_shape, parameters = build_model(args.model)
        print(f"{model_label(args.model)}: input [{', '.join(map(str, input_shape))}], {parameters:,} parameters")
        print(model)
        return
    if args.world_size == 1:
        train(0, args)
    else:
        import torch.multiprocessing as mp
        mp.spawn(train, args=(args,), nprocs=args.world_size, join=True)


if __name__ == "__main__":
    main()
