#!/usr/bin/env python3
"""Writes optimizer_fixture.safetensors: several steps of torch.optim.AdamW, and of LAMB as NVIDIA apex's FusedLAMB
computes it, on a few small tensors with weight decay and a changing learning rate, for OptimizersTests.

Re-running
----------
PyTorch is never a dependency of ddp-train; use a throwaway virtual environment outside the repository:

    python3 -m venv /tmp/torchvenv
    /tmp/torchvenv/bin/pip install torch numpy safetensors
    /tmp/torchvenv/bin/python Tests/OptimizersTests/Fixtures/make_optimizer_fixture.py

(from the repository root; the output is written next to this script whatever the working directory).
Deterministic (torch.manual_seed(20261206), CPU, float32): running it twice writes byte-identical files.

The tensors, laid out one after the other as ddp-train's flat buffer lays out a model's (Sequential.views):

    0.weight [4, 3], 0.bias [4], 1.weight [2, 4], 1.bias [2], 2.weight [3]   (the last as a batch norm's γ)

Ranks ≥ 2 are weights; rank 1 are biases and batch-norm parameters, which `--no-bias-decay` leaves undecayed
(their own parameter group with weight_decay 0, as Goyal et al. and the usual PyTorch recipes do).

Each case runs STEPS = 6 steps from the same initial values, with the learning rates LR (float32 values: ddp-train
passes the scheduled lr as a float) and the gradients GRADIENTS[t] (float32, drawn once; steps 0-2 scaled so the
global gradient norm exceeds 1, steps 3-5 so it stays below, exercising LAMB's clipping and its absence):

    adamw          torch.optim.AdamW(betas=(0.9, 0.999), eps=1e-8, weight_decay=0.05)
    adamw_nobias   the same, weight_decay 0 for the rank-1 tensors
    adamw_betas    betas=(0.8, 0.99), eps=1e-6, weight_decay=0.1
    lamb           apex FusedLAMB defaults: betas (0.9, 0.999), eps 1e-6, weight_decay 0.01, max_grad_norm 1.0,
                   adam_w_mode, bias_correction, grad_averaging, use_nvlamb off
    lamb_nobias    the same, weight_decay 0 for the rank-1 tensors (so no trust ratio for them)

apex needs CUDA; its multi_tensor_lamb kernel is transcribed below in float32 torch arithmetic, in the kernel's
order: the global norm of all gradients c = ‖g‖/max_grad_norm when above it (else 1); per tensor s = g/c,
m = m·β1 + (1 − β1)·s, v = v·β2 + ((1 − β2)·s)·s, u = (m/(1 − β1^t)) / (√(v/(1 − β2^t)) + ε) + wd·w (bias
corrections in double, as std::pow promotes them, then float); r = lr·(‖w‖/‖u‖) where wd ≠ 0 and both norms are
nonzero, else lr; w = w − r·u. 1 − β1 and 1 − β2 are float subtractions, as in the kernel.

Contents (float32, no __metadata__): init.<name>; lr [STEPS]; grad.<t>.<name> for t < STEPS; and for each case C
and step t: C.<t>.<name> (the parameters after step t+1), C.<t>.<name>.exp_avg, C.<t>.<name>.exp_avg_sq.
"""
import hashlib
import math
import os

import torch
from safetensors.torch import save_file

OUTPUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "optimizer_fixture.safetensors")
SHAPES = [("0.weight", [4, 3]), ("0.bias", [4]), ("1.weight", [2, 4]), ("1.bias", [2]), ("2.weight", [3])]
STEPS = 6
LR = [0.01, 0.02, 0.03, 0.025, 0.015, 0.005]


def draw():
    torch.manual_seed(20261206)
    init = {name: torch.randn(shape, dtype=torch.float32) * 0.5 for name, shape in SHAPES}
    init["2.weight"] = 1 + 0.1 * torch.randn(3)
    grads = []
    for t in range(STEPS):
        g = {name: torch.randn(shape, dtype=torch.float32) for name, shape in SHAPES}
        norm = math.sqrt(sum(float((x.double() ** 2).sum()) for x in g.values()))
        scale = (3.0 if t < 3 else 0.4) / norm
        grads.append({name: (x * scale).float() for name, x in g.items()})
    return init, grads


