#!/usr/bin/python3
"""PyTorch CPU peer of bench/p7-models: SimpleCNN, VGG11-BN and BatchEnsemble VGG11-BN
(the models of bench/pytorch-train-cifar.py, which match p7's), timed one step at a time
on request, so the driver can alternate p7 and PyTorch steps within one run.

Serve mode (the default) reads commands on stdin, one per line, and answers one line each:
  prepare MODEL MODE LAYOUT BATCH   build, warm up (2 steps)          -> "ok"
  run MODEL MODE LAYOUT BATCH STEPS [WARM]
                                    WARM untimed steps (default 0), then
                                    time STEPS steps (after prepare)  -> "<seconds per step>"
  forget                            drop every prepared model         -> "ok"
  quit
MODEL simple | vgg11 | be-vgg11 (BatchEnsemble, --members M; BATCH is per member);
MODE train (forward, backward, Adam step) | infer (eval mode, no grad);
LAYOUT nchw | cl (channels_last). Errors answer "error <message>".
At start it prints "ready torch <version> threads <n>".

--memory MODEL MODE LAYOUT BATCH: a fresh process runs 3 steps and prints
"memory <peak RSS bytes> <RSS bytes before the model>" (getrusage ru_maxrss; torch 1.13
keeps no allocator statistics on CPU).
Run with Debian's torch: /usr/bin/python3 bench/pytorch-models.py [--threads 2] [--members 4]"""
import argparse
import importlib.util
import os
import resource
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

_here = os.path.dirname(os.path.abspath(__file__))
_spec = importlib.util.spec_from_file_location("pytorch_train_cifar", os.path.join(_here, "pytorch-train-cifar.py"))
cifar = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(cifar)

