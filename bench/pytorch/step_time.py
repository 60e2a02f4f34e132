"""Median time of one training step (forward + cross-entropy + backward + Nesterov SGD) of CondenseNet in PyTorch,
with the official module tree and masked learned group convolutions (tests/PyTorch/condensenet_statedict.py).
The side-by-side baseline for CondenseCluster's step time; run it on the same machine, right before or after ours.

usage: python3 bench/pytorch/step_time.py [--threads 2] [--batch 64] [--channels 1] [--steps 30] [--warmup 5] [--imagenet]
--imagenet: CondenseNet-74-C4 on 3x224x224, 1000 classes, instead of CondenseNet-86 on 32x32 (--channels is ignored)
Debian's python3-torch (PyTorch 1.13.1) provides torch; set GLIBC_TUNABLES to compare allocators."""
import argparse
import statistics

import torch

from training_steps import add_arguments, allocator, condensenet74_imagenet, condensenet86, timed_steps


def main():
    p = argparse.ArgumentParser()
    p.add_argument('--threads', type=int, default=2)
    p.add_argument('--batch', type=int, default=64)
    p.add_argument('--imagenet', action='store_true')
    add_arguments(p, channels=1, steps=30, warmup=5)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    model, channels, size, classes = (condensenet74_imagenet(), 3, 224, 1000) if a.imagenet else (condensenet86(a.channels), a.channels, 32, 10)
    times = timed_steps(model, a.batch, channels, a.warmup, a.steps, report=lambda s: print(s, flush=True), size=size, classes=classes)
    print(f'pytorch {torch.__version__}, {a.threads} threads, batch {a.batch}x{channels}x{size}x{size}: '
          f'median step {statistics.median(times) * 1000:.0f} ms over {a.steps} steps (allocator: {allocator()})')


if __name__ == '__main__':
    main()
