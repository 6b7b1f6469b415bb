#!/usr/bin/python3
"""PyTorch peer for the reduction benchmark (16M floats as [4096, 4096]): x.sum(), (x*x).sum()
(eager: x*x is stored first) and x.max(1). Prints one JSON object of GB/s of input read, at the
thread counts given. Run with Debian's python3-torch: /usr/bin/python3 torch_reduce.py 1 2
"""
import json
import sys

import torch

from timing import median_seconds

N = 1 << 24


def rate(fn, reps=9):
    return N * 4 / median_seconds(fn, reps) / 1e9


def main():
    x = torch.randn(4096, N // 4096)
    out = {}
    for t in [int(a) for a in sys.argv[1:]] or [1, 2]:
        torch.set_num_threads(t)
        out[str(t)] = {"sum": rate(lambda: x.sum().item()), "sum_squares": rate(lambda: (x * x).sum().item()),
                       "row_max": rate(lambda: x.max(1))}
    print(json.dumps({"torch": torch.__version__, "results": out}))


if __name__ == "__main__":
    main()
