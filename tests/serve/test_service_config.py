"""ServiceConfig from YAML/CLI args, and serve/config.yaml as Ray Serve reads it."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from raygan.service.config import ServiceConfig

CONFIG_YAML = Path(__file__).resolve().parents[2] / "serve" / "config.yaml"


def test_from_args_converts_lists_and_refuses_unknown_keys() -> None:
    config = ServiceConfig.from_args({"bundle_uri": "/b", "allowed_prefixes": "s3://bucket/x", "env_vars": {"A": 1}})
    assert config.allowed_prefixes == ("s3://bucket/x",)
    assert config.env_vars == {"A": "1"}
    with pytest.raises(ValueError, match="unknown service setting.*max_batch"):
        ServiceConfig.from_args({"bundle_uri": "/b", "max_batch": 4})


@pytest.mark.parametrize("bad", [{"max_batch_size": 0}, {"min_replicas": 3, "max_replicas": 2}, {"token": ""},
                                 {"request_timeout_s": -1}, {"bundle_uri": ""}])
def test_invalid_settings_are_refused(bad: dict) -> None:
    with pytest.raises(ValueError):
        ServiceConfig.from_args({"bundle_uri": "/b", **bad})


def test_batches_can_fill_and_secrets_stay_hidden() -> None:
    config = ServiceConfig(bundle_uri="/b", max_batch_size=16, token="secret", env_vars={"AWS_SECRET_ACCESS_KEY": "k"})
    assert config.max_ongoing_requests >= config.max_batch_size  # else Serve never fills a batch
    public = config.public()
    assert public["token"] == "set" and "secret" not in str(public) and "k" not in public["env_vars"]


def test_config_yaml_is_a_valid_serve_config() -> None:
    from ray.serve.schema import ServeDeploySchema

    data = yaml.safe_load(CONFIG_YAML.read_text())
    schema = ServeDeploySchema.model_validate(data) if hasattr(ServeDeploySchema, "model_validate") else (
        ServeDeploySchema.parse_obj(data))
    app = schema.applications[0]
    assert app.import_path == "raygan.service.app:build_app"
    config = ServiceConfig.from_args(app.args)
    assert config.request_timeout_s < data["http_options"]["request_timeout_s"]  # the app answers 504 first
