#!/usr/bin/env python3
"""The ResNet recipe in PyTorch: what `ddp-train --model resnet` trains, with the same recipe, to check that the
recipe reaches its accuracy at all and to time PyTorch on it (README, "Residual networks"; issue "Networks as people
train them").

    PYTHON bench/resnet_recipe.py [--world-size K] [--batch-size B] [--epochs E] [--lr η] [--base-batch n]
        [--warmup-epochs W] [--random-crop P] [--random-flip] [--normalize MEANS:STDS] [--sync-bn]
        [--max-steps N] [--metrics PATH] [--state PATH] [--data-dir DIR]

The defaults are the recipe `ddp-train` is to be run with:

    mpirun -np 4 ddp-train --model resnet --epochs 30 --batch-size 64 --lr 0.1 --base-batch 128 \\
        --warmup-epochs 2 --schedule cosine --random-crop 2 --random-flip --normalize 0.286:0.353

What is the same as ddp-train, by construction:
- the network: `pytorch_reference.build_model("resnet")` (ResNet-20's layout, 272,970 parameters, the same
  state_dict names; PyTorch's default initialisation, not ddp-train's draws);
- the data order: one permutation of the 60,000 training images per epoch, rank r of K taking positions
  s·K·B + r + K·j of step s (as ddp-train's DistributedSampler; the permutation itself is torch's);
- the learning rate, a function of the step t (ddp-train's LearningRatePolicy): peak = η·K·B/n; for t < W·S
  (S steps an epoch) η + (peak − η)·t/(W·S), then peak·½(1 + cos(π·(t − W·S)/(T − W·S))) for T steps in all;
- SGD with momentum 0.9 and weight decay 5e-4 on every parameter, the loss the mean cross-entropy over the global
  batch (DDP averages the ranks' gradients);
- x = pixel / 255, zero padding P and a random crop back to 28×28, a horizontal flip with probability ½ (training
  only), then (x − mean)/std;
- batch normalisation per worker (DDP's default, ddp-train's `--batch-norm local`). `--sync-bn` would be
  `torch.nn.SyncBatchNorm` (ddp-train's `--batch-norm sync`), but PyTorch 2.13 refuses it on CPU ("SyncBatchNorm
  layers only work with GPU modules"): the script says so and exits 2. Evaluation on the 10,000 test images in
  eval mode.
  PyTorch's DDP broadcasts rank 0's running statistics (buffers) before each forward; ddp-train averages the
  workers' batch statistics into them instead (README, "Batch normalisation").

One intra-op thread per process, gloo over loopback for K > 1. Each epoch prints a line and appends a JSON line
to `--metrics` (epoch, lr, train loss, test loss and accuracy, samples/s of the epoch's training). `--max-steps`
stops early (a smoke test). `--state PATH` saves
the model, the optimizer and every rank's generators after every epoch (one file, about 2 MB) and continues from
them when it exists. PyTorch is
never a dependency of ddp-train: use the throwaway venv of bench/compare.
"""
import argparse
import json
import math
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import pytorch_reference  # noqa: E402  (the network and the IDX reader)


def learning_rate(t, args, steps_per_epoch, total_steps, global_batch):
    peak = args.lr * global_batch / args.base_batch
    warmup = int(round(args.warmup_epochs * steps_per_epoch))
    if t < warmup:
        return args.lr + (peak - args.lr) * t / warmup
    progress = min(1.0, (t - warmup) / max(1, total_steps - warmup))
    return peak * 0.5 * (1 + math.cos(math.pi * progress))


