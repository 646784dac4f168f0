#!/usr/bin/python3
"""PyTorch CPU peer for bench/p7-train-step: the same VGG11-BN (CIFAR, 10 classes),
batch 128, 3x32x32, forward + backward (no optimizer step), float32, NCHW.
Prints one line: "pytorch <images/s> <seconds/step> <threads>".
Run with Debian's torch: /usr/bin/python3 bench/pytorch-train-step.py [--threads 2] [--steps 5]"""
import argparse
import time

import torch
import torch.nn as nn

parser = argparse.ArgumentParser()
parser.add_argument("--threads", type=int, default=2)
parser.add_argument("--steps", type=int, default=5)
parser.add_argument("--warmup", type=int, default=2)
parser.add_argument("--batch", type=int, default=128)
args = parser.parse_args()
torch.set_num_threads(args.threads)
torch.manual_seed(0)

layers, cin = [], 3
for v in [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"]:
    if v == "M":
        layers.append(nn.MaxPool2d(2))
    else:
        layers += [nn.Conv2d(cin, v, 3, padding=1), nn.BatchNorm2d(v), nn.ReLU()]
        cin = v
model = nn.Sequential(*layers, nn.Flatten(), nn.Linear(512, 10)).train()
x = torch.randn(args.batch, 3, 32, 32)
y = torch.randint(0, 10, (args.batch,))
loss_fn = nn.CrossEntropyLoss()


def step():
    model.zero_grad(set_to_none=True)
    loss_fn(model(x), y).backward()


for _ in range(args.warmup):
    step()
times = []
for _ in range(args.steps):
    t0 = time.perf_counter()
    step()
    times.append(time.perf_counter() - t0)
times.sort()
median = times[len(times) // 2]
print(f"pytorch {args.batch / median:.1f} {median:.4f} {args.threads}")
