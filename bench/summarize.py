#!/usr/bin/env python3
"""Summarises a bench/compare results file: the median samples/s per label and the ratios of those medians."""
import json
import statistics
import sys

rows = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
by_label = {}
for row in rows:
    by_label.setdefault(row["label"], []).append(row)

medians = {}
print(f"{'configuration':<14} {'runs':>4} {'median samples/s':>17}  per-run medians")
for label, runs in by_label.items():
    values = [r["samples_per_sec"] for r in runs]
    medians[label] = statistics.median(values)
    extra = ""
    if "ms_allreduce_exposed" in runs[0] and runs[0]["world_size"] > 1:
        exposed = statistics.median(r["ms_allreduce_exposed"] / r["ms_step"] for r in runs)
        extra = f"  exposed all-reduce {100 * exposed:.1f}% of step"
    if "ms_allreduce_waiting" in runs[0]:
        waiting = statistics.median(r["ms_allreduce_waiting"] for r in runs)
        after = statistics.median(r["ms_allreduce_after_arrival"] for r in runs)
        extra += f" (waiting {waiting:.3f} + after arrival {after:.3f} ms)"
    if "host_steal_pct" in runs[0]:
        extra += f"  steal {statistics.median(r['host_steal_pct'] for r in runs):.1f}%"
    if "peak_rss_mb" in runs[0]:
        extra += f"  peak RSS {max(r['peak_rss_mb'] for r in runs):.0f} MB"
    print(f"{label:<14} {len(values):>4} {medians[label]:>17.0f}  {' '.join(f'{v:.0f}' for v in values)}{extra}")


def ratio(a, b, target=None):
    if a in medians and b in medians:
        value = medians[a] / medians[b]
        print(f"{a} / {b}: {value:.2f}x" + (f" (target >= {target}x)" if target else ""))


# The open targets: the MLP's, or a convolutional network's (the CNN issue: twice PyTorch on a core, K=2 1.85x K=1).
convolutional = any(row.get("model", "mlp") != "mlp" for row in rows)
ratio("ours-k1", "torch-k1", 2)
ratio("ours-k2", "ours-k1", 1.85 if convolutional else 1.6)
ratio("ours-k2", "torch-ddp-k2", None if convolutional else 10)
ratio("ours-k2", "ours-k2-mpi", 1)
