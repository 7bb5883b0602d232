"""deploy/kubernetes/, checked offline (no cluster, no registry).

The RayJob and the RayService are validated against the openAPIV3Schema of KubeRay's own CRDs
(`../shared/kuberay/` beside the repository, or RAYGAN_KUBERAY_CRDS), made as strict as an API
server with strict field validation (`kubectl apply`'s default): unknown fields are errors,
list-map keys are unique, int32/int64 fields fit. The Serve config inside the RayService goes
through Ray Serve's own schema and is compared with serve/config.yaml; the RayJob's entrypoint
goes through raygan's real argument parser; the Dockerfile's pins are compared with pyproject.toml.
"""

from __future__ import annotations

import argparse
import copy
import os
import re
import shlex
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from packaging.requirements import Requirement

from raygan.service.config import ServiceConfig

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy" / "kubernetes"
MANIFESTS = {"RayJob": DEPLOY / "rayjob-train.yaml", "RayService": DEPLOY / "rayservice.yaml"}
CRD_FILES = {"RayJob": "ray.io_rayjobs.yaml", "RayService": "ray.io_rayservices.yaml"}
# Where the RayService's application may differ from serve/config.yaml's, and why: the bundle on
# object storage, the token's variable named (the Secret sets it on every Ray container), and one GPU
# per Explainer replica because the service's worker group is a GPU node, and the shard-job records on
# object storage, where a restarted pod finds them.
DECLARED_DIFFERENCES = {"bundle_uri", "token_env", "num_gpus", "jobs_uri"}
TOKEN_VARIABLE = "RAYGAN_SERVE_TOKEN"
Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml: the CRDs are 1-1.4 MB each


def _load(path: Path) -> Any:
    return yaml.load(path.read_text(), Loader=Loader)


def _load_all(path: Path) -> list[Any]:
    return [doc for doc in yaml.load_all(path.read_text(), Loader=Loader) if doc is not None]


def _pyproject() -> dict[str, Any]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def _pins() -> dict[str, Requirement]:
    """Every `name==version` of pyproject.toml (core and extras) by normalised name, with the union of its extras."""
    project = _pyproject()["project"]
    lists = [project["dependencies"], *project["optional-dependencies"].values()]
    pins: dict[str, Requirement] = {}
    for text in (t for deps in lists for t in deps):
        req = Requirement(text)
        if any(s.operator == "==" for s in req.specifier):
            key = req.name.lower().replace("_", "-")
            known = pins.setdefault(key, req)
            assert known.specifier == req.specifier, f"pyproject.toml pins {key} twice, differently"
            known.extras |= req.extras  # ray[train,tune] and ray[serve]: the image needs them all
    return pins


def _ray_version() -> str:
    (spec,) = _pins()["ray"].specifier
    return spec.version


# --- the CRD schemas, strict ---------------------------------------------------------------------

# ObjectMeta is only `type: object` in a CRD: the API server and the operator check it. KubeRay
# (ValidateRayJobMetadata / ValidateRayServiceMetadata) wants a DNS-1035 label of at most 47
# characters, the Ray cluster's name plus suffixes such as "-serve-svc" having to fit in 63.
_OBJECT_META = {
    "type": "object",
    "required": ["name"],
    "additionalProperties": False,
    "properties": {
        "name": {"type": "string", "maxLength": 47, "pattern": r"^[a-z]([-a-z0-9]*[a-z0-9])?$"},
        "namespace": {"type": "string"},
        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
        "annotations": {"type": "object", "additionalProperties": {"type": "string"}},
    },
}


