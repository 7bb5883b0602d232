"""`raygan demo` end to end at the tiny preset, as `make demo` runs it: a separate process on a fresh
local Ray, in a pseudo-terminal (what a newcomer sees): phantoms -> classifier -> GAN (both on Ray
Train, one worker) -> evaluation -> report; the terminal stays short with no line repeated, Ray's
chatter is in the log file; a rerun skips the finished stages and --verbose shows Ray's lines."""

from __future__ import annotations

import json
import os
import pty
import re
import select
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

TINY_DEMO = ["--preset", "tiny", "--phantoms", "48", "--classifier-epochs", "1", "--gan-epochs", "1", "--images", "2"]
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def run_in_terminal(argv: list[str], *, env: dict[str, str], timeout: float) -> tuple[int, str]:
    """Run `argv` with a pseudo-terminal as stdin, stdout and stderr; (exit code, everything it wrote)."""
    master, slave = pty.openpty()
    proc = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, env=env, start_new_session=True)
    os.close(slave)
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 1.0)
            if not ready:
                if proc.poll() is not None:
                    break
                continue
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: every writer closed the terminal
                break
            if not data:
                break
            chunks.append(data)
        else:
            raise AssertionError(f"{argv} did not finish within {timeout} s")
        return proc.wait(timeout=60), b"".join(chunks).decode("utf-8", errors="replace")
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(master)


def screen_lines(text: str) -> list[str]:
    """The lines a terminal leaves visible: escape codes dropped, each line's last carriage-return segment."""
    text = ANSI.sub("", text).replace("\r\n", "\n")
    return [line.rsplit("\r", 1)[-1].rstrip() for line in text.split("\n")]


@pytest.fixture()
def ray_tmp() -> Iterator[str]:
    """A RAY_TMPDIR of the demo's own; short, since Ray's socket paths must fit in 107 characters."""
    folder = tempfile.mkdtemp(prefix="rg-", dir="/tmp")
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.timeout(2400)  # minutes on an idle 2-core machine; generous for a shared one
def test_demo_runs_end_to_end_quietly_and_resumes(tmp_path: Path, ray_tmp: str) -> None:
    out = tmp_path / "demo"
    env = {**os.environ, "RAY_TMPDIR": ray_tmp, "COLUMNS": "120"}  # a fresh local Ray of its own, as `make demo`
    env.pop("RAY_ADDRESS", None)
    raygan = [sys.executable, "-m", "raygan.cli"]
    code, printed = run_in_terminal([*raygan, "demo", "--out", str(out), *TINY_DEMO], env=env, timeout=1500)
    lines = screen_lines(printed)
    print("\n".join(lines))  # pytest shows it when the test fails
    assert code == 0, printed
    for stage in ("1/5 phantoms", "2/5 classifier", "3/5 GAN", "4/5 evaluation", "5/5 report"):
        assert any(stage in line for line in lines), stage

    # A console a newcomer can read: short, nothing repeated, no Ray chatter (it is all in the log file).
    shown = [line for line in lines if line.strip()]
    assert len(shown) < 60, "\n".join(shown)
    repeated = [line for line, n in Counter(shown).items() if n > 1]
    assert not repeated, repeated
    assert not any(re.search(r"\bINFO\b|pid=\d+|Failed to query Ray Train Controller", line) for line in shown), shown
    assert any("started a local Ray instance" in line for line in shown)  # says which cluster it used
    logs = list((out / "logs").glob("demo-*.log"))
    assert len(logs) == 1
    log = logs[0].read_text()
    assert "Started a local Ray instance" in log and "(TrainController pid=" in log  # the chatter went here
    assert f"full log in {logs[0]}" in printed

    summary = json.loads(next(line for line in reversed(shown) if line.startswith("{")))
    assert 0 <= summary["class_consistency"] <= 1 and 0 <= summary["classifier_accuracy"] <= 1
    page = (out / "report.html").read_text()
    assert page.count("<img") >= 2  # a figure per explained image
    assert "Quality gate: generator class consistency" in page  # the bundle's gate, measured by raygan train
    evaluation = json.loads((out / "evaluation" / "evaluation.json").read_text())
    assert evaluation["sizes"]["class_consistency.samples"] == 250 * 4 * 4  # the demo's draw: 250 z1 x 4 x 4 repeats
    assert {"flip_rate.value", "monotone.share", "reconstruction.mse"} <= set(evaluation["values"])
    assert json.loads((out / "demo.json").read_text())["gan_epochs"] == 1

    # Reports explain themselves: every metric with its meaning and better direction, no bare keys.
    from raygan.metrics.glossary import describe, undescribed
    from raygan.render import html as H

    assert undescribed(list(evaluation["values"])) == []
    markdown = (out / "evaluation" / "evaluation.md").read_text()
    report = (out / "report.html").read_text()
    for key in evaluation["values"]:
        gloss = describe(key)
        assert H.esc(gloss.meaning) in report and gloss.better_text in report, key
    assert "| better | meaning |" in markdown and describe("frechet.value").meaning in markdown

    # Training wrote TensorBoard events into the run folder (rank 0).
    assert list((out / "bundle" / "tensorboard" / "gan").glob("events.out.tfevents.*"))
    assert list((out / "classifier" / "tensorboard" / "classifier").glob("events.out.tfevents.*"))

    # A rerun finds the phantoms and the classifier and does not make them again; --verbose shows Ray's lines.
    code, again = run_in_terminal([*raygan, "demo", "--out", str(out), *TINY_DEMO, "--verbose"], env=env,
                                  timeout=800)
    assert code == 0, again
    assert "1/5 phantoms" not in again and "2/5 classifier" not in again and "5/5 report" in again
    assert re.search(r"\(TrainController pid=\d+", again), again
