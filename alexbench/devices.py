"""Devices: what exists on this machine, and the one-line error when it does not."""

from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING

from alexbench.errors import DeviceUnavailableError

if TYPE_CHECKING:
    import torch

# torch is imported where it is used: the Device enum is also the vocabulary of the commands
# that only read results (report, results, compare), which start without torch.


class Device(StrEnum):
    CPU = "cpu"
    CUDA = "cuda"


def is_available(device: Device) -> bool:
    if device is Device.CPU:
        return True
    import torch

    return torch.cuda.is_available()


def available_devices() -> list[Device]:
    return [d for d in Device if is_available(d)]


def require(device: Device) -> None:
    if not is_available(device):
        raise DeviceUnavailableError(
            f"{device.value} is not available on this machine (torch.cuda.is_available() is False)"
        )


def synchronize(device: Device) -> None:
    if device is Device.CUDA:
        import torch

        torch.cuda.synchronize()


def torch_device(device: Device) -> torch.device:
    import torch

    return torch.device(device.value)


def default_threads() -> int:
    """The intra-op thread count every CPU runtime is given without --threads: torch's (one per
    physical core by default), so that no runtime is left to its own, unrecorded choice."""
    import torch

    return torch.get_num_threads()
