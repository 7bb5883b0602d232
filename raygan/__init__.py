"""raygan: visual explanations of image classifiers by latent traversal of a class-conditional GAN.

Dravid & Katsaggelos, "Visual Explanations for CNNs via Latent Traversal of GANs" (AAAI 2022),
run at scale on Ray. Importing raygan never starts Ray; the core (models, explain, metrics)
needs only torch.
"""

__version__ = "0.1.0"
