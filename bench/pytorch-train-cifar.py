#!/usr/bin/python3
"""PyTorch CPU reference for p7bench: trains the same configuration on the same CIFAR-10
files, so p7's final test accuracy and wall time can be put beside PyTorch's.

Matches p7bench: SimpleCNN or VGG11-BN (PyTorch default init, convs keep their bias),
Adam (betas 0.9/0.999, eps 1e-8, no weight decay), mean cross-entropy, NCHW float32,
CIFAR-10 normalised with the study's mean/std constants, no augmentation; 45,000 training
images from a seeded 45k/5k split (the same counts as p7's P7_SPLIT_SEED split, but not
the same permutation: torch.randperm is not p7's shuffle), reshuffled every epoch, last
partial batch kept; validation on the 5,000 each epoch, the 10,000 test images at the end.

Prints one line per epoch to stderr and writes a JSON (--json) with the final test
accuracy (percent, as p7bench's CSV) and NLL, the per-epoch numbers, the total wall time,
the torch version, the thread count and the CPU model.
Run with Debian's torch: /usr/bin/python3 bench/pytorch-train-cifar.py --model simple \
    --epochs 15 --lr 2e-3 --batch 256 --data build/data --json out.json"""
import argparse
import json
import os
import platform
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

RECORD = 1 + 3 * 32 * 32  # label byte, then the image as CHW bytes
TRAIN_FILES = [f"data_batch_{i}.bin" for i in range(1, 6)]
TEST_FILE = "test_batch.bin"
VALIDATION_COUNT = 5000  # p7's P7_SPLIT_VALIDATION
SPLIT_SEED = 42  # p7's P7_SPLIT_SEED
# p7_normalization_cifar10(): the widely copied constants, not the true per-pixel std
MEAN = (0.4914, 0.4822, 0.4465)
STD = (0.2023, 0.1994, 0.2010)

parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
parser.add_argument("--model", choices=["simple", "vgg11-bn"], default="simple")
parser.add_argument("--epochs", type=int, default=1)
parser.add_argument("--batch", type=int, default=256)
parser.add_argument("--lr", type=float, default=1e-3)
parser.add_argument("--data", default=os.environ.get("P7_DATA", "data"),
                    help="data root holding cifar10/ (as p7bench), or the cifar10 folder itself")
parser.add_argument("--threads", type=int, default=2)
parser.add_argument("--limit", type=int, default=0, help="train on at most N images (a quick look)")
parser.add_argument("--seed", type=int, default=42, help="initialisation and shuffling")
parser.add_argument("--json", help="write the results here")


def cifar10_dir(root):
    for sub in ("cifar10", "cifar-10-batches-bin", "."):
        path = os.path.join(root, sub)
        if os.path.isfile(os.path.join(path, TEST_FILE)):
            return path
    sys.exit(f"pytorch-train-cifar: no CIFAR-10 binary batches ({TEST_FILE}) under {root}/cifar10")


def load_records(paths):
    raw = []
    for path in paths:
        data = np.fromfile(path, dtype=np.uint8)
        if data.size % RECORD:
            sys.exit(f"pytorch-train-cifar: {path}: {data.size} bytes is not a whole number of "
                     f"{RECORD}-byte records")
        raw.append(data.reshape(-1, RECORD))
    raw = np.concatenate(raw)
    labels = raw[:, 0].astype(np.int64)
    if labels.max() > 9:
        sys.exit(f"pytorch-train-cifar: label {labels.max()} in {paths}; expected 0..9")
    images = raw[:, 1:].reshape(-1, 3, 32, 32)
    return torch.from_numpy(np.ascontiguousarray(images)), torch.from_numpy(labels)


_mean = torch.tensor(MEAN).view(1, 3, 1, 1)
_std = torch.tensor(STD).view(1, 3, 1, 1)


def normalise(images_u8):
    """As torchvision's ToTensor then Normalize: bytes to [0, 1], then per channel."""
    return (images_u8.float().div_(255.0) - _mean) / _std


