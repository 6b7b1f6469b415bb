#!/usr/bin/env python3
"""PyTorch CUDA peer of bench_gpu: the same rows on the same GPU, fp32, TF32 off (as cuBLAS's default
math mode, which dp uses).

  element-wise, 16M and 64M floats: y = a*x + b*z and y = a*x + b*sin(z), eager (temporaries from the
      caching allocator) and with out= (preallocated), plus the device copy y.copy_(x); GB/s count
      bytes read plus written as bench_gpu does (12 per element, 8 for the copy). Timed with CUDA
      events around 8 calls, median of several.
  torch.mm n = 2048 and 4096, GFLOP/s.
  the MLP training steps of compare/torch_mlp_step.py (same models, SGD with momentum 0.9) on the GPU,
      steps/s: eager, eager reading the loss every step (loss.item(), as dp's backward returns it),
      and torch.compile (default and reduce-overhead, i.e. CUDA graphs) when it works.
  torch.compile of the element-wise expressions too. Whatever fails is reported under "unavailable".

Usage: python3 torch_gpu.py [--quick] [--no-compile] [--budget SECONDS]
Prints one JSON line after each section, each holding everything measured so far; the last one (with
"partial": false) is the result. A caller that has to stop it early keeps its last line.
"""
import argparse
import json
import os
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "compare"))
from models import mlp  # noqa: E402

A, B = 2.0, 3.0
SIZES = {"16M": 1 << 24, "64M": 1 << 26}
MM_SIZES = (2048, 4096)
LAUNCHES = 8
WARM_UP_S = 1.0


def median(v):
    v = sorted(v)
    return v[len(v) // 2]


def gpu_seconds(fn, reps):
    """Median GPU seconds per call of fn: LAUNCHES calls between two CUDA events, `reps` times, after
    about WARM_UP_S of calls (the GPU idles at low clocks; bench_gpu warms up as long)."""
    t0 = time.perf_counter()
    while True:
        for _ in range(LAUNCHES):
            fn()
        torch.cuda.synchronize()
        if time.perf_counter() - t0 >= WARM_UP_S:
            break
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    times = []
    for _ in range(reps):
        start.record()
        for _ in range(LAUNCHES):
            fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) / 1e3 / LAUNCHES)
    return median(times)


def short(e):
    text = f"{type(e).__name__}: {e}".strip().replace("\n", " ")
    return text[:300]


def elementwise(reps, compile_ok, unavailable):
    out = {}
    g = torch.Generator(device="cuda").manual_seed(0)
    compiled = {}
    if compile_ok:
        try:
            compiled["axpby"] = torch.compile(lambda x, z: A * x + B * z)
            compiled["axpbsin"] = torch.compile(lambda x, z: A * x + B * torch.sin(z))
        except Exception as e:  # any failure means "not available here"
            unavailable["compile_elementwise"] = short(e)
    for label, n in SIZES.items():
        x = torch.rand(n, device="cuda", generator=g)
        z = torch.rand(n, device="cuda", generator=g)
        y = torch.empty_like(x)
        t1 = torch.empty_like(x)

        def axpby_out():
            torch.mul(z, B, out=t1)
            torch.add(t1, x, alpha=A, out=y)

        def axpbsin_out():
            torch.sin(z, out=t1)
            torch.mul(t1, B, out=t1)
            torch.add(t1, x, alpha=A, out=y)

        res = {
            "copy_GBps": 8 * n / gpu_seconds(lambda: y.copy_(x), reps) / 1e9,
            "axpby_eager_GBps": 12 * n / gpu_seconds(lambda: A * x + B * z, reps) / 1e9,
            "axpby_out_GBps": 12 * n / gpu_seconds(axpby_out, reps) / 1e9,
            "axpbsin_eager_GBps": 12 * n / gpu_seconds(lambda: A * x + B * torch.sin(z), reps) / 1e9,
            "axpbsin_out_GBps": 12 * n / gpu_seconds(axpbsin_out, reps) / 1e9,
        }
        for name, fn in compiled.items():
            key = f"{name}_compile_GBps"
            try:
                for _ in range(3):
                    fn(x, z)
                res[key] = 12 * n / gpu_seconds(lambda fn=fn: fn(x, z), reps) / 1e9
            except Exception as e:
                res[key] = None
                unavailable[f"compile_{name}_{label}"] = short(e)
        out[label] = res
        del x, z, y, t1
        torch.cuda.empty_cache()
    return out


