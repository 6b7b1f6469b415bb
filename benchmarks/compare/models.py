"""PyTorch models shared by the peer scripts (the same layers as dp's benchmarks)."""
import torch


def mlp(sizes):
    """Linear layers of the given widths with ReLU between them, as nn::sequential in mlp_step.cpp."""
    layers = []
    for i in range(len(sizes) - 1):
        layers.append(torch.nn.Linear(sizes[i], sizes[i + 1]))
        if i + 2 < len(sizes):
            layers.append(torch.nn.ReLU())
    return torch.nn.Sequential(*layers)
