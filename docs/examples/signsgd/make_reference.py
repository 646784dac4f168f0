"""Writes signsgd_reference.json: the signsgd example's rule run by PyTorch on fixed
parameters and gradients, for `p7plugin compare` (docs/plugins.md, "Compare with PyTorch").

    python3 make_reference.py && p7plugin compare build/libsignsgd.so --reference signsgd_reference.json

For your own optimizer, replace update() with its step (or call your torch.optim class on
the same tensors: set p.grad, opt.step(), and read opt.state[p] for the slots).
"""
import json

import torch

LR, BETA, WEIGHT_DECAY = 0.01, 0.9, 0.1
STEPS = 3

torch.manual_seed(0)
params = [torch.randn(6), torch.randn(3, 4)]       # any shapes: p7 sees them flattened
theta = [p.clone() for p in params]
momentum = [torch.zeros_like(p) for p in params]


def update(p, g, m):
    """signsgd.c's kernel, operation for operation."""
    m.mul_(BETA).add_(g, alpha=1 - BETA)
    p.mul_(1 - LR * WEIGHT_DECAY).sub_(LR * torch.sign(m))


def flat(tensors):
    return [t.flatten().tolist() for t in tensors]   # float32 values, exact in JSON


steps = []
for _ in range(STEPS):
    # keep gradients away from sign ties: sign(m) of an m that rounds to 0 differs by rounding
    grads = [torch.randn_like(p) for p in theta]
    for p, g, m in zip(theta, grads, momentum):
        update(p, g, m)
    steps.append({"grads": flat(grads), "params": flat(theta), "state": {"momentum": flat(momentum)}})

reference = {
    "plugin": "signsgd",
    "hparams": f"lr={LR},beta={BETA},weight_decay={WEIGHT_DECAY}",
    "params": flat(params),
    "steps": steps,
}
with open("signsgd_reference.json", "w") as f:
    json.dump(reference, f)
print(f"wrote signsgd_reference.json: {len(params)} parameters, {STEPS} steps")
