"""The installable package: a wheel installed outside the checkout runs the CLI, `raygan serve` and the
README's Python snippet; a core install (torch, torchvision, numpy, Pillow, pytorch-msssim only)
imports and explains, and every command whose extra is missing says which one in one line.

Both environments are real venvs under a temporary directory with the wheel pip-installed into
them. They reuse the already installed dependencies through a .pth file instead of installing
torch again: the full one points at this venv's site-packages, the core one at a directory of
links to the core's dependency closure only (read from the installed distributions' metadata).
A .pth line only appends a directory, so the checkout's own editable install is not seen.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import sysconfig
import time
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
import requests
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
CORE = ("torch", "torchvision", "numpy", "pillow", "pytorch-msssim")  # pyproject.toml [project] dependencies
NOT_CORE = ("ray", "pyarrow", "boto3", "fastapi", "fastapi_offline", "pydantic", "captum", "pydicom", "optuna",
            "matplotlib", "tqdm", "tensorboard", "mlflow")
COPY_IGNORE = shutil.ignore_patterns(".venv", ".git", "runs", "build", "dist", "*.egg-info", "__pycache__",
                                     ".pytest_cache", "data-local", "gpu_data", "gpu_wheels")


def _run(args: list[str], *, cwd: Path, env: dict[str, str] | None = None, timeout: float = 300,
         check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    if check and done.returncode != 0:
        raise AssertionError(f"{args} failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return done


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The project's wheel, built from a copy of the source tree (the checkout gets no build/ folder)."""
    root = tmp_path_factory.mktemp("wheel")
    source = root / "source"
    shutil.copytree(ROOT, source, ignore=COPY_IGNORE)
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(root / "dist"),
          str(source)], cwd=root)
    (built,) = (root / "dist").glob("raygan-*.whl")
    return built


