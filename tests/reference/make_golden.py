#!/usr/bin/python3
"""Golden fixtures for tests/test_nn_golden.c, computed with PyTorch in float64.

Network (a small VGG-style net with BatchNorm and a BatchEnsemble block, M = 2):
  conv1 Conv2d(3->8, 3x3, pad 1, no bias: BatchNorm follows, so a bias gradient
        would be exactly zero and no test of anything) -> bn1 BatchNorm2d(8) -> ReLU -> MaxPool(2)
  tile x2 (member-major)
  conv2 BE Conv2d(8->8, no shared bias; alpha [2,8], gamma [2,8], bias [2,8])
    -> bn2 BE BatchNorm2d(8): statistics over both members, per-member affine [2,8]
    -> ReLU -> MaxPool(2)
  flatten -> fc BE Linear(32->5; alpha [2,32], gamma [2,5], bias [2,5])
  loss = cross-entropy (mean) over the 8 tiled rows with tiled labels.
Stored: inputs, parameters, logits, loss, every parameter gradient, the input
gradient and the BatchNorm running statistics after the training-mode forward.

Run with Debian's torch:  /usr/bin/python3 tests/reference/make_golden.py
It rewrites tests/reference/golden_small_vgg_be.bin (format: see write()).
"""
import os
import struct

import torch
import torch.nn.functional as F

torch.manual_seed(20261125)
dt = torch.float64
B, M = 4, 2


def rand(*shape, scale=1.0):
    return (torch.rand(*shape, dtype=dt) * 2 - 1) * scale


params = {
    "conv1.weight": rand(8, 3, 3, 3, scale=0.4),
    "bn1.weight": 1 + rand(8, scale=0.3),
    "bn1.bias": rand(8, scale=0.2),
    "conv2.weight": rand(8, 8, 3, 3, scale=0.2),
    "conv2.alpha": 1 + rand(M, 8, scale=0.5),
    "conv2.gamma": 1 + rand(M, 8, scale=0.5),
    "conv2.bias": rand(M, 8, scale=0.2),
    "bn2.weight": 1 + rand(M, 8, scale=0.3),
    "bn2.bias": rand(M, 8, scale=0.2),
    "fc.weight": rand(5, 32, scale=0.3),
    "fc.alpha": 1 + rand(M, 32, scale=0.5),
    "fc.gamma": 1 + rand(M, 5, scale=0.5),
    "fc.bias": rand(M, 5, scale=0.2),
}
for p in params.values():
    p.requires_grad_(True)
x = rand(B, 3, 8, 8).requires_grad_(True)
labels = torch.tensor([3, 0, 4, 1])
buffers = {
    "bn1.running_mean": torch.zeros(8, dtype=dt), "bn1.running_var": torch.ones(8, dtype=dt),
    "bn2.running_mean": torch.zeros(8, dtype=dt), "bn2.running_var": torch.ones(8, dtype=dt),
}


def per_member(v, rows):
    """[M, C] -> one row per tiled sample (member-major), like repeat_interleave."""
    return v.repeat_interleave(rows // M, dim=0)


P = params
h = F.conv2d(x, P["conv1.weight"], None, padding=1)
h = F.batch_norm(h, buffers["bn1.running_mean"], buffers["bn1.running_var"], P["bn1.weight"], P["bn1.bias"],
                 training=True, momentum=0.1, eps=1e-5)
h = F.max_pool2d(F.relu(h), 2)
h = h.repeat(M, 1, 1, 1)                                   # tile: [M*B, ...]
rows = h.shape[0]
h = h * per_member(P["conv2.alpha"], rows)[:, :, None, None]
h = F.conv2d(h, P["conv2.weight"], None, padding=1)
h = h * per_member(P["conv2.gamma"], rows)[:, :, None, None] + per_member(P["conv2.bias"], rows)[:, :, None, None]
h = F.batch_norm(h, buffers["bn2.running_mean"], buffers["bn2.running_var"], None, None,
                 training=True, momentum=0.1, eps=1e-5)
h = h * per_member(P["bn2.weight"], rows)[:, :, None, None] + per_member(P["bn2.bias"], rows)[:, :, None, None]
h = F.max_pool2d(F.relu(h), 2)
h = h.flatten(1)
h = (h * per_member(P["fc.alpha"], rows)) @ P["fc.weight"].t()
logits = h * per_member(P["fc.gamma"], rows) + per_member(P["fc.bias"], rows)
loss = F.cross_entropy(logits, labels.repeat(M))
loss.backward()

out = {"x": x.detach(), "labels": labels.to(dt)}
out.update({k: v.detach() for k, v in params.items()})
out["logits"] = logits.detach()
out["loss"] = loss.detach().reshape(1)
out.update({"grad." + k: v.grad for k, v in params.items()})
out["grad.x"] = x.grad
out.update(buffers)


def write(path, tensors):
    """magic "P7GOLD01", count (u32); then per tensor: name length (u32), name,
    ndim (u32), extents (u32 each), float32 values (little-endian, row-major)."""
    with open(path, "wb") as f:
        f.write(b"P7GOLD01")
        f.write(struct.pack("<I", len(tensors)))
        for name, t in tensors.items():
            t = t.detach().to(torch.float32).contiguous()
            f.write(struct.pack("<I", len(name)) + name.encode())
            f.write(struct.pack("<I", t.dim()) + b"".join(struct.pack("<I", d) for d in t.shape))
            f.write(t.numpy().astype("<f4").tobytes())


path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "golden_small_vgg_be.bin")
write(path, out)
print(f"wrote {path}: {len(out)} tensors, loss {loss.item():.6f}")
