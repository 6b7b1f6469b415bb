#!/usr/bin/python3
"""PyTorch peer for train_digits: the same data (examples/data/digits.csv.gz, pixels / 16, an 80/20
split from the seed), model (64-256-10 MLP), recipe (SGD momentum 0.9, lr 0.1 with a cosine
schedule per step, label smoothing 0.1, batch 32, 40 epochs), 1 thread. Prints JSON: training
seconds (epochs only, as train_digits reports) and test accuracy. Usage: torch_digits.py SEED"""
import gzip
import json
import os
import sys
import time

import torch

seed = int(sys.argv[1]) if len(sys.argv) > 1 else 1
torch.set_num_threads(1)
torch.manual_seed(seed)
path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "examples", "data", "digits.csv.gz")
rows = [list(map(float, line.split(","))) for line in gzip.open(path, "rt") if line.strip()]
data = torch.tensor(rows)
x, y = data[:, :64] / 16, data[:, 64].long()
perm = torch.randperm(len(y))
k = int(len(y) * 0.8 + 0.5)
xtr, ytr, xte, yte = x[perm[:k]], y[perm[:k]], x[perm[k:]], y[perm[k:]]
model = torch.nn.Sequential(torch.nn.Linear(64, 256), torch.nn.ReLU(), torch.nn.Linear(256, 10))
opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
epochs, batch = 40, 32
steps = epochs * ((len(ytr) + batch - 1) // batch)
sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=0.1)
t0 = time.perf_counter()
for epoch in range(epochs):
    order = torch.randperm(len(ytr))
    for i in range(0, len(ytr), batch):
        idx = order[i : i + batch]
        opt.zero_grad()
        loss_fn(model(xtr[idx]), ytr[idx]).backward()
        opt.step()
        sched.step()
seconds = time.perf_counter() - t0
with torch.no_grad():
    acc = (model(xte).argmax(1) == yte).float().mean().item()
print(json.dumps({"seconds": seconds, "accuracy": acc, "torch": torch.__version__}))