VGG11_PLAN = [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"]


def member_rows(factor, batch):
    """[M, C] per-member factors -> [M*B, C, 1, 1], member-major like the tiled batch."""
    return factor.repeat_interleave(batch, dim=0)


def random_signs(shape, p_plus=0.5):
    """p7's fast-weight init for v in [0, 1]: random signs, P(+1) = v."""
    return torch.where(torch.rand(shape) < p_plus, 1.0, -1.0)


class BEConv2d(nn.Module):
    """p7's BE conv: member m computes conv(x * alpha_m, W) * gamma_m + bias_m, W shared."""

    def __init__(self, cin, cout, members):
        super().__init__()
        self.members = members
        self.conv = nn.Conv2d(cin, cout, 3, padding=1, bias=False)
        self.alpha = nn.Parameter(random_signs((members, cin)))
        self.gamma = nn.Parameter(random_signs((members, cout)))
        bound = 1.0 / (cin * 9) ** 0.5
        self.bias = nn.Parameter(torch.empty(members, cout).uniform_(-bound, bound))

    def forward(self, x):
        b = x.shape[0] // self.members
        y = self.conv(x * member_rows(self.alpha, b)[:, :, None, None])
        return y * member_rows(self.gamma, b)[:, :, None, None] + member_rows(self.bias, b)[:, :, None, None]


class BEBatchNorm2d(nn.Module):
    """p7's BE BatchNorm: statistics pooled over all members' rows, a per-member affine."""

    def __init__(self, channels, members):
        super().__init__()
        self.members = members
        self.bn = nn.BatchNorm2d(channels, affine=False)
        self.weight = nn.Parameter(torch.ones(members, channels))
        self.bias = nn.Parameter(torch.zeros(members, channels))

    def forward(self, x):
        b = x.shape[0] // self.members
        y = self.bn(x)
        return y * member_rows(self.weight, b)[:, :, None, None] + member_rows(self.bias, b)[:, :, None, None]


class BELinear(nn.Module):
    def __init__(self, fin, fout, members):
        super().__init__()
        self.members = members
        self.linear = nn.Linear(fin, fout, bias=False)
        self.alpha = nn.Parameter(random_signs((members, fin)))
        self.gamma = nn.Parameter(random_signs((members, fout)))
        bound = 1.0 / fin ** 0.5
        self.bias = nn.Parameter(torch.empty(members, fout).uniform_(-bound, bound))

    def forward(self, x):
        b = x.shape[0] // self.members
        y = self.linear(x * member_rows(self.alpha, b))
        return y * member_rows(self.gamma, b) + member_rows(self.bias, b)


class TileMembers(nn.Module):
    """[B, ...] -> [M*B, ...], member-major (p7's P7_STEP_TILE_MEMBERS)."""

    def __init__(self, members):
        super().__init__()
        self.members = members

    def forward(self, x):
        return x.repeat(self.members, 1, 1, 1)


def be_vgg11_bn(members):
    layers, cin = [TileMembers(members)], 3
    for v in VGG11_PLAN:
        if v == "M":
            layers.append(nn.MaxPool2d(2))
        else:
            layers += [BEConv2d(cin, v, members), BEBatchNorm2d(v, members), nn.ReLU()]
            cin = v
    return nn.Sequential(*layers, nn.Flatten(), BELinear(512, 10, members))


class Workload:
    """One model in one mode and layout, with its input, labels and optimizer."""

    def __init__(self, model_name, mode, layout, batch, members):
        torch.manual_seed(0)
        if model_name == "simple":
            self.model, self.rows = cifar.simple_cnn(), batch
        elif model_name == "vgg11":
            self.model, self.rows = cifar.vgg11_bn(), batch
        elif model_name == "be-vgg11":
            self.model, self.rows = be_vgg11_bn(members), batch * members
        else:
            raise ValueError(f"unknown model {model_name!r} (simple, vgg11, be-vgg11)")
        if mode not in ("train", "infer"):
            raise ValueError(f"unknown mode {mode!r} (train, infer)")
        if layout not in ("nchw", "cl"):
            raise ValueError(f"unknown layout {layout!r} (nchw, cl)")
        self.mode = mode
        self.x = torch.randn(batch, 3, 32, 32)
        self.y = torch.randint(0, 10, (self.rows,))
        if layout == "cl":
            self.model = self.model.to(memory_format=torch.channels_last)
            self.x = self.x.contiguous(memory_format=torch.channels_last)
        if mode == "train":
            self.model.train()
            self.opt = torch.optim.Adam(self.model.parameters(), lr=1e-4)
        else:
            self.model.eval()

    def step(self):
        if self.mode == "train":
            self.opt.zero_grad(set_to_none=True)
            F.cross_entropy(self.model(self.x), self.y).backward()
            self.opt.step()
        else:
            with torch.no_grad():
                self.model(self.x)

    def time_steps(self, steps):
        t0 = time.perf_counter()
        for _ in range(steps):
            self.step()
        return (time.perf_counter() - t0) / steps


def rss_bytes():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def serve(args):
    print(f"ready torch {torch.__version__} threads {torch.get_num_threads()}", flush=True)
    prepared = {}
    for line in sys.stdin:
        words = line.split()
        if not words:
            continue
        try:
            if words[0] == "quit":
                break
            if words[0] == "forget":
                prepared.clear()
                answer = "ok"
            elif words[0] == "prepare" and len(words) == 5:
                key = tuple(words[1:5])
                w = Workload(words[1], words[2], words[3], int(words[4]), args.members)
                w.time_steps(2)
                prepared[key] = w
                answer = "ok"
            elif words[0] == "run" and len(words) in (6, 7):
                key = tuple(words[1:5])
                if key not in prepared:
                    raise ValueError(f"run before prepare: {' '.join(key)}")
                for _ in range(int(words[6]) if len(words) == 7 else 0):
                    prepared[key].step()
                answer = f"{prepared[key].time_steps(int(words[5])):.6f}"
            else:
                raise ValueError(f"unknown command {line.strip()!r}")
        except (ValueError, RuntimeError) as e:
            answer = "error " + str(e).replace("\n", " ")
        print(answer, flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--members", type=int, default=4)
    parser.add_argument("--memory", nargs=4, metavar=("MODEL", "MODE", "LAYOUT", "BATCH"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.memory:
        model, mode, layout, batch = args.memory
        before = rss_bytes()
        Workload(model, mode, layout, int(batch), args.members).time_steps(3)
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
        print(f"memory {peak} {before}", flush=True)
        return
    serve(args)


if __name__ == "__main__":
    main()
