"""A small CNN on scikit-learn's 8x8 digits, trained on the train split only: the judge of guided samples and the
feature network of FID / KID (``benchmarks/quality.py``). Trains in seconds on one CPU thread.

Input: ``(B, 1, 8, 8)`` images in [0, 1]. ``forward`` returns class logits; ``features`` the 64-d penultimate layer
(what FID and KID compare). ``num_features`` lets torchmetrics use it as a custom feature extractor.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from scorekit import datasets


class DigitsCNN(nn.Module):
    num_features = 64

    def __init__(self):
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(),
            nn.MaxPool2d(2),  # 8 -> 4
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),  # 4 -> 2
        )
        self.fc = nn.Linear(64 * 4, self.num_features)
        self.head = nn.Linear(self.num_features, 10)
        self.feature_mode = False

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.fc(self.conv(x).flatten(1)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.features(x.float())
        return h if self.feature_mode else self.head(h)


def train_digits_cnn(epochs: int = 40, seed: int = 0) -> tuple[DigitsCNN, float]:
    """Train on the train split (random shifts by one pixel as augmentation); returns the model and test accuracy."""
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    levels, labels = datasets.digits_split("train")
    x = datasets.levels_to_unit(levels)
    model = DigitsCNN()
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs)
    for _ in range(epochs):
        for idx in torch.randperm(len(x), generator=g).split(64):
            shift = torch.randint(-1, 2, (2,), generator=g).tolist()
            batch = torch.roll(x[idx], shifts=shift, dims=(2, 3))
            loss = F.cross_entropy(model(batch), labels[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        sched.step()
    model.eval()
    return model, accuracy(model, *digits_test_unit())


def digits_test_unit() -> tuple[torch.Tensor, torch.Tensor]:
    levels, labels = datasets.digits_split("test")
    return datasets.levels_to_unit(levels), labels


@torch.no_grad()
def accuracy(model: DigitsCNN, x: torch.Tensor, labels: torch.Tensor) -> float:
    return float((model(x).argmax(1) == labels).float().mean())


@torch.no_grad()
def features(model: DigitsCNN, x: torch.Tensor) -> torch.Tensor:
    return model.features(x.float())