def _strict(node: Any) -> Any:
    """The schema as a strict API server applies it: objects with declared properties refuse
    unknown ones (structural schemas leave that to pruning, which would silently drop a typo)."""
    if isinstance(node, list):
        return [_strict(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {k: (v if k in ("enum", "default", "example") else _strict(v)) for k, v in node.items()}
    if ("properties" in out and "additionalProperties" not in out
            and not out.get("x-kubernetes-preserve-unknown-fields")):
        out["additionalProperties"] = False
    if out.get("nullable") and isinstance(out.get("type"), str):
        out["type"] = [out["type"], "null"]
    return out


def _list_type(validator: Any, list_type: str, instance: Any, schema: dict[str, Any]) -> Iterator[Any]:
    """x-kubernetes-list-type: a `set` holds no duplicates, a `map` no two items with the same keys."""
    if not validator.is_type(instance, "array"):
        return
    keys = schema.get("x-kubernetes-list-map-keys", [])
    seen: set[str] = set()
    for item in instance:
        if list_type == "map" and isinstance(item, dict):
            ident = repr([item.get(k) for k in keys])
        elif list_type == "set":
            ident = repr(item)
        else:
            continue
        if ident in seen:
            yield jsonschema.ValidationError(f"duplicate item {ident} in a list of type {list_type} (keys {keys})")
        seen.add(ident)


_FORMATS = jsonschema.FormatChecker()
for _name, _bits in (("int32", 32), ("int64", 64)):
    _FORMATS.checks(_name)(lambda v, _b=_bits: not isinstance(v, int) or -(2 ** (_b - 1)) <= v < 2 ** (_b - 1))
# OpenAPI v3 schemas are JSON Schema draft 4 plus x-kubernetes-* keys (draft 4's boolean exclusiveMinimum).
_Validator = jsonschema.validators.extend(jsonschema.Draft4Validator, {"x-kubernetes-list-type": _list_type})


def _crd_dir() -> Path:
    return Path(os.environ.get("RAYGAN_KUBERAY_CRDS") or ROOT.parent / "shared" / "kuberay")


@pytest.fixture(scope="module")
def validators() -> dict[tuple[str, str], Any]:
    """(kind, apiVersion) -> a strict validator of that CRD version's openAPIV3Schema."""
    folder = _crd_dir()
    if not all((folder / name).is_file() for name in CRD_FILES.values()):
        pytest.skip(f"KubeRay CRDs not found in {folder} (set RAYGAN_KUBERAY_CRDS to the folder holding "
                    f"{', '.join(CRD_FILES.values())})")
    out = {}
    for kind, name in CRD_FILES.items():
        crd = _load(folder / name)
        assert crd["kind"] == "CustomResourceDefinition" and crd["spec"]["names"]["kind"] == kind
        for version in crd["spec"]["versions"]:
            schema = _strict(version["schema"]["openAPIV3Schema"])
            schema["properties"]["metadata"] = _OBJECT_META
            schema["required"] = sorted({*schema.get("required", []), "apiVersion", "kind", "metadata", "spec"})
            schema["properties"]["apiVersion"] = {"enum": [f"{crd['spec']['group']}/{version['name']}"]}
            schema["properties"]["kind"] = {"enum": [kind]}
            _Validator.check_schema(schema)
            out[(kind, f"{crd['spec']['group']}/{version['name']}")] = _Validator(schema, format_checker=_FORMATS)
    return out


def _operator_errors(manifest: dict[str, Any]) -> list[str]:
    """What KubeRay's operator refuses beyond the schema (its ValidateRayClusterSpec and ValidateRayJobSpec),
    for the fields these manifests use: without the in-tree autoscaler every worker group sets minReplicas
    and maxReplicas around its replicas, resources go in rayStartParams or `resources`, not both, and a
    TTL needs shutdownAfterJobFinishes."""
    spec = manifest.get("spec", {})
    cluster = spec.get("rayClusterSpec") or spec.get("rayClusterConfig") or {}
    errors = []
    groups = [("head", cluster.get("headGroupSpec", {}))]
    for group in cluster.get("workerGroupSpecs", []):
        groups.append((group.get("groupName"), group))
        if not cluster.get("enableInTreeAutoscaling"):
            low, high = group.get("minReplicas"), group.get("maxReplicas")
            if low is None or high is None:
                errors.append(f"worker group {group.get('groupName')}: minReplicas and maxReplicas must be set")
            elif not low <= group.get("replicas", low) <= high:
                errors.append(f"worker group {group.get('groupName')}: replicas outside [minReplicas, maxReplicas]")
    for name, group in groups:
        params = group.get("rayStartParams", {})
        if group.get("resources") and any(params.get(k) for k in ("num-cpus", "num-gpus", "memory", "resources")):
            errors.append(f"group {name}: resources set both in rayStartParams and resources")
    if spec.get("ttlSecondsAfterFinished", 0) > 0 and not spec.get("shutdownAfterJobFinishes", False):
        errors.append("ttlSecondsAfterFinished needs shutdownAfterJobFinishes")
    return errors


def _errors(validators: dict[tuple[str, str], Any], manifest: dict[str, Any]) -> list[str]:
    validator = validators.get((manifest.get("kind"), manifest.get("apiVersion")))
    if validator is None:
        return [f"no CRD version for kind {manifest.get('kind')!r} apiVersion {manifest.get('apiVersion')!r}"]
    # The API server refuses a manifest against the schema before the operator ever sees it.
    return [f"{e.json_path}: {e.message}" for e in validator.iter_errors(manifest)] or _operator_errors(manifest)


@pytest.mark.parametrize("kind", sorted(MANIFESTS))
def test_manifest_validates_against_the_kuberay_crd(kind: str, validators: dict) -> None:
    manifest = _load(MANIFESTS[kind])
    assert manifest["kind"] == kind and manifest["apiVersion"] == "ray.io/v1"  # v1: the served, stored version
    assert _errors(validators, manifest) == []


def _set(path: str, value: Any) -> Any:
    def mutate(m: dict) -> None:
        *parents, last = path.split(".")
        for p in parents:
            m = m[int(p)] if p.isdigit() else m[p]
        m[int(last) if last.isdigit() else last] = value
    return mutate


def _delete(path: str) -> Any:
    def mutate(m: dict) -> None:
        *parents, last = path.split(".")
        for p in parents:
            m = m[int(p)] if p.isdigit() else m[p]
        del m[last]
    return mutate


_WORKER = "spec.rayClusterSpec.workerGroupSpecs.0"
_HEAD = "spec.rayClusterSpec.headGroupSpec"
_HEAD_CONTAINER = f"{_HEAD}.template.spec.containers.0"
BROKEN = {  # a mistake in a valid manifest, and what the one error it causes must say
    "replicas as a word": ("RayJob", _set(f"{_WORKER}.replicas", "two"),
                           "workerGroupSpecs[0].replicas: 'two' is not of type 'integer'"),
    "int32 overflow": ("RayJob", _set(f"{_WORKER}.replicas", 2**31), "workerGroupSpecs[0].replicas: 2147483648 is not"),
    "no head pod template (required)": ("RayJob", _delete(f"{_HEAD}.template"),
                                        "headGroupSpec: 'template' is a required property"),
    "a container without its name (required)": ("RayJob", _delete(f"{_HEAD_CONTAINER}.name"),
                                                "containers[0]: 'name' is a required property"),
    "a typo in a field name": ("RayJob", _set("spec.shutdownAfterJobFinish", True),
                               "('shutdownAfterJobFinish' was unexpected)"),
    "a ray start parameter not a string": ("RayJob", _set(f"{_HEAD}.rayStartParams.num-cpus", 0),
                                           "rayStartParams['num-cpus']: 0 is not of type 'string'"),
    "a malformed quantity": ("RayJob", _set(f"{_WORKER}.template.spec.containers.0.resources.limits.memory", "32 GB"),
                             "limits.memory: '32 GB' does not match"),
    "two container ports alike": ("RayJob", _set(f"{_HEAD_CONTAINER}.ports.1", {"containerPort": 6379, "name": "x"}),
                                  "containers[0].ports: duplicate item [6379, None]"),
    "a name with capitals": ("RayJob", _set("metadata.name", "RayGAN"), "metadata.name: 'RayGAN' does not match"),
    "a name too long for KubeRay": ("RayService", _set("metadata.name", "raygan-" + "x" * 41), "is too long"),
    "more replicas than maxReplicas": ("RayJob", _set(f"{_WORKER}.replicas", 3),
                                       "worker group gpu: replicas outside [minReplicas, maxReplicas]"),
    "a TTL without shutdown": ("RayJob", _set("spec.shutdownAfterJobFinishes", False),
                               "ttlSecondsAfterFinished needs shutdownAfterJobFinishes"),
    "the wrong API version": ("RayJob", _set("apiVersion", "ray.io/v2"), "no CRD version for kind 'RayJob'"),
    "serveConfigV2 as a mapping, not a string": ("RayService", _set("spec.serveConfigV2", {"applications": []}),
                                                 "serveConfigV2: {'applications': []} is not of type 'string'"),
}


@pytest.mark.parametrize("mistake", sorted(BROKEN))
def test_a_broken_manifest_fails_validation(mistake: str, validators: dict) -> None:
    kind, mutate, expected = BROKEN[mistake]
    manifest = copy.deepcopy(_load(MANIFESTS[kind]))
    mutate(manifest)
    errors = _errors(validators, manifest)
    assert len(errors) == 1 and expected in errors[0], (mistake, errors)


# --- the RayService's Serve config ---------------------------------------------------------------


def _serve_config() -> dict[str, Any]:
    return yaml.safe_load(_load(MANIFESTS["RayService"])["spec"]["serveConfigV2"])


def _unknown_keys(data: dict[str, Any], model: Any) -> set[str]:
    """Keys a pydantic model does not declare (Serve's top-level schemas ignore extras, silently)."""
    names = set(model.model_fields) | {f.alias for f in model.model_fields.values() if f.alias}
    return set(data) - names


def test_serve_config_v2_is_serve_config_yaml_application() -> None:
    from ray.serve.schema import HTTPOptionsSchema, ServeApplicationSchema, ServeDeploySchema

    config = _serve_config()
    reference = yaml.safe_load((ROOT / "serve" / "config.yaml").read_text())
    schema = ServeDeploySchema.model_validate(config)
    assert _unknown_keys(config, ServeDeploySchema) == set()
    assert _unknown_keys(config["http_options"], HTTPOptionsSchema) == set()
    (app,) = config["applications"]
    assert _unknown_keys(app, ServeApplicationSchema) == set()
    assert schema.applications[0].import_path == "raygan.service.app:build_app"
    ServiceConfig.from_args(app["args"])  # raygan's own check: no unknown, missing or invalid setting

    (ref_app,) = reference["applications"]
    assert {k: v for k, v in app.items() if k != "args"} == {k: v for k, v in ref_app.items() if k != "args"}
    assert set(app["args"]) == set(ref_app["args"])
    differing = {k for k in ref_app["args"] if app["args"][k] != ref_app["args"][k]}
    assert differing == DECLARED_DIFFERENCES
    assert app["args"]["bundle_uri"].startswith("s3://")
    assert app["args"]["token_env"] == TOKEN_VARIABLE and app["args"]["token_file"] is None
    (worker,) = _load(MANIFESTS["RayService"])["spec"]["rayClusterConfig"]["workerGroupSpecs"]
    limits = worker["template"]["spec"]["containers"][0]["resources"]["limits"]
    assert app["args"]["num_gpus"] == int(limits["nvidia.com/gpu"])  # one replica fills the GPU node

    assert config["proxy_location"] == reference["proxy_location"]
    assert config["http_options"]["host"] == "0.0.0.0"  # the pod's address, which the Serve Service reaches
    for key in ("port", "request_timeout_s"):
        assert config["http_options"][key] == reference["http_options"][key]


def _containers(manifest: dict[str, Any]) -> list[dict[str, Any]]:
    cluster = manifest["spec"].get("rayClusterSpec") or manifest["spec"]["rayClusterConfig"]
    groups = [cluster["headGroupSpec"], *cluster.get("workerGroupSpecs", [])]
    return [c for g in groups for c in g["template"]["spec"]["containers"]]


def _secrets() -> dict[str, dict[str, str]]:
    docs = _load_all(DEPLOY / "secret.example.yaml")
    assert {(d["apiVersion"], d["kind"]) for d in docs} == {("v1", "Secret")}
    return {d["metadata"]["name"]: d["stringData"] for d in docs}


def test_the_token_comes_from_a_secret_and_no_secret_is_in_the_manifests() -> None:
    secrets = _secrets()
    values = [v for data in secrets.values() for v in data.values()]
    assert all("REPLACE" in v for v in values), "secret.example.yaml holds placeholders only"
    args = _serve_config()["applications"][0]["args"]
    # Only references to where the token is: the variable's name, or a file's path.
    assert not [k for k in args if re.search("token|secret|password|key", k) and k not in ("token_env", "token_file")]
    for kind, path in MANIFESTS.items():
        text = path.read_text()
        assert not [v for v in values if v in text], f"{path.name} holds a value of the Secret"
        for container in _containers(_load(path)):
            env = {e["name"]: e for e in container.get("env", [])}
            # No credential as a literal value, only references to the Secrets.
            assert not [n for n, e in env.items() if "value" in e and re.search("KEY|SECRET|TOKEN|PASSWORD", n)]
            for e in env.values():
                ref = e.get("valueFrom", {}).get("secretKeyRef")
                if ref is not None:
                    assert ref["key"] in secrets[ref["name"]], (path.name, ref)
            for source in container.get("envFrom", []):
                name = source["secretRef"]["name"]
                assert name in secrets
                # Every key the Secret brings is a variable raygan's storage or the AWS chain reads.
                assert set(secrets[name]) <= {"RAYGAN_S3_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL",
                                              "AWS_REGION", "AWS_DEFAULT_REGION", "AWS_ACCESS_KEY_ID",
                                              "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"}
            if kind == "RayService":  # every node may hold a replica, and each replica reads the token
                ref = env[TOKEN_VARIABLE]["valueFrom"]["secretKeyRef"]
                assert "value" not in env[TOKEN_VARIABLE] and not ref.get("optional", False)


# --- the RayJob's entrypoint ---------------------------------------------------------------------


def test_rayjob_entrypoint_is_jobs_train_with_real_flags_and_s3_paths() -> None:
    from raygan.cli import _build_parser

    job = _load(MANIFESTS["RayJob"])
    python, script, *argv = shlex.split(job["spec"]["entrypoint"])
    assert python == "python" and script.endswith("/jobs/train.py") and (ROOT / "jobs" / "train.py").is_file()
    assert f"COPY --chown=ray:users jobs {script.removesuffix('/train.py')}" in _dockerfile_lines()
    # jobs/train.py hands its arguments to `raygan train`: its parser says whether every flag exists.
    parser = _build_parser()
    args = parser.parse_args(["train", *argv])
    with pytest.raises(SystemExit):  # the same parser refuses a flag it does not know
        parser.parse_args(["train", *argv, "--no-such-flag"])
    # Each flag spelt out in full: argparse also takes unique prefixes (--epoch for --epochs), which a
    # new flag of `raygan train` could make ambiguous later.
    (commands,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    flags = {s for action in commands.choices["train"]._actions for s in action.option_strings}
    assert {a for a in argv if a.startswith("--")} <= flags
    paths = {flag: value for flag, value in zip(argv, argv[1:]) if flag.startswith("--") and "/" in value}
    assert set(paths) >= {"--data", "--classifier", "--out"}
    assert all(v.startswith("s3://") for v in paths.values()), paths  # object storage: the only shared thing
    assert args.data.startswith("s3://") and args.classifier.startswith("s3://") and args.out.startswith("s3://")

    spec = job["spec"]
    assert spec["shutdownAfterJobFinishes"] is True
    assert spec["rayClusterSpec"]["rayVersion"] == _ray_version()
    workers = spec["rayClusterSpec"]["workerGroupSpecs"]
    gpus = sum(g["replicas"] * int(c["resources"]["limits"].get("nvidia.com/gpu", 0))
               for g in workers for c in g["template"]["spec"]["containers"])
    assert args.gpu is True and args.workers == gpus > 0  # one Train worker per GPU of the worker group


# --- the Dockerfile ------------------------------------------------------------------------------


def _dockerfile_lines() -> list[str]:
    """Instructions of the Dockerfile: comments dropped, continuation lines joined."""
    text = re.sub(r"\\\n", " ", "\n".join(
        line for line in (DEPLOY / "Dockerfile").read_text().splitlines() if not line.lstrip().startswith("#")))
    return [" ".join(line.split()) for line in text.splitlines() if line.strip()]


def test_dockerfile_base_image_and_pins_agree_with_pyproject() -> None:
    lines = _dockerfile_lines()
    args = dict(re.fullmatch(r"ARG (\w+)=(\S+)", line).groups() for line in lines if line.startswith("ARG "))
    bases = {re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], line.split()[1])
             for line in lines if line.startswith("FROM ")}
    python = _pyproject()["project"]["requires-python"].removeprefix(">=").replace(".", "")
    assert bases == {f"rayproject/ray:{_ray_version()}-py{python}"}
    for manifest in MANIFESTS.values():
        cluster = _load(manifest)["spec"]
        assert (cluster.get("rayClusterSpec") or cluster["rayClusterConfig"])["rayVersion"] == _ray_version()

    pins = _pins()
    installs = [line for line in lines if line.startswith("RUN ") and "pip install" in line]
    found = [Requirement(t.strip("\"'")) for line in installs for t in shlex.split(line)
             if re.fullmatch(r"[\w.-]+(\[[\w,.-]+\])?==\S+", t.strip("\"'"))]
    assert {r.name for r in found} >= {"torch", "torchvision", "ray"}
    for req in found:
        pinned = pins[req.name.lower().replace("_", "-")]
        assert req.specifier == pinned.specifier, f"Dockerfile {req} but pyproject.toml {pinned}"
        assert req.extras <= pinned.extras, f"Dockerfile {req} but pyproject.toml {pinned}"
    assert pins["ray"].extras == {"train", "tune", "serve"} == next(r for r in found if r.name == "ray").extras
    wheel = next(line for line in installs if "raygan-*.whl" in line)
    extra = re.search(r"\.whl\)\[(\w+)\]", wheel).group(1)
    assert extra in _pyproject()["project"]["optional-dependencies"]

    # No credential baked into a layer: no ENV/ARG of one, and the build context keeps only the sources.
    assert not [line for line in lines if re.match(r"(ENV|ARG) \w*(KEY|SECRET|TOKEN|PASSWORD)", line)]
    allowed = {line[1:].rstrip("/") for line in (DEPLOY / "Dockerfile.dockerignore").read_text().splitlines()
               if line.startswith("!")}
    for line in lines:
        if line.startswith("COPY ") and "--from=" not in line:
            *sources, _ = [t for t in line.split()[1:] if not t.startswith("--")]
            assert set(sources) <= allowed, f"{line}: {set(sources) - allowed} is left out of the build context"


def test_readme_shows_the_commands_for_these_files() -> None:
    readme = (ROOT / "README.md").read_text()
    applied = re.findall(r"^kubectl apply -f (deploy/kubernetes/\S+)", readme, flags=re.M)
    assert applied == ["deploy/kubernetes/secret.yaml", "deploy/kubernetes/rayjob-train.yaml",
                       "deploy/kubernetes/rayservice.yaml"]
    assert all((ROOT / path).is_file() for path in applied[1:]) and (DEPLOY / "secret.example.yaml").is_file()
    # KubeRay names the Serve Service of a RayService <name>-serve-svc.
    service = _load(MANIFESTS["RayService"])["metadata"]["name"] + "-serve-svc"
    assert f"kubectl port-forward svc/{service} 8000:8000" in readme
