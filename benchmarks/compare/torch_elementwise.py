#!/usr/bin/python3
"""PyTorch eager peer for the element-wise benchmark: y = a*x + b*sin(z) over 16M floats.

Prints one JSON object: GB/s (three arrays of 4 bytes per element, as dp's benchmark counts) for
eager expressions (which allocate their temporaries) and for preallocated outputs (out=), at the
thread counts given. Run with Debian's python3-torch: /usr/bin/python3 torch_elementwise.py 1 2
"""
import json
import sys

import torch

from timing import median_seconds

N = 1 << 24
A, B = 2.0, 3.0


def best_rate(fn, reps=7):
    return N * 12 / median_seconds(fn, reps) / 1e9


def main():
    threads = [int(t) for t in sys.argv[1:]] or [1, 2]
    g = torch.Generator().manual_seed(0)
    x = torch.rand(N, generator=g)
    z = torch.rand(N, generator=g)
    y = torch.empty(N)
    t1 = torch.empty(N)
    out = {"torch": torch.__version__, "results": {}}
    for t in threads:
        torch.set_num_threads(t)

        def eager():
            return A * x + B * torch.sin(z)

        def eager_axpby():
            return A * x + B * z

        def prealloc():
            torch.sin(z, out=t1)
            torch.mul(t1, B, out=t1)
            torch.add(t1, x, alpha=A, out=y)

        out["results"][str(t)] = {
            "axpbsin_eager_GBps": best_rate(eager),
            "axpbsin_prealloc_GBps": best_rate(prealloc),
            "axpby_eager_GBps": best_rate(eager_axpby),
        }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
