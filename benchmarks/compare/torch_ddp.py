#!/usr/bin/python3
"""PyTorch peer of bench_mpi_step: DistributedDataParallel over gloo, N processes of one thread each,
the MLP 784-512-512-10 at global batch 256 (each rank its share), SGD with momentum 0.9.

Usage: /usr/bin/python3 torch_ddp.py RANKS   (OPENBLAS_NUM_THREADS=1 set by benchmarks/run). The ranks
meet through a file store in a temporary folder (no network). Prints one JSON object from rank 0:
steps/s of whole steps (median of several timed runs)."""
import datetime
import faulthandler
import json
import os
import sys
import tempfile
import time

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from models import mlp  # noqa: E402


def run(rank, world, store, out):
    # A rank stuck for two minutes prints where it is and exits (the whole run takes about 20 s).
    faulthandler.dump_traceback_later(120, exit=True)
    torch.set_num_threads(1)
    # A rank that dies makes the other fail within a minute instead of gloo's 30-minute default.
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world,
                            timeout=datetime.timedelta(seconds=60))
    torch.manual_seed(0)
    model = torch.nn.parallel.DistributedDataParallel(mlp([784, 512, 512, 10]))
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    loss_fn = torch.nn.CrossEntropyLoss()
    g = torch.Generator().manual_seed(1)
    x_all, y_all = torch.randn(256, 784, generator=g), torch.randint(0, 10, (256,), generator=g)
    lo, hi = 256 * rank // world, 256 * (rank + 1) // world
    x, y = x_all[lo:hi], y_all[lo:hi]

    def step():
        opt.zero_grad(set_to_none=True)
        loss_fn(model(x), y).backward()
        opt.step()

    for _ in range(5):
        step()
    rates = []
    for _ in range(5):
        n, t0 = 0, time.perf_counter()
        go = torch.ones(1)
        while go.item() > 0:  # every rank runs the same number of steps: rank 0 decides
            step()
            n += 1
            go = torch.tensor([1.0 if time.perf_counter() - t0 < 0.4 else 0.0])
            dist.broadcast(go, 0)
        rates.append(n / (time.perf_counter() - t0))
    if rank == 0:
        with open(out, "w") as f:
            json.dump({"steps_per_s": sorted(rates)[len(rates) // 2], "ranks": world, "torch": torch.__version__}, f)
    # Leave without tearing gloo down: about one run in four hung there (PyTorch 1.13 from Debian,
    # the rank's stack in spawn's wrapper after run() returned).
    dist.barrier()
    os._exit(0)


if __name__ == "__main__":
    world = int(sys.argv[1]) if len(sys.argv) > 1 else 2
    with tempfile.TemporaryDirectory() as d:
        out = os.path.join(d, "result.json")
        mp.spawn(run, args=(world, os.path.join(d, "store"), out), nprocs=world, join=True)
        with open(out) as f:
            print(f.read())
