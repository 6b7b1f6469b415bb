#!/usr/bin/python3
"""PyTorch peer of bench_conv_step: the same LeNet-style training step (forward, cross_entropy,
backward, SGD with momentum 0.9) on 28x28 single-channel inputs at batch 64, fp32.

Usage: /usr/bin/python3 torch_conv_step.py THREADS   (OPENBLAS_NUM_THREADS=THREADS set by
benchmarks/run). Prints one JSON object with steps/s (median of several timed runs) and whether
PyTorch's convolutions go through oneDNN (mkldnn).
"""
import json
import sys

import torch

from torch_mlp_step import steps_per_second_of


def lenet():
    return torch.nn.Sequential(
        torch.nn.Conv2d(1, 6, 5), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
        torch.nn.Conv2d(6, 16, 5), torch.nn.ReLU(), torch.nn.MaxPool2d(2), torch.nn.Flatten(),
        torch.nn.Linear(256, 120), torch.nn.ReLU(), torch.nn.Linear(120, 84), torch.nn.ReLU(),
        torch.nn.Linear(84, 10))


def main():
    threads = int(sys.argv[1]) if len(sys.argv) > 1 else 1
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    rate = steps_per_second_of(lenet(), torch.randn(64, 1, 28, 28), torch.randint(0, 10, (64,)))
    print(json.dumps({"torch": torch.__version__, "threads": threads, "mkldnn": torch.backends.mkldnn.is_available(),
                      "lenet_steps_per_s": rate}))


if __name__ == "__main__":
    main()