def adamw(init, grads, betas, eps, wd, bias_decay):
    params = {name: torch.nn.Parameter(init[name].clone()) for name, _ in SHAPES}
    decayed = [params[n] for n, s in SHAPES if bias_decay or len(s) >= 2]
    plain = [params[n] for n, s in SHAPES if not (bias_decay or len(s) >= 2)]
    groups = [{"params": decayed, "weight_decay": wd}] + ([{"params": plain, "weight_decay": 0.0}] if plain else [])
    optimizer = torch.optim.AdamW(groups, lr=LR[0], betas=betas, eps=eps, foreach=False)
    out = []
    for t in range(STEPS):
        for group in optimizer.param_groups:
            group["lr"] = float(torch.tensor(LR[t], dtype=torch.float32))
        for name, _ in SHAPES:
            params[name].grad = grads[t][name].clone()
        optimizer.step()
        out.append({name: (params[name].detach().clone(), optimizer.state[params[name]]["exp_avg"].clone(),
                           optimizer.state[params[name]]["exp_avg_sq"].clone()) for name, _ in SHAPES})
    return out


def lamb(init, grads, betas, eps, wd, bias_decay, max_grad_norm=1.0):
    f32 = torch.float32
    params = {name: init[name].clone() for name, _ in SHAPES}
    m = {name: torch.zeros_like(params[name]) for name, _ in SHAPES}
    v = {name: torch.zeros_like(params[name]) for name, _ in SHAPES}
    beta1, beta2 = torch.tensor(betas[0], dtype=f32), torch.tensor(betas[1], dtype=f32)
    out = []
    for t in range(STEPS):
        step = t + 1
        lr = torch.tensor(LR[t], dtype=f32)
        grad_norm = torch.sqrt(sum((grads[t][name].double() ** 2).sum() for name, _ in SHAPES)).float()
        max_norm = torch.tensor(max_grad_norm, dtype=f32)
        clip = grad_norm / max_norm if grad_norm > max_norm else torch.tensor(1.0, dtype=f32)
        correction1 = torch.tensor(1 - math.pow(float(beta1), step), dtype=f32)
        correction2 = torch.tensor(1 - math.pow(float(beta2), step), dtype=f32)
        for name, shape in SHAPES:
            decay = torch.tensor(wd if (bias_decay or len(shape) >= 2) else 0.0, dtype=f32)
            p = params[name]
            s = grads[t][name] / clip
            m[name] = m[name] * beta1 + (1 - beta1) * s
            v[name] = v[name] * beta2 + ((1 - beta2) * s) * s
            u = (m[name] / correction1) / (torch.sqrt(v[name] / correction2) + torch.tensor(eps, dtype=f32)) + decay * p
            ratio = lr
            if float(decay) != 0:
                p_norm = torch.sqrt((p.double() ** 2).sum()).float()
                u_norm = torch.sqrt((u.double() ** 2).sum()).float()
                if float(p_norm) != 0 and float(u_norm) != 0:
                    ratio = lr * (p_norm / u_norm)
            params[name] = p - ratio * u
        out.append({name: (params[name].clone(), m[name].clone(), v[name].clone()) for name, _ in SHAPES})
    return out


def main():
    init, grads = draw()
    tensors = {f"init.{name}": init[name].contiguous() for name, _ in SHAPES}
    tensors["lr"] = torch.tensor(LR, dtype=torch.float32)
    for t in range(STEPS):
        for name, _ in SHAPES:
            tensors[f"grad.{t}.{name}"] = grads[t][name].contiguous()
    cases = {
        "adamw": adamw(init, grads, (0.9, 0.999), 1e-8, 0.05, True),
        "adamw_nobias": adamw(init, grads, (0.9, 0.999), 1e-8, 0.05, False),
        "adamw_betas": adamw(init, grads, (0.8, 0.99), 1e-6, 0.1, True),
        "lamb": lamb(init, grads, (0.9, 0.999), 1e-6, 0.01, True),
        "lamb_nobias": lamb(init, grads, (0.9, 0.999), 1e-6, 0.01, False),
    }
    for case, steps in cases.items():
        for t, state in enumerate(steps):
            for name, (p, exp_avg, exp_avg_sq) in state.items():
                tensors[f"{case}.{t}.{name}"] = p.contiguous()
                tensors[f"{case}.{t}.{name}.exp_avg"] = exp_avg.contiguous()
                tensors[f"{case}.{t}.{name}.exp_avg_sq"] = exp_avg_sq.contiguous()
    save_file(tensors, OUTPUT)
    digest = hashlib.sha256(open(OUTPUT, "rb").read()).hexdigest()
    norms = [math.sqrt(sum(float((g.double() ** 2).sum()) for g in grads[t].values())) for t in range(STEPS)]
    print(f"wrote {OUTPUT} ({len(tensors)} tensors, sha256 {digest})")
    print("global gradient norms per step: " + ", ".join(f"{n:.3f}" for n in norms))


if __name__ == "__main__":
    main()