def simple_cnn():
    """seed-study.md 3.1: conv(3->32)-BN-ReLU-pool-conv(32->64)-BN-ReLU-pool-Linear(4096->10)."""
    return nn.Sequential(
        nn.Conv2d(3, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(64 * 8 * 8, 10))


def vgg11_bn():
    """64-M-128-M-256-256-M-512-512-M-512-512-M, BN after every conv, 512 -> Linear(512->10)."""
    layers, cin = [], 3
    for v in [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"]:
        if v == "M":
            layers.append(nn.MaxPool2d(2))
        else:
            layers += [nn.Conv2d(cin, v, 3, padding=1), nn.BatchNorm2d(v), nn.ReLU()]
            cin = v
    return nn.Sequential(*layers, nn.Flatten(), nn.Linear(512, 10))


@torch.no_grad()
def evaluate(model, images, labels, batch):
    """Mean NLL and accuracy (percent) with the BN running statistics."""
    model.eval()
    nll, correct = 0.0, 0
    for i in range(0, len(labels), batch):
        logits = model(normalise(images[i:i + batch]))
        y = labels[i:i + batch]
        nll += F.cross_entropy(logits, y, reduction="sum").item()
        correct += (logits.argmax(1) == y).sum().item()
    model.train()
    return nll / len(labels), 100.0 * correct / len(labels)


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def main():
    wall0 = time.perf_counter()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    folder = cifar10_dir(args.data)
    all_images, all_labels = load_records([os.path.join(folder, f) for f in TRAIN_FILES])
    test_images, test_labels = load_records([os.path.join(folder, TEST_FILE)])

    split = torch.randperm(len(all_labels), generator=torch.Generator().manual_seed(SPLIT_SEED))
    val_idx, train_idx = split[:VALIDATION_COUNT], split[VALIDATION_COUNT:]
    if args.limit and args.limit < len(train_idx):
        train_idx = train_idx[:args.limit]  # a prefix of the seeded permutation, as p7bench
    train_images, train_labels = all_images[train_idx], all_labels[train_idx]
    val_images, val_labels = all_images[val_idx], all_labels[val_idx]

    model = simple_cnn() if args.model == "simple" else vgg11_bn()
    model.train()
    params = sum(p.numel() for p in model.parameters())
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    shuffle = torch.Generator().manual_seed(args.seed)
    n = len(train_labels)
    print(f"pytorch-train-cifar: model {args.model} ({params} parameters), adam lr {args.lr:g}, "
          f"batch {args.batch}, {args.epochs} epoch(s), {n} training images, {args.threads} thread(s), "
          f"torch {torch.__version__}", file=sys.stderr)

    epochs = []
    for epoch in range(1, args.epochs + 1):
        t0 = time.perf_counter()
        order = torch.randperm(n, generator=shuffle)
        loss_sum, steps = 0.0, 0
        for i in range(0, n, args.batch):  # the last partial batch is kept
            idx = order[i:i + args.batch]
            optimizer.zero_grad(set_to_none=True)
            loss = F.cross_entropy(model(normalise(train_images[idx])), train_labels[idx])
            loss.backward()
            optimizer.step()
            loss_sum += loss.item()
            steps += 1
        train_loss = loss_sum / steps  # the mean of the batch means, as p7bench
        val_loss, val_acc = evaluate(model, val_images, val_labels, args.batch)
        seconds = time.perf_counter() - t0
        epochs.append({"epoch": epoch, "train_loss": train_loss, "val_loss": val_loss, "val_acc": val_acc,
                       "seconds": seconds})
        print(f"  epoch {epoch}/{args.epochs}  train loss {train_loss:.4f}  val loss {val_loss:.4f}  "
              f"val acc {val_acc:.2f}%  ({seconds:.1f} s)", file=sys.stderr)

    t0 = time.perf_counter()
    test_loss, test_acc = evaluate(model, test_images, test_labels, args.batch)
    test_seconds = time.perf_counter() - t0
    wall = time.perf_counter() - wall0
    print(f"pytorch-train-cifar: test acc {test_acc:.2f}%  test nll {test_loss:.4f}  "
          f"wall {wall:.1f} s", file=sys.stderr)
    result = {
        "model": args.model, "optimizer": "adam", "lr": args.lr, "batch": args.batch, "epochs": args.epochs,
        "seed": args.seed, "train_images": n, "limit": args.limit, "parameters": params,
        "test_acc": test_acc, "test_nll": test_loss, "test_seconds": test_seconds,
        "epoch_results": epochs, "wall_seconds": wall,
        "torch_version": torch.__version__, "threads": args.threads, "cpu_model": cpu_model(),
        "data": folder,
        "split": f"{n} train / {VALIDATION_COUNT} val from torch.randperm seed {SPLIT_SEED} "
                 "(same counts as p7's split, not the same permutation)",
    }
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
            f.write("\n")


if __name__ == "__main__":
    # parsed here, not at import, so bench/pytorch-models.py can import the model definitions
    args = parser.parse_args()
    main()
