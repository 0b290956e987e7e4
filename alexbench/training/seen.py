"""Which image files a model trained on, recognised by their bytes: a run records the content
hashes of a sample of its training images, and `evaluate` (and `tune --max-accuracy-drop`)
looks for them among the images it scores.

Paths cannot tell: a training folder copied, moved, mounted elsewhere or with its files renamed
holds the same images under other names, and scoring them as a test set inflated top-1 silently
(89% held out read 98-100%). A sample is enough: if the scored images include a share f of the
training images, about f of the sample turns up among them. Re-encoded copies (other bytes) are
not recognised.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

from alexbench.checkpoint import file_sha256

SAMPLE_SIZE = 512  # training files hashed per run (16 hex digits each in the checkpoint)
MAX_CHECKED = 20_000  # scored files hashed at most (a seeded subset beyond that)
_DIGITS = 16


def content_hash(path: str) -> str | None:
    """The first 64 bits of the file's sha256, or None when it cannot be read."""
    try:
        return file_sha256(path)[:_DIGITS]
    except OSError:
        return None


def _ordered(paths: Sequence[str], salt: str) -> list[str]:
    """`paths` in a seeded order that does not depend on the list's order."""
    key = {p: hashlib.sha256(f"{salt}\0{p}".encode()).digest() for p in paths}
    return sorted(paths, key=key.__getitem__)


def training_sample(paths: Sequence[str], size: int = SAMPLE_SIZE) -> dict[str, object]:
    """What a checkpoint records: hashes of up to `size` training files and how many there
    were (to estimate the trained-on share of a scored set)."""
    hashes = [h for p in _ordered(paths, "train")[:size] if (h := content_hash(p))]
    return {"images": len(paths), "sample": hashes}


# Below both, a match or two is taken for duplicates across splits (datasets have some), not a
# training folder scored as a test set.
MIN_FOUND, MIN_SHARE = 3, 0.01


@dataclass(frozen=True)
class Overlap:
    checked: int  # scored files hashed
    found: int  # of those, byte-identical to a sampled training file
    share: float  # estimated share of the scored images that the model trained on

    @property
    def trained_on(self) -> bool:
        """Enough matches to say the scored set holds training images, not a few duplicates."""
        return self.found >= MIN_FOUND or self.share >= MIN_SHARE

    def describe(self) -> str:
        if not self.trained_on:
            return (
                f"{self.found} of {self.checked} scored images checked are byte-identical to "
                "images the model trained on (duplicates across the splits?)"
            )
        return (
            f"{self.found} of {self.checked} scored images checked are byte-identical to images "
            f"the model trained on: about {min(self.share, 1.0):.0%} of the scored images were "
            "trained on"
        )


def trained_overlap(scored: Sequence[str], recorded: object) -> Overlap | None:
    """How many `scored` files are training images by content, from a checkpoint's
    `training_sample` record; None when there is no record or no file was found in it."""
    if not isinstance(recorded, dict):
        return None
    sample, total = recorded.get("sample"), recorded.get("images")
    if not isinstance(sample, list) or not sample or not isinstance(total, int) or total < 1:
        return None
    known = {h for h in sample if isinstance(h, str)}
    checked = _ordered(scored, "scored")[:MAX_CHECKED]
    found = sum(content_hash(p) in known for p in checked)
    if not found:
        return None
    # Each trained-on scored file is in the sample with probability len(sample) / total.
    share = found * total / (len(known) * len(checked))
    return Overlap(len(checked), found, share)