def matmul(reps):
    out = {}
    for n in MM_SIZES:
        a = torch.randn(n, n, device="cuda")
        b = torch.randn(n, n, device="cuda")
        c = torch.empty(n, n, device="cuda")
        out[str(n)] = 2.0 * n**3 / gpu_seconds(lambda: torch.mm(a, b, out=c), reps) / 1e9
    return out


def steps_per_second(sizes, batch, seconds, runs, compile_mode=None, read_loss=False):
    torch.manual_seed(0)
    model = mlp(sizes).cuda()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    loss_fn = torch.nn.CrossEntropyLoss()
    x = torch.randn(batch, sizes[0], device="cuda")
    y = torch.randint(0, sizes[-1], (batch,), device="cuda")
    forward = model if compile_mode is None else torch.compile(model, mode=compile_mode)

    mark_step = getattr(getattr(torch, "compiler", None), "cudagraph_mark_step_begin", None)

    def step():
        if compile_mode == "reduce-overhead" and mark_step:
            mark_step()  # a new training iteration: the graphs' previous outputs may be overwritten
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(forward(x), y)
        loss.backward()
        opt.step()
        if read_loss:
            loss.item()

    for _ in range(10 if compile_mode else 5):  # compile, and record CUDA graphs for reduce-overhead
        step()
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < WARM_UP_S:  # the GPU idles at low clocks: about a second, as bench_gpu
        step()
    torch.cuda.synchronize()
    rates = []
    for _ in range(runs):
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds / runs:
            step()
            n += 1
        torch.cuda.synchronize()  # the queued steps count too
        rates.append(n / (time.perf_counter() - t0))
    return median(rates)


MODELS = {"large": ([784, 512, 512, 10], 256), "small": ([64, 128, 128, 10], 64)}


def mlp_steps(seconds, runs, compile_ok, deadline, unavailable, progress):
    """Steps/s of both models: eager first, then the torch.compile variants while the budget lasts;
    progress(results so far) after each."""
    out = {}
    for name, (sizes, batch) in MODELS.items():
        out[name] = {
            "eager": steps_per_second(sizes, batch, seconds, runs),
            "eager_item": steps_per_second(sizes, batch, seconds, runs, read_loss=True),
        }
    progress(out)
    for mode, key in (("default", "compile"), ("reduce-overhead", "compile_reduce_overhead")):
        for name, (sizes, batch) in MODELS.items():
            out[name][key] = None
            if not compile_ok:
                unavailable[f"{key}_{name}"] = "skipped (--no-compile)"
                continue
            if time.monotonic() > deadline:
                unavailable[f"{key}_{name}"] = "skipped: the time budget was spent"
                continue
            try:
                out[name][key] = steps_per_second(sizes, batch, seconds, runs, compile_mode=mode)
            except Exception as e:
                unavailable[f"{key}_{name}"] = short(e)
            progress(out)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer repetitions, shorter runs")
    ap.add_argument("--no-compile", action="store_true", help="skip torch.compile")
    ap.add_argument("--budget", type=float, default=300.0,
                    help="seconds after which no further torch.compile variant is started (default 300)")
    args = ap.parse_args()
    if args.quick:  # as bench_gpu --quick
        global WARM_UP_S
        WARM_UP_S = 0.5
    t0 = time.monotonic()
    if not torch.cuda.is_available():
        print(json.dumps({"torch": torch.__version__, "error": "torch.cuda.is_available() is False"}))
        return
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.set_float32_matmul_precision("highest")
    reps = 5 if args.quick else 9
    seconds, runs = (1.0, 3) if args.quick else (2.0, 5)
    unavailable = {}
    compile_ok = not args.no_compile
    out = {"torch": torch.__version__, "cuda": torch.version.cuda, "device": torch.cuda.get_device_name(0),
           "unavailable": unavailable, "partial": True}

    def report():  # after each section, so that a caller that stops us early keeps what was measured
        out["seconds"] = time.monotonic() - t0
        print(json.dumps(out), flush=True)

    out["elementwise"] = elementwise(reps, compile_ok, unavailable)
    report()
    out["mm_GFLOPs"] = matmul(reps)
    report()

    def mlp_progress(partial):
        out["mlp_steps_per_s"] = partial
        report()

    out["mlp_steps_per_s"] = mlp_steps(seconds, runs, compile_ok, t0 + args.budget, unavailable, mlp_progress)
    out["partial"] = False
    report()


if __name__ == "__main__":
    main()
