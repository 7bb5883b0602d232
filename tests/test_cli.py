"""CLI manners that need no Ray: the serve host rule, the environment in --help, one-line errors."""

from __future__ import annotations

import subprocess
import sys

import pytest

from raygan.cli import main


def test_serve_on_a_network_host_without_a_token_refuses_to_start(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.delenv("RAYGAN_SERVE_TOKEN", raising=False)
    assert main(["serve", "--bundle", str(tmp_path / "b"), "--host", "0.0.0.0"]) == 2
    err = capsys.readouterr().err
    assert "exposes the service to the network without a token" in err and "--insecure" in err
    # A token that is named but cannot be read is refused here too, before Ray starts.
    assert main(["serve", "--bundle", str(tmp_path / "b"), "--host", "0.0.0.0", "--token-file",
                 str(tmp_path / "missing")]) == 2
    assert "cannot read the token file" in capsys.readouterr().err


def test_help_names_the_environment_settings(capsys) -> None:
    shown = subprocess.run([sys.executable, "-m", "raygan.cli", "--help"], capture_output=True, text=True,
                           check=True).stdout
    for argv in (["explain", "--help"], ["train", "--help"]):
        with pytest.raises(SystemExit):
            main(argv)
        shown += capsys.readouterr().out
    for name in ("RAYGAN_S3_ENDPOINT_URL", "RAY_ADDRESS", "MLFLOW_TRACKING_URI", "s3://"):
        assert shown.count(name) >= 3, name  # in the top-level help and in each command's
    assert "--threads" in shown and "--verbose" in shown


@pytest.mark.parametrize("threads", ["0", "-2"])
def test_bad_threads_is_one_line(tmp_path, capsys, threads: str) -> None:
    assert main(["explain", str(tmp_path), "--bundle", str(tmp_path), "--out", str(tmp_path / "o"), "--threads",
                 threads]) == 1
    err = capsys.readouterr().err
    assert "--threads must be >= 1" in err and "Traceback" not in err


STOP_SCRIPT = """
import os, signal, sys, time
from raygan.cli import _StopOnSignal

stop = _StopOnSignal()
assert signal.SIGINT not in signal.pthread_sigmask(signal.SIG_BLOCK, [])
os.kill(os.getpid(), signal.SIGINT)  # the first Ctrl-C only asks
deadline = time.monotonic() + 10
while not stop.requested and time.monotonic() < deadline:
    time.sleep(0.05)
print("requested", stop.requested, flush=True)
try:
    os.kill(os.getpid(), signal.SIGINT)  # the second one interrupts
    time.sleep(10)
except KeyboardInterrupt:
    print("interrupted", flush=True)
stop.restore()
print("blocked again", signal.SIGINT in signal.pthread_sigmask(signal.SIG_BLOCK, []), flush=True)
"""


def test_the_service_stops_on_ctrl_c_even_when_started_with_sigint_blocked() -> None:
    # Ray starts its worker processes with SIGINT blocked, and the mask is inherited: a service started from
    # one must still stop on Ctrl-C (one request, then a second to interrupt), and give the mask back after.
    import signal

    shown = subprocess.run([sys.executable, "-c", STOP_SCRIPT], capture_output=True, text=True, timeout=60,
                           preexec_fn=lambda: signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT}))
    assert shown.returncode == 0, shown.stderr[-2000:]
    assert shown.stdout.split("\n")[:3] == ["requested True", "interrupted", "blocked again True"], shown.stdout
