"""What both PyTorch baselines share: CondenseNet-86 (or CondenseNet-74-C4 at ImageNet's 224x224) with the official
module tree (tests/PyTorch), the official optimizer, and a timed loop of training steps on one repeated synthetic batch."""
import os
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..', '..', 'tests', 'PyTorch'))
from condensenet_statedict import CondenseNet  # noqa: E402


def add_arguments(parser, channels, steps, warmup):
    parser.add_argument('--channels', type=int, default=channels)
    parser.add_argument('--steps', type=int, default=steps)
    parser.add_argument('--warmup', type=int, default=warmup)


def condensenet86(channels):
    torch.manual_seed(0)
    cfg = dict(Stages=[14, 14, 14], Growth=[8, 16, 32], Bottleneck=4, Group1x1=4, Group3x3=4, CondenseFactor=4,
               InChannels=channels, InputSize=32, InitStride=1, NumClasses=10)
    return CondenseNet(cfg, converted=False)


def condensenet74_imagenet():
    """CondenseNet-74 with C = G = 4 on 3x224x224 ImageNet inputs, 1000 classes (what `condense-bench imagenet` trains)."""
    torch.manual_seed(0)
    cfg = dict(Stages=[4, 6, 8, 10, 8], Growth=[8, 16, 32, 64, 128], Bottleneck=4, Group1x1=4, Group3x3=4, CondenseFactor=4,
               InChannels=3, InputSize=224, InitStride=2, NumClasses=1000)
    return CondenseNet(cfg, converted=False)


def timed_steps(model, batch, channels, warmup, steps, report=None, size=32, classes=10):
    """Seconds of each step after the warm-up: forward, cross-entropy, backward, Nesterov SGD with weight decay."""
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-4)
    x = torch.randn(batch, channels, size, size)
    y = torch.randint(0, classes, (batch,))
    times = []
    for i in range(warmup + steps):
        start = time.perf_counter()
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
        elapsed = time.perf_counter() - start
        if i >= warmup:
            times.append(elapsed)
        if report:
            report(f'step {i + 1}/{warmup + steps}: {elapsed * 1000:.0f} ms')
    return times


def allocator():
    return os.environ.get('GLIBC_TUNABLES', 'glibc default')
