"""cluster.yaml validates against Ray's own cluster-config schema, after Ray fills its defaults."""

from __future__ import annotations

from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def _config() -> dict:
    return yaml.safe_load((ROOT / "cluster.yaml").read_text())


def test_cluster_yaml_matches_rays_schema() -> None:
    from ray.autoscaler._private.util import prepare_config, validate_config

    config = prepare_config(_config())  # merges Ray's AWS defaults, as `ray up` does
    validate_config(config)  # jsonschema against ray/autoscaler/ray-schema.json, plus Ray's own checks


def test_cluster_has_cpu_head_and_autoscaling_gpu_workers() -> None:
    config = _config()
    assert config["provider"]["type"] == "aws"
    head = config["available_node_types"][config["head_node_type"]]
    assert head["resources"].get("GPU", 0) == 0
    workers = [t for name, t in config["available_node_types"].items() if name != config["head_node_type"]]
    assert any(w["min_workers"] < w["max_workers"] for w in workers)  # autoscaling range
    assert any("pip install -e /home/ubuntu/raygan" in c for c in config["setup_commands"])
