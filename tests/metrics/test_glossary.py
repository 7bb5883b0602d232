"""Every number a report can show has a meaning and a better direction (no bare keys)."""

from __future__ import annotations

import dataclasses

from raygan.metrics import METRICS
from raygan.metrics.glossary import BETTER_TEXT, describe, undescribed


def report_keys() -> list[str]:
    """Every "<metric>.<field>" / "<metric>.<map>.<field>" key the registry's result types can produce."""
    keys = []
    for name, metric in METRICS.items():
        for field in dataclasses.fields(metric.result):
            if field.type not in ("float", "int", float, int):  # curves go to the report's curves, not its values
                continue
            if metric.scope == "map":
                keys += [f"{name}.{m}.{field.name}" for m in ("diff", "gradcam", "ig")]
            else:
                keys.append(f"{name}.{field.name}")
    return keys


def test_every_registered_field_is_described() -> None:
    keys = report_keys()
    assert undescribed(keys) == []
    for key in keys:
        gloss = describe(key)
        assert gloss.meaning and gloss.label and gloss.better in BETTER_TEXT, key


def test_map_keys_name_their_map_and_unknown_keys_say_so() -> None:
    assert describe("sanity.gradcam.ssim").label == "randomisation SSIM (Grad-CAM)"
    assert describe("sanity.gradcam.ssim").better == "lower"
    assert describe("frechet.value").better == "lower" and describe("flip_rate.value").better == "higher"
    assert undescribed(["made_up.value"]) == ["made_up.value"]
