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


@pytest.mark.parametrize("bad", [{"max_batch_size": 0}, {"min_replicas": 3, "max_replicas": 2}, {"token": "secret"},
                                 {"token_env": ""}, {"token_file": "relative/token"},
                                 {"token_env": "A", "token_file": "/t"}, {"request_timeout_s": -1},
                                 {"bundle_uri": ""}])
def test_invalid_settings_are_refused(bad: dict) -> None:
    with pytest.raises(ValueError):
        ServiceConfig.from_args({"bundle_uri": "/b", **bad})


def test_a_token_is_never_a_setting() -> None:
    with pytest.raises(ValueError, match="visible in the Ray dashboard.*token_env or token_file"):
        ServiceConfig.from_args({"bundle_uri": "/b", "token": "secret"})


def test_the_token_is_read_from_the_referenced_env_var_or_file(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAYGAN_TEST_TOKEN", " s3cret\n")
    assert ServiceConfig(bundle_uri="/b", token_env="RAYGAN_TEST_TOKEN").resolve_token() == "s3cret"
    (tmp_path / "token").write_text("from-file\n")
    assert ServiceConfig(bundle_uri="/b", token_file=str(tmp_path / "token")).resolve_token() == "from-file"
    assert ServiceConfig(bundle_uri="/b").resolve_token() is None  # no reference: an open service
    # A reference that yields nothing refuses, so a replica never starts open by mistake.
    monkeypatch.setenv("RAYGAN_TEST_TOKEN", "")
    with pytest.raises(ValueError, match="empty or unset"):
        ServiceConfig(bundle_uri="/b", token_env="RAYGAN_TEST_TOKEN").resolve_token()
    with pytest.raises(ValueError, match="cannot read the token file"):
        ServiceConfig(bundle_uri="/b", token_file=str(tmp_path / "missing")).resolve_token()


def test_batches_can_fill_and_secrets_stay_hidden(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAYGAN_TEST_TOKEN", "secret")
    config = ServiceConfig(bundle_uri="/b", max_batch_size=16, token_env="RAYGAN_TEST_TOKEN",
                           env_vars={"AWS_SECRET_ACCESS_KEY": "k"})
    assert config.max_ongoing_requests >= config.max_batch_size  # else Serve never fills a batch
    public = config.public()
    assert public["authentication"] == "bearer token" and "secret" not in str(public)
    assert "k" not in public["env_vars"]


def test_config_yaml_is_a_valid_serve_config() -> None:
    from ray.serve.schema import ServeDeploySchema

    data = yaml.safe_load(CONFIG_YAML.read_text())
    schema = ServeDeploySchema.model_validate(data) if hasattr(ServeDeploySchema, "model_validate") else (
        ServeDeploySchema.parse_obj(data))
    app = schema.applications[0]
    assert app.import_path == "raygan.service.app:build_app"
    config = ServiceConfig.from_args(app.args)
    assert config.request_timeout_s < data["http_options"]["request_timeout_s"]  # the app answers 504 first