def augment(x, pad, flip, generator):
    """x [B, 1, 28, 28] in [0, 1]: zero padding `pad`, a random crop back to 28×28, a random horizontal flip."""
    import torch
    import torch.nn.functional as F

    if pad > 0:
        padded = F.pad(x, (pad, pad, pad, pad))
        size = x.shape[-1]
        offsets = torch.randint(0, 2 * pad + 1, (x.shape[0], 2), generator=generator)
        x = torch.stack([padded[i, :, dy:dy + size, dx:dx + size] for i, (dy, dx) in enumerate(offsets.tolist())])
    if flip:
        mirror = torch.rand(x.shape[0], generator=generator) < 0.5
        x = torch.where(mirror.view(-1, 1, 1, 1), x.flip(-1), x)
    return x


def run(rank, args):
    import torch
    import torch.nn.functional as F

    world = args.world_size
    pytorch_reference.start_process(rank, world, args.port, args.seed)
    model, _, parameters = pytorch_reference.build_model("resnet")
    if args.sync_bn and world > 1:
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    net = model
    if world > 1:
        from torch.nn.parallel import DistributedDataParallel
        net = DistributedDataParallel(model)
    optimizer = torch.optim.SGD(net.parameters(), lr=args.lr, momentum=0.9, weight_decay=5e-4)
    mean, std = (float(v) for v in args.normalize.split(":")) if args.normalize else (0.0, 1.0)

    x_train, y_train = pytorch_reference.load(args.data_dir)
    x_test, y_test = load_test(args.data_dir)
    n = x_train.shape[0]
    global_batch = world * args.batch_size
    steps_per_epoch = n // global_batch
    total_steps = args.epochs * steps_per_epoch
    order = torch.Generator().manual_seed(args.seed)
    draws = torch.Generator().manual_seed(args.seed * 1000 + rank + 1)
    metrics = open(args.metrics, "a") if args.metrics and rank == 0 else None
    step, first_epoch = 0, 0
    if args.state and os.path.exists(args.state):
        saved = torch.load(args.state, weights_only=False)
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        order.set_state(saved["order"])
        draws.set_state(saved["draws"][rank])
        step, first_epoch = saved["step"], saved["epoch"]
        if rank == 0:
            print(f"resumed after epoch {first_epoch} (step {step}) from {args.state}", flush=True)
    for epoch in range(first_epoch, args.epochs):
        permutation = torch.randperm(n, generator=order)
        net.train()
        start = time.perf_counter()
        loss_sum = 0.0
        for s in range(steps_per_epoch):
            if args.max_steps is not None and step >= args.max_steps:
                break
            index = permutation[s * global_batch + rank:(s + 1) * global_batch:world]
            x = x_train[index].float().div_(255).reshape(-1, 1, 28, 28)
            x = augment(x, args.random_crop, args.random_flip, draws)
            x = (x - mean) / std
            lr = learning_rate(step, args, steps_per_epoch, total_steps, global_batch)
            for group in optimizer.param_groups:
                group["lr"] = lr
            optimizer.zero_grad(set_to_none=False)
            loss = F.cross_entropy(net(x), y_train[index])
            loss.backward()
            optimizer.step()
            loss_sum += loss.item()
            step += 1
        seconds = time.perf_counter() - start
        steps_done = s + 1 if steps_per_epoch else 0
        test_loss, accuracy = evaluate(model, x_test, y_test, mean, std)
        if rank == 0:
            record = {
                "epoch": epoch + 1, "lr": lr, "train_loss": loss_sum / max(1, steps_done), "test_loss": test_loss,
                "test_accuracy": accuracy, "samples_per_sec": steps_done * global_batch / seconds,
                "world_size": world, "batch_size": args.batch_size, "sync_bn": args.sync_bn,
                "parameters": parameters, "torch": torch.__version__,
            }
            print(f"epoch {epoch + 1:3d}  train loss {record['train_loss']:.4f}  test loss {test_loss:.4f}  "
                  f"test acc {accuracy:.4f}  lr {lr:.5f}  {record['samples_per_sec']:.0f} samples/s", flush=True)
            if metrics:
                metrics.write(json.dumps(record, sort_keys=True) + "\n")
                metrics.flush()
        if args.state:
            # One file, by rank 0: the model and the optimizer are the same on every rank (DDP averages the
            # gradients and broadcasts rank 0's buffers before each forward), the augmentation generators are not,
            # so every rank's goes into it. Written whole under a temporary name, then renamed.
            all_draws = [draws.get_state()]
            if world > 1:
                import torch.distributed as dist
                all_draws = [None] * world
                dist.all_gather_object(all_draws, draws.get_state())
            if rank == 0:
                saved = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "order": order.get_state(),
                         "draws": all_draws, "step": step, "epoch": epoch + 1, "world_size": world}
                torch.save(saved, args.state + ".tmp")
                os.replace(args.state + ".tmp", args.state)
        if args.max_steps is not None and step >= args.max_steps:
            break
    if world > 1:
        import torch.distributed as dist
        dist.destroy_process_group()


