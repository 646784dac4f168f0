#!/usr/bin/python3
"""PyTorch CPU peer for bench/p7-inference: the same VGG11-BN (CIFAR, 10 classes) in
evaluation mode under torch.no_grad(), batch 128, 3x32x32, float32, in NCHW and in
channels_last (PyTorch's faster layout on CPU varies by model and machine).
Prints one line per layout: "pytorch <layout> <images/s> <seconds/forward> <threads>".
Run with Debian's torch: /usr/bin/python3 bench/pytorch-inference.py [--threads 2] [--steps 10]"""
import argparse
import importlib.util
import os
import time

import torch

parser = argparse.ArgumentParser()
parser.add_argument("--threads", type=int, default=2)
parser.add_argument("--steps", type=int, default=10)
parser.add_argument("--warmup", type=int, default=2)
parser.add_argument("--batch", type=int, default=128)
args = parser.parse_args()
torch.set_num_threads(args.threads)
torch.manual_seed(0)

# The VGG11-BN of the training comparison, so both peers measure one definition.
_here = os.path.dirname(os.path.abspath(__file__))
_spec = importlib.util.spec_from_file_location("pytorch_train_cifar", os.path.join(_here, "pytorch-train-cifar.py"))
cifar = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(cifar)
model = cifar.vgg11_bn().eval()
x = torch.randn(args.batch, 3, 32, 32)

for layout, fmt in (("nchw", torch.contiguous_format), ("channels_last", torch.channels_last)):
    m = model.to(memory_format=fmt)
    xi = x.contiguous(memory_format=fmt)
    with torch.no_grad():
        for _ in range(args.warmup):
            m(xi)
        times = []
        for _ in range(args.steps):
            t0 = time.perf_counter()
            m(xi)
            times.append(time.perf_counter() - t0)
    times.sort()
    median = times[len(times) // 2]
    print(f"pytorch {layout} {args.batch / median:.1f} {median:.4f} {args.threads}", flush=True)
