#!/usr/bin/python3
"""PyTorch peer of bench_mlp_step: the same training step (forward, cross_entropy, backward, SGD with
momentum 0.9) for MLP 784-512-512-10 at batch 256 and 64-128-128-10 at batch 64, fp32.

Usage: /usr/bin/python3 torch_mlp_step.py THREADS   (also set OPENBLAS_NUM_THREADS=THREADS before
starting Python, as benchmarks/run does: torch.set_num_threads alone does not limit OpenBLAS).
Prints one JSON object with steps/s (median of several timed runs).
"""
import json
import sys
import time

import torch

from models import mlp


def steps_per_second(sizes, batch):
    torch.manual_seed(0)
    return steps_per_second_of(mlp(sizes), torch.randn(batch, sizes[0]), torch.randint(0, sizes[-1], (batch,)))


def steps_per_second_of(model, x, y, seconds=2.0, runs=5):
    """Training steps per second of `model` on (x, y): SGD momentum 0.9, cross entropy."""
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    loss_fn = torch.nn.CrossEntropyLoss()

    def step():
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()
        return loss

    for _ in range(5):
        step()
    rates = []
    for _ in range(runs):
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds / runs:
            step()
            n += 1
        rates.append(n / (time.perf_counter() - t0))
    rates.sort()
    return rates[len(rates) // 2]


def main():
    threads = int(sys.argv[1]) if len(sys.argv) > 1 else 1
    torch.set_num_threads(threads)
    out = {"torch": torch.__version__, "threads": threads,
           "large_steps_per_s": steps_per_second([784, 512, 512, 10], 256),
           "small_steps_per_s": steps_per_second([64, 128, 128, 10], 64)}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
