"""Networks: generator G(z1, z2), discriminator D, encoder E(x), the classifiers, and the frozen-classifier wrapper."""

from raygan.models.classifier import build_classifier
from raygan.models.discriminator import Discriminator, build_discriminator
from raygan.models.encoder import Encoder, build_encoder
from raygan.models.frozen import ClassifierSpec, FrozenClassifier, load_classifier, save_classifier
from raygan.models.generator import Generator, build_generator, sample_latents

__all__ = [
    "ClassifierSpec", "Discriminator", "Encoder", "FrozenClassifier", "Generator", "build_classifier",
    "build_discriminator", "build_encoder", "build_generator", "load_classifier", "sample_latents", "save_classifier",
]
