#!/usr/bin/python3
"""PyTorch peer for benchmarks/memory.cpp: the rise of peak RSS over the RSS after `import torch`,
for 20 training steps of MLP 784-512-512-10 at batch 256 with SGD momentum, 1 thread. Prints JSON."""
import json
import resource

import torch


def rss_mb():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 1e6


torch.set_num_threads(1)
before = rss_mb()
torch.manual_seed(0)
model = torch.nn.Sequential(torch.nn.Linear(784, 512), torch.nn.ReLU(), torch.nn.Linear(512, 512), torch.nn.ReLU(),
                            torch.nn.Linear(512, 10))
opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
x = torch.randn(256, 784)
y = torch.randint(0, 10, (256,))
for _ in range(20):
    opt.zero_grad(set_to_none=False)
    torch.nn.functional.cross_entropy(model(x), y).backward()
    opt.step()
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e3
print(json.dumps({"peak_rise_mb": peak - before, "baseline_mb": before, "torch": torch.__version__}))
