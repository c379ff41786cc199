"""Writes a MobileNet-sized TorchScript model (inverted residual blocks, depthwise convolutions, ~60 MFLOPs at
[1,3,224,224] -> [1,1000], random weights) for timing the torch executor's overhead: torchvision is not needed.

    python3 bench/make_mobilenet_like.py /tmp/mobilenet-like.pt
"""
import sys

import torch
from torch import nn


def block(cin, cout, expand, stride):
    hidden = cin * expand
    return nn.Sequential(
        nn.Conv2d(cin, hidden, 1, bias=False), nn.BatchNorm2d(hidden), nn.Hardswish(),
        nn.Conv2d(hidden, hidden, 3, stride, 1, groups=hidden, bias=False), nn.BatchNorm2d(hidden), nn.Hardswish(),
        nn.Conv2d(hidden, cout, 1, bias=False), nn.BatchNorm2d(cout))


class MobileNetLike(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, 2, 1, bias=False), nn.BatchNorm2d(16), nn.Hardswish())
        specs = [(16, 16, 1, 2), (16, 24, 4, 2), (24, 24, 3, 1), (24, 40, 3, 2), (40, 40, 3, 1), (40, 48, 3, 1),
                 (48, 96, 3, 2), (96, 96, 3, 1)]
        self.blocks = nn.Sequential(*[block(*s) for s in specs])
        self.head = nn.Sequential(nn.Conv2d(96, 576, 1), nn.Hardswish(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                                  nn.Linear(576, 1024), nn.Hardswish(), nn.Linear(1024, 1000))

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(self.stem(image)))


if __name__ == "__main__":
    torch.manual_seed(0)
    model = MobileNetLike().eval()
    torch.jit.save(torch.jit.script(model), sys.argv[1])
