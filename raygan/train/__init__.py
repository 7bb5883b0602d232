"""Training: the pure GAN step (torch only), and the Ray Train loops and drivers around it.

Import the submodules directly. This package's `__init__` imports nothing, so `raygan.train.step`
runs on a machine with torch alone (the GPU benchmark box has no Ray).
"""
