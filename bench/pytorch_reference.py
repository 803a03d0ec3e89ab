#!/usr/bin/env python3
"""The PyTorch reference for `ddp-train bench`: the same job, timed the same way.

Same MLP (784-256-128-10, ReLU, nn.Linear init), same data (Fashion-MNIST IDX files, pixels/255, no
normalisation), same per-worker batch B, SGD momentum 0.9, weight decay 5e-4, one intra-op thread per process.
`--model cnn` trains instead, with the same data, optimizer and timing, the CNN (421,642 parameters, default init)
    Sequential(Conv2d(1, 32, 3, padding=1), ReLU(), MaxPool2d(2), Conv2d(32, 64, 3, padding=1), ReLU(),
               MaxPool2d(2), Flatten(), Linear(3136, 128), ReLU(), Linear(128, 10))
on the images shaped [B, 1, 28, 28]; its JSON object then also carries "model": "cnn" (the default `--model mlp`
prints exactly what it always did).
`--world-size 1` trains in this process; `--world-size K` spawns K processes under DistributedDataParallel with
the gloo backend over loopback (every K-th sample of each global batch per rank, as our DistributedSampler).

Samples/s is reported as ddp-train bench does: the median over `--windows` epochs after `--warmup` epochs, each
epoch timed on rank 0 from its first step to its last (no evaluation inside). One JSON object is printed last.

PyTorch is never a dependency of ddp-train: install it in a throwaway venv (see bench/compare).
"""
import argparse
import gzip
import json
import os
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


def train(rank, args):
    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    torch.set_num_threads(1)
    world = args.world_size
    if world > 1:
        import torch.distributed as dist
        os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
        dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{args.port}", rank=rank, world_size=world)
    torch.manual_seed(args.seed)
    if args.model == "cnn":
        model = nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(), nn.Linear(3136, 128), nn.ReLU(), nn.Linear(128, 10))
        input_shape = (-1, 1, 28, 28)
    else:
        model = nn.Sequential(nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 128), nn.ReLU(), nn.Linear(128, 10))
        input_shape = (-1, 784)
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel
        model = DistributedDataParallel(model)
    optimizer = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9, weight_decay=5e-4)
    x_all, y_all = load(args.data_dir)
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
        model_name = "CNN, " if args.model == "cnn" else ""
        print(f"pytorch {torch.__version__}: {model_name}K={world} × B={args.batch_size}"
              f"{' (DDP, gloo)' if world > 1 else ''}: {result['samples_per_sec']:.0f} samples/s"
              f" (median of {len(rates)} epochs after {args.warmup} warm-up; min {min(rates):.0f}, max {max(rates):.0f})")
        print(json.dumps(result, sort_keys=True), flush=True)
    if world > 1:
        import torch.distributed as dist
        dist.destroy_process_group()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", choices=["mlp", "cnn"], default="mlp")
    parser.add_argument("--world-size", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--windows", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--port", type=int, default=29517)
    parser.add_argument("--data-dir", default="/usr/share/datasets/fashion-mnist")
    args = parser.parse_args()
    if args.world_size == 1:
        train(0, args)
    else:
        import torch.multiprocessing as mp
        mp.spawn(train, args=(args,), nprocs=args.world_size, join=True)


if __name__ == "__main__":
    main()