def load_test(directory):
    """The 10,000 test images and labels (t10k-*), as pytorch_reference.load reads the training split."""
    import torch

    images, shape = pytorch_reference.read_idx(pytorch_reference.find(directory, "t10k-images-idx3-ubyte"))
    labels, _ = pytorch_reference.read_idx(pytorch_reference.find(directory, "t10k-labels-idx1-ubyte"))
    x = torch.frombuffer(bytearray(images), dtype=torch.uint8).reshape(shape[0], -1)
    y = torch.frombuffer(bytearray(labels), dtype=torch.uint8).long()
    return x, y


def evaluate(model, x_all, y_all, mean, std):
    import torch
    import torch.nn.functional as F

    model.eval()
    loss_sum, correct = 0.0, 0
    with torch.no_grad():
        for start in range(0, x_all.shape[0], 500):
            x = (x_all[start:start + 500].float().div_(255).reshape(-1, 1, 28, 28) - mean) / std
            logits = model(x)
            y = y_all[start:start + 500]
            loss_sum += F.cross_entropy(logits, y, reduction="sum").item()
            correct += (logits.argmax(dim=1) == y).sum().item()
    return loss_sum / x_all.shape[0], correct / x_all.shape[0]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--world-size", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--lr", type=float, default=0.1)
    parser.add_argument("--base-batch", type=int, default=128)
    parser.add_argument("--warmup-epochs", type=float, default=2)
    parser.add_argument("--random-crop", type=int, default=2)
    parser.add_argument("--random-flip", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--normalize", default="0.286:0.353")
    parser.add_argument("--sync-bn", action="store_true")
    parser.add_argument("--max-steps", type=int, default=None)
    parser.add_argument("--metrics", default=None)
    parser.add_argument("--state", default=None,
                        help="save the training state here after every epoch (one file, by rank 0) and "
                             "continue from it when it exists: a 30-epoch run may span several sittings")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--port", type=int, default=29519)
    parser.add_argument("--data-dir", default="/usr/share/datasets/fashion-mnist")
    args = parser.parse_args()
    if args.sync_bn and args.world_size > 1:
        print("resnet_recipe.py: --sync-bn: torch.nn.SyncBatchNorm only works with GPU modules (PyTorch raises "
              "\"SyncBatchNorm layers only work with GPU modules\" on CPU); run ddp-train --batch-norm sync instead",
              file=sys.stderr)
        sys.exit(2)
    if args.state and os.path.exists(args.state):
        import torch
        written_by = torch.load(args.state, weights_only=False)["world_size"]
        if written_by != args.world_size:
            print(f"resnet_recipe.py: --state {args.state} was written by {written_by} processes, not "
                  f"--world-size {args.world_size}: continue with the same --world-size, or start a new state file",
                  file=sys.stderr)
            sys.exit(2)
    if args.world_size == 1:
        run(0, args)
    else:
        import torch.multiprocessing as mp
        mp.spawn(run, args=(args,), nprocs=args.world_size, join=True)


if __name__ == "__main__":
    main()
