"""Median time of one training step (forward + cross-entropy + backward + Nesterov SGD) of CondenseNet in PyTorch,
with the official module tree and masked learned group convolutions (tests/PyTorch/condensenet_statedict.py).
The side-by-side baseline for CondenseCluster's step time; run it on the same machine, right before or after ours.

usage: python3 bench/pytorch/step_time.py [--threads 2] [--batch 64] [--channels 1] [--steps 30] [--warmup 5]
Debian's python3-torch (PyTorch 1.13.1) provides torch; set GLIBC_TUNABLES to compare allocators."""
import argparse
import os
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..', '..', 'tests', 'PyTorch'))
from condensenet_statedict import CondenseNet  # noqa: E402


def main():
    p = argparse.ArgumentParser()
    p.add_argument('--threads', type=int, default=2)
    p.add_argument('--batch', type=int, default=64)
    p.add_argument('--channels', type=int, default=1)
    p.add_argument('--steps', type=int, default=30)
    p.add_argument('--warmup', type=int, default=5)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    cfg = dict(Stages=[14, 14, 14], Growth=[8, 16, 32], Bottleneck=4, Group1x1=4, Group3x3=4, CondenseFactor=4,
               InChannels=a.channels, InputSize=32, InitStride=1, NumClasses=10)
    model = CondenseNet(cfg, converted=False)
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-4)
    x = torch.randn(a.batch, a.channels, 32, 32)
    y = torch.randint(0, 10, (a.batch,))
    times = []
    for i in range(a.warmup + a.steps):
        start = time.perf_counter()
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
        if i >= a.warmup:
            times.append(time.perf_counter() - start)
        print(f'step {i + 1}/{a.warmup + a.steps}: {(time.perf_counter() - start) * 1000:.0f} ms', flush=True)
    print(f'pytorch {torch.__version__}, {a.threads} threads, batch {a.batch}x{a.channels}x32x32: '
          f'median step {statistics.median(times) * 1000:.0f} ms over {a.steps} steps '
          f'(allocator: {os.environ.get("GLIBC_TUNABLES", "glibc default")})')


if __name__ == '__main__':
    main()
