"""Helpers the multi-node tests share: polling, the tiny bundle on the cluster's S3, where actors live."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from typing import Any

import torch
from bundle_helpers import responsive

from raygan.bundle import save_bundle
from raygan.config import preset
from raygan.models.generator import build_generator

TINY = preset("tiny")


def wait_for(what: str, check: Callable[[], Any], *, seconds: float) -> Any:
    """Poll `check()` until it returns something truthy and return that; fail after `seconds`."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"{what} did not happen within {seconds:.0f} s")


def tiny_bundle_on_s3(inputs: Any, name: str, *, steps: int) -> str:
    """A bundle at `<bucket>/<name>`: the tiny generator (made to respond to z) and the inputs' classifier."""
    torch.manual_seed(0)
    return save_bundle(f"{inputs.bucket}/{name}", generator=responsive(build_generator(TINY.gan)),
                       classifier_uri=inputs.classifier, train=TINY.train,
                       inversion=dataclasses.replace(TINY.inversion, steps=steps), traversal=TINY.traversal)


def alive_actor_nodes(class_name: Callable[[str], bool]) -> list[str]:
    """Node ids of the live actors whose class name passes `class_name`, one per actor. From the GCS actor
    table: ray.util.state needs the dashboard, which this cluster does not run."""
    from ray._private.state import actors

    return [a["Address"]["NodeID"] for a in actors(actor_state_name="ALIVE").values()
            if class_name(a["ActorClassName"])]
