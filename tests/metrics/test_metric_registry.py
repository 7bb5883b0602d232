import dataclasses
import subprocess
import sys

from raygan.metrics import METRICS


def test_registry_lists_every_metric_with_a_frozen_documented_result():
    expected = {
        "class_consistency", "frechet", "flip_rate", "monotone", "reconstruction", "proximity", "localisation",
        "shortcut_mass", "border_mass", "outside_lung_mass", "faithfulness", "sanity",
    }
    assert set(METRICS) == expected
    for name, metric in METRICS.items():
        assert metric.name == name and callable(metric.function) and metric.description
        assert dataclasses.is_dataclass(metric.result) and metric.result.__dataclass_params__.frozen
        assert metric.scope in ("generator", "explanation", "map")


def test_metrics_import_no_ray_or_captum():
    # DESIGN.md rule 4: the core runs on a bare torch machine; captum is imported where used.
    code = ("import sys, raygan.metrics; "
            "print([m for m in sys.modules if m.split('.')[0] in ('ray', 'captum')])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]"
