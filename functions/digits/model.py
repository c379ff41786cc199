"""The digits model's class, for serving its Lightning checkpoint (models/digits.ckpt) with plain torch.

The layer names match the checkpoint's state_dict (conv1.*, conv2.*, fc.*). Training used a LightningModule with
the same layers; serving needs only nn.Module, so Lightning need not be installed where the model runs.
"""
import torch
from torch import nn
from torch.nn import functional as F


class Digits(nn.Module):
    """8x8 grey images scaled to 0..1, [N, 1, 8, 8] -> 10 logits."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, 3, padding=1)
        self.conv2 = nn.Conv2d(16, 32, 3, padding=1)
        self.fc = nn.Linear(32 * 4 * 4, 10)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.conv1(image))
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        return self.fc(x.flatten(1))
