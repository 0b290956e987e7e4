"""alexbench: export AlexNet to TorchScript/ONNX/torch.export, prove parity, benchmark runtimes."""

__version__ = "0.1.0"

__all__ = ["__version__"]
