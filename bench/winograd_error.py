#!/usr/bin/env python3
"""Float32 rounding error of Winograd's F(m×m, r×r) for several sets of interpolation points: the simulation
behind the choice of points in Sources/CKernels/include/Winograd.h (BENCHMARKS.md, "Winograd F(4×4, 3×3)").

For each point set it builds Aᵀ, G and Bᵀ by the Toom-Cook construction (points p₀…p_{n−2} and ∞), then computes
whole tiles in float32 as the kernels do (U = G g Gᵀ and V = Bᵀ d Bᵀᵀ per channel, M = Σ_channels U ⊙ V, Y = Aᵀ M A)
and compares them with the direct sum in float64. Two measures, as in the tests:
  - elementwise: |error| / max(1, |output|), with weights U(±1/√(r²·C)) (PyTorch's initialisation);
  - normwise: |error| / the tile's largest |output|, with weights U(±1) (the layer tests' harness).
Inputs are U(±2). Needs numpy only:  python3 bench/winograd_error.py
"""
import numpy as np


def matrices(points, m, r):
    n = m + r - 1
    p = list(points)
    assert len(p) == n - 1
    at = np.zeros((m, n))
    for i in range(m):
        for j in range(n - 1):
            at[i, j] = p[j] ** i
    at[m - 1, n - 1] = 1
    g = np.zeros((n, r))
    for j in range(n - 1):
        f = np.prod([p[j] - p[l] for l in range(n - 1) if l != j])
        for k in range(r):
            g[j, k] = p[j] ** k / f
    g[n - 1, r - 1] = 1
    # Bᵀ solves Y = Aᵀ[(G g) ⊙ (Bᵀ d)] for every g and d (exact: the entries are small dyadic rationals).
    rows, rhs = [], []
    for i in range(m):
        for k in range(r):
            for t in range(n):
                row = np.zeros(n * n)
                for j in range(n):
                    row[j * n + t] = at[i, j] * g[j, k]
                rows.append(row)
                rhs.append(1.0 if t == i + k else 0.0)
    bt = np.linalg.lstsq(np.array(rows), np.array(rhs), rcond=None)[0].reshape(n, n)
    return at, g, np.round(bt * 64) / 64


def worst_error(points, m, r, channels, normwise, tiles=200, seed=0):
    at, g_matrix, bt = matrices(points, m, r)
    n = m + r - 1
    f = np.float32
    rng = np.random.default_rng(seed)
    bound = 1.0 if normwise else 1 / np.sqrt(r * r * channels)
    worst = 0.0
    for _ in range(tiles):
        g = rng.uniform(-bound, bound, (channels, r, r))
        d = rng.uniform(-2, 2, (channels, n, n))
        direct = sum(
            np.array([[(g[c] * d[c, i:i + r, j:j + r]).sum() for j in range(m)] for i in range(m)])
            for c in range(channels))
        total = np.zeros((n, n), f)
        for c in range(channels):
            u = (g_matrix.astype(f) @ g[c].astype(f) @ g_matrix.T.astype(f)).astype(f)
            v = (bt.astype(f) @ d[c].astype(f) @ bt.T.astype(f)).astype(f)
            total = (total + u * v).astype(f)
        y = at.astype(f) @ total @ at.T.astype(f)
        scale = np.abs(direct).max() if normwise else np.maximum(1, np.abs(direct))
        worst = max(worst, float((np.abs(y - direct) / scale).max()))
    return worst


CASES = [
    ("F(2x2, 3x3) 0, 1, -1", (0, 1, -1), 2, 3),
    ("F(4x4, 3x3) 0, 1, -1, 2, -2", (0, 1, -1, 2, -2), 4, 3),
    ("F(4x4, 3x3) 0, 1, -1, 1/2, -1/2", (0, 1, -1, 0.5, -0.5), 4, 3),
    ("F(4x4, 3x3) 0, 1, -1, 2, -1/2 (kept)", (0, 1, -1, 2, -0.5), 4, 3),
    ("F(2x2, 5x5) 0, 1, -1, 2, -2", (0, 1, -1, 2, -2), 2, 5),
    ("F(2x2, 5x5) 0, 1, -1, 2, -1/2", (0, 1, -1, 2, -0.5), 2, 5),
]

if __name__ == "__main__":
    for normwise in (False, True):
        print("normwise (weights U(±1))" if normwise else "elementwise (weights U(±1/sqrt(r²C)))")
        for name, points, m, r in CASES:
            errors = [worst_error(points, m, r, c, normwise) for c in (3, 8, 32)]
            print(f"  {name:40s} C=3 {errors[0]:.1e}  C=8 {errors[1]:.1e}  C=32 {errors[2]:.1e}")
