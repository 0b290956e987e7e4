"""AlexNet (the one-weird-trick variant torchvision ships) and how to build it.

The module tree mirrors torchvision.models.alexnet exactly, so their state dicts are
interchangeable: `features.{0,3,6,8,10}` are the convs, `classifier.{1,4,6}` the linears.
"""

from __future__ import annotations

import hashlib

import torch
from torch import nn

DEFAULT_NUM_CLASSES = 1000
DEFAULT_IMAGE_SIZE = 224
MIN_IMAGE_SIZE = 64  # below this the third max-pool sees a feature map smaller than its kernel
# Far above any size AlexNet is run at: at 4096 px one image's first feature map is 256 MiB.
# Larger sizes failed deep inside numpy or torch ("array is too big") instead of in one line.
MAX_IMAGE_SIZE = 4096
# torch and numpy take seeds as non-negative 64-bit integers (torch: C long long).
MAX_SEED = 2**63 - 1
IN_CHANNELS = 3


class AlexNet(nn.Module):
    def __init__(self, num_classes: int = DEFAULT_NUM_CLASSES, dropout: float = 0.5) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(IN_CHANNELS, 64, kernel_size=11, stride=4, padding=2),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(64, 192, kernel_size=5, padding=2),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(192, 384, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(384, 256, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(256, 256, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),
        )
        # Adaptive pooling makes any input >= 64 px end in a 256x6x6 = 9216 feature vector.
        self.avgpool = nn.AdaptiveAvgPool2d((POOLED_SIDE, POOLED_SIDE))
        self.classifier = nn.Sequential(
            nn.Dropout(p=dropout),
            nn.Linear(256 * 6 * 6, 4096),
            nn.ReLU(inplace=True),
            nn.Dropout(p=dropout),
            nn.Linear(4096, 4096),
            nn.ReLU(inplace=True),
            nn.Linear(4096, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, 3, H, W) -> (N, num_classes)
        x = self.features(x)
        x = self.avgpool(x)
        x = torch.flatten(x, 1)
        return self.classifier(x)


POOLED_SIDE = 6  # the adaptive pool's output: 6x6 per channel, whatever the input size


def feature_map_side(image_size: int) -> int:
    """The side of `features`' output for a square input (224 -> 6, 256 -> 7, 64 -> 1): the
    conv 11/4 pad 2 and the three 3/2 max pools; the other convs keep the size."""
    side = (image_size + 2 * 2 - 11) // 4 + 1
    for _ in range(3):
        side = (side - 3) // 2 + 1
    return side


def build_alexnet(
    *, num_classes: int = DEFAULT_NUM_CLASSES, seed: int | None = 0, dropout: float = 0.5
) -> AlexNet:
    """A fresh AlexNet in eval mode; seeded so that 'the default model' is the same everywhere.
    `dropout` only acts in training: the exported graph is the same for every value."""
    if seed is None:
        model = AlexNet(num_classes, dropout)
    else:
        # fork_rng keeps the caller's global RNG stream untouched by model construction.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = AlexNet(num_classes, dropout)
    return model.eval()


def expected_shapes(num_classes: int) -> dict[str, tuple[int, ...]]:
    """Parameter shapes a state dict must have for an AlexNet with `num_classes` outputs, built
    on the meta device: no memory and no init, whatever the class count a file claims."""
    with torch.device("meta"):
        return {k: tuple(v.shape) for k, v in AlexNet(num_classes).state_dict().items()}


def num_classes_of(state_dict: dict[str, torch.Tensor]) -> int:
    return int(state_dict["classifier.6.weight"].shape[0])


def state_dict_sha256(model: nn.Module) -> str:
    """Content hash of the weights (keys, dtypes, shapes, bytes): identifies a model for caching."""
    h = hashlib.sha256()
    for key, tensor in sorted(model.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        h.update(f"{key}:{t.dtype}:{tuple(t.shape)}".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()
