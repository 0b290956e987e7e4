"""Training: data (CIFAR-10, ImageFolder, synthetic), batches, the training loop and its state.

Layers point one way: cli -> training -> (checkpoint, model, devices, precision); nothing
outside the CLI and evaluation imports from here.
"""
