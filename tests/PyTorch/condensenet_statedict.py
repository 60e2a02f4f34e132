"""Loads a CondenseCluster state-dict export into a PyTorch CondenseNet with the official module tree
(ShichenLiu/CondenseNet, DESIGN.md §1.4) using strict=True, evaluates it, and saves a modified copy for the way back.

usage: condensenet_statedict.py CONFIG_JSON FORM(training|converted) IN.pt INPUT.safetensors OUT.pt
prints the eval-mode logits as JSON."""
import json
import struct
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F


class LearnedGroupConv(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.norm = nn.BatchNorm2d(cin)
        self.relu = nn.ReLU()
        self.conv = nn.Conv2d(cin, cout, 1, bias=False)
        self.register_buffer('_count', torch.zeros(1))
        self.register_buffer('_stage', torch.zeros(1))
        self.register_buffer('_mask', torch.ones(cout, cin, 1, 1))

    def forward(self, x):
        return F.conv2d(self.relu(self.norm(x)), self.conv.weight * self._mask)


class CondenseConv(nn.Module):
    def __init__(self, cin, cout, groups):
        super().__init__()
        self.groups = groups
        self.norm = nn.BatchNorm2d(cin)
        self.relu = nn.ReLU()
        self.conv = nn.Conv2d(cin, cout, 1, groups=groups, bias=False)
        self.register_buffer('index', torch.zeros(cin, dtype=torch.long))

    def forward(self, x):
        x = self.conv(self.relu(self.norm(torch.index_select(x, 1, self.index))))
        n, c, h, w = x.shape
        return x.view(n, self.groups, c // self.groups, h, w).transpose(1, 2).contiguous().view(n, c, h, w)


class CondenseLinear(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.linear = nn.Linear(cin, cout)
        self.register_buffer('index', torch.zeros(cin, dtype=torch.long))

    def forward(self, x):
        return self.linear(torch.index_select(x, 1, self.index))


class Conv(nn.Sequential):
    def __init__(self, cin, cout, groups):
        super().__init__()
        self.add_module('norm', nn.BatchNorm2d(cin))
        self.add_module('relu', nn.ReLU())
        self.add_module('conv', nn.Conv2d(cin, cout, 3, padding=1, groups=groups, bias=False))


class DenseLayer(nn.Module):
    def __init__(self, cin, k, cfg, converted):
        super().__init__()
        b = cfg['Bottleneck'] * k
        g, c = cfg['Group1x1'], cfg['CondenseFactor']
        self.conv_1 = CondenseConv(cin * g // c, b, g) if converted else LearnedGroupConv(cin, b)
        self.conv_2 = Conv(b, k, cfg['Group3x3'])

    def forward(self, x):
        return torch.cat([x, self.conv_2(self.conv_1(x))], 1)


class CondenseNet(nn.Module):
    def __init__(self, cfg, converted):
        super().__init__()
        stages, growth = cfg['Stages'], cfg['Growth']
        channels = 2 * growth[0]
        self.features = nn.Sequential()
        self.features.add_module('init_conv', nn.Conv2d(cfg['InChannels'], channels, 3, stride=cfg['InitStride'], padding=1, bias=False))
        size = cfg['InputSize'] // cfg['InitStride']
        for i, (layers, k) in enumerate(zip(stages, growth)):
            block = nn.Sequential()
            for l in range(layers):
                block.add_module('denselayer_%d' % (l + 1), DenseLayer(channels, k, cfg, converted))
                channels += k
            self.features.add_module('denseblock_%d' % (i + 1), block)
            if i < len(stages) - 1:
                self.features.add_module('transition_%d' % (i + 1), nn.AvgPool2d(2, 2))
                size //= 2
        self.features.add_module('norm_last', nn.BatchNorm2d(channels))
        self.features.add_module('relu_last', nn.ReLU())
        self.features.add_module('pool_last', nn.AvgPool2d(size))
        self.classifier = CondenseLinear(channels // 2, cfg['NumClasses']) if converted else nn.Linear(channels, cfg['NumClasses'])

    def forward(self, x):
        return self.classifier(self.features(x).flatten(1))


def read_safetensors(path):
    raw = open(path, 'rb').read()
    n = struct.unpack('<Q', raw[:8])[0]
    header = json.loads(raw[8:8 + n])
    out = {}
    for name, meta in header.items():
        if name == '__metadata__':
            continue
        start, end = meta['data_offsets']
        out[name] = torch.frombuffer(bytearray(raw[8 + n + start:8 + n + end]), dtype=torch.float32).reshape(meta['shape'])
    return out


def main():
    cfg_path, form, state_path, input_path, out_path = sys.argv[1:6]
    cfg = json.load(open(cfg_path))
    model = CondenseNet(cfg, form == 'converted')
    model.load_state_dict(torch.load(state_path, weights_only=True), strict=True)
    model.eval()
    with torch.no_grad():
        logits = model(read_safetensors(input_path)['x'])
        model.classifier.linear.bias.add_(1.0) if form == 'converted' else model.classifier.bias.add_(1.0)
    torch.save(model.state_dict(), out_path)
    print(json.dumps(logits.tolist()))


if __name__ == '__main__':
    main()