def _venv(root: Path, wheel: Path, deps: Path) -> Path:
    """A venv at `root` with `wheel` installed and `deps` (a site-packages-like directory) on its path."""
    base = getattr(sys, "_base_executable", sys.executable)
    _run([base, "-m", "venv", "--without-pip", str(root)], cwd=root.parent)
    purelib = Path(_run([str(root / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                        cwd=root.parent).stdout.strip())
    (purelib / "_raygan_test_deps.pth").write_text(f"{deps}\n")
    _run([sys.executable, "-m", "pip", "--python", str(root / "bin" / "python"), "install", "--no-deps",
          "--no-index", "-q", str(wheel)], cwd=root.parent)
    return root


def _core_closure() -> set[str]:
    """Canonical names of the core dependencies and everything they require (installed ones)."""
    todo, seen = list(CORE), set()
    while todo:
        name = canonicalize_name(todo.pop())
        if name in seen:
            continue
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue  # an optional requirement this platform does not install
        seen.add(name)
        for text in dist.requires or []:
            req = Requirement(text)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(req.name)
    return seen


def _core_site(root: Path) -> Path:
    """A directory of links to the files of the core's dependency closure, and nothing else."""
    site = Path(sysconfig.get_paths()["purelib"])
    root.mkdir()
    for name in _core_closure():
        dist = metadata.distribution(name)
        tops = {Path(str(f)).parts[0] for f in dist.files or [] if not str(f).startswith("..")}
        for top in tops:
            if (site / top).exists() and not (root / top).exists():
                (root / top).symlink_to(site / top)
    return root


@pytest.fixture(scope="module")
def envs(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("envs")
    full = _venv(root / "full", wheel, Path(sysconfig.get_paths()["purelib"]))
    core = _venv(root / "core", wheel, _core_site(root / "core-deps"))
    return {"full": full, "core": core}


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(RAY_AUTH_MODE="disabled", RAY_ENABLE_UV_RUN_RUNTIME_ENV="0", PYTHONNOUSERSITE="1")
    return env


def _readme_snippet() -> str:
    text = (ROOT / "README.md").read_text()
    match = re.search(r"<!-- readme-python-api[^>]*-->\s*```python\n(.*?)```", text, re.S)
    assert match, "README.md lost its Python API snippet"
    return match.group(1)


@pytest.fixture(scope="module")
def snippet_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A working directory with what the README snippet names: runs/demo/bundle and chest.png."""
    import numpy as np
    from bundle_helpers import save_tiny_bundle
    from PIL import Image

    work = tmp_path_factory.mktemp("snippet")
    save_tiny_bundle(work / "runs" / "demo", steps=3)
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (48, 40), dtype=np.uint8), "L").save(work / "chest.png")
    (work / "snippet.py").write_text(_readme_snippet())
    return work


@pytest.mark.timeout(1500)  # minutes only on a machine other jobs saturate; about a minute on an idle 2-core box
def test_wheel_runs_outside_the_checkout(envs: dict[str, Path], snippet_dir: Path, tmp_path: Path) -> None:
    env, venv = _env(), envs["full"]
    python, raygan = str(venv / "bin" / "python"), str(venv / "bin" / "raygan")
    # The wheel's files are the ones imported: not the checkout's.
    where = _run([python, "-c", "import raygan, raygan.service.app as a; print(raygan.__file__); print(a.__file__)"],
                 cwd=tmp_path, env=env).stdout.split()
    for path in where:
        assert path.startswith(str(venv)) and not path.startswith(str(ROOT)), where
    assert (Path(where[1]).parent / "static" / "index.html").is_file()  # the viewer ships as package data
    assert "explain" in _run([raygan, "--help"], cwd=tmp_path, env=env).stdout

    # The README's Python snippet, as written.
    out = _run([python, "snippet.py"], cwd=snippet_dir, env=env, timeout=600).stdout
    assert "chest p(1)" in out and "['diff', 'gradcam', 'ig', 'path', 'swap'] {}" in out
    assert (snippet_dir / "runs" / "bundle-copy" / "bundle.json").is_file()

    # `raygan serve` from the wheel: health answered over HTTP on loopback, then Ctrl-C stops it.
    with socket_port() as port:
        pass
    log = tmp_path / "serve.log"
    with log.open("w") as sink:
        proc = subprocess.Popen([raygan, "serve", "--bundle", str(snippet_dir / "runs" / "demo" / "bundle"),
                                 "--port", str(port), "--cpus", "1"], cwd=tmp_path, env=env, stdout=sink,
                                stderr=subprocess.STDOUT, text=True, start_new_session=True)
        try:
            deadline, health = time.monotonic() + 600, None
            while time.monotonic() < deadline and proc.poll() is None:
                try:
                    health = requests.get(f"http://127.0.0.1:{port}/v1/health", timeout=5)
                    # Ready once it answers and has said so (serve.run returned), so Ctrl-C hits the wait loop.
                    if health.status_code == 200 and "raygan service: viewer" in log.read_text():
                        break
                except requests.RequestException:
                    pass
                time.sleep(1)
            assert health is not None and health.status_code == 200, (proc.poll(), log.read_text()[-3000:])
            model = requests.get(f"http://127.0.0.1:{port}/v1/model", timeout=30).json()
            assert model["target_class"] == "1" and model["quality"]["passed"] is False
        finally:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=120)
            except subprocess.TimeoutExpired:
                proc.send_signal(signal.SIGUSR1)  # every thread's stack into the log, to see where it hangs
                time.sleep(3)
                os.killpg(proc.pid, signal.SIGKILL)  # our own process group only (start_new_session)
                proc.wait(timeout=30)
    output = log.read_text()
    assert f"raygan service: viewer http://127.0.0.1:{port}/" in output and "stopping the service" in output
    assert proc.returncode == 0, output[-3000:]


class socket_port:
    """A free loopback port (bound, then released when the block ends)."""

    def __enter__(self) -> int:
        import socket

        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        return self.sock.getsockname()[1]

    def __exit__(self, *exc: object) -> None:
        self.sock.close()


@pytest.mark.timeout(900)
def test_core_install_explains_and_names_missing_extras(envs: dict[str, Path], snippet_dir: Path,
                                                        tmp_path: Path) -> None:
    env, venv = _env(), envs["core"]
    python, raygan = str(venv / "bin" / "python"), str(venv / "bin" / "raygan")
    probe = "import importlib.util as u; print([m for m in %r if u.find_spec(m)])" % (NOT_CORE,)
    assert _run([python, "-c", probe], cwd=tmp_path, env=env).stdout.strip() == "[]"
    bundle = str(snippet_dir / "runs" / "demo" / "bundle")
    script = (
        "import sys, raygan, raygan.models, raygan.explain, raygan.metrics\n"
        f"pipe = raygan.load({bundle!r})\n"
        "(r,) = pipe.explain([open(sys.argv[1], 'rb').read()], steps=2)\n"
        "print(sorted(r.maps)); print(r.maps_skipped['gradcam']); print(sorted(sys.modules.keys() & set(%r)))\n"
    ) % (NOT_CORE,)
    out = _run([python, "-c", script, str(snippet_dir / "chest.png")], cwd=tmp_path, env=env).stdout.splitlines()
    assert out[0] == "['diff', 'path', 'swap']" and "raygan[attributions]" in out[1] and out[2] == "[]"
    assert "usage: raygan" in _run([raygan, "--help"], cwd=tmp_path, env=env).stdout
    commands = {
        "explain": ["explain", str(snippet_dir / "chest.png"), "--bundle", bundle, "--out", str(tmp_path / "o")],
        "serve": ["serve", "--bundle", bundle],
        "train": ["train", "--data", str(tmp_path), "--classifier", str(Path(bundle) / "classifier"),
                  "--out", str(tmp_path / "b")],
        "phantoms": ["phantoms", "--n", "2", "--size", "32", "--out", str(tmp_path / "p")],
    }
    extras = {"explain": "data", "serve": "serve", "train": "ray", "phantoms": "data"}
    for name, args in commands.items():
        done = _run([raygan, *args], cwd=tmp_path, env=env, check=False, timeout=120)
        assert done.returncode == 2, (name, done.stdout, done.stderr)
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and f"pip install 'raygan[{extras[name]}]'" in lines[0], (name, done.stderr)


def test_extras_are_the_ones_pyproject_declares() -> None:
    from raygan.cli import COMMAND_EXTRAS, _build_parser
    from raygan.extras import EXTRAS

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = set(project["optional-dependencies"])
    assert set(EXTRAS) <= declared and set(COMMAND_EXTRAS.values()) <= declared
    assert {"all", "test"} <= declared
    assert sorted(canonicalize_name(Requirement(r).name) for r in project["dependencies"]) == sorted(CORE)
    commands = set(_build_parser()._subparsers._group_actions[0].choices)  # every subcommand has its extra
    assert commands == set(COMMAND_EXTRAS)
