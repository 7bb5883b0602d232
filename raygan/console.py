"""The terminal: one progress bar per stage, Ray's chatter kept in a log file, warnings said once.

`session(log_file, verbose=...)` wraps every `raygan` command. It copies everything printed to
the log file, and from `quiet_ray_logging()` / `attach_ray()` on (called around `ray.init` by
`raygan.cluster.connect`) it also routes what Ray prints:

- Ray's own driver-side logging (INFO "Started a local Ray instance", Ray Data's execution plans)
  goes to the log file only; its warnings still reach the terminal, each distinct one once.
- Output that Ray forwards from workers and actors (Train controller notes, "Moving model to
  device", the PlacementGroupCleaner's repeated "Failed to query Ray Train Controller actor
  state", deprecation warnings) goes to the log file only, except progress bars, which Ray's
  distributed tqdm (`ray.experimental.tqdm_ray`) draws on the driver, and autoscaler events.

With `verbose`, everything is shown as Ray would show it (and still copied to the file).
`progress()` is the bar to use anywhere: tqdm_ray inside a Ray worker, tqdm elsewhere.
"""

from __future__ import annotations

import contextlib
import io
import logging
import re
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
RAY_LOGGERS = ("ray", "ray.data", "ray.train", "ray.tune", "ray.serve")


@dataclass
class _State:
    verbose: bool = False  # show everything, as Ray would
    log: TextIO | None = None  # the log file, opened by `session`
    path: Path | None = None  # its path
    file_handler: logging.Handler | None = None  # Ray's driver logging -> the log file
    ray_used: bool = False  # this session connected to Ray (so Ray's output went to the log file)
    moved: list[tuple[logging.StreamHandler, Any]] | None = None  # Ray handlers re-pointed at the tee, and their streams


_state = _State()


def log_path() -> Path | None:
    """The current session's log file, or None outside a session."""
    return _state.path


def verbose() -> bool:
    """Whether the current session shows everything."""
    return _state.verbose


def ray_used() -> bool:
    """Whether this session connected to Ray."""
    return _state.ray_used


def log_file_stream() -> TextIO:
    """The log file to write to directly (a traceback, say); a throwaway buffer outside a session."""
    return _state.log if _state.log is not None else io.StringIO()


def _to_log(text: str) -> None:
    if _state.log is not None:
        _state.log.write(text)
        _state.log.flush()


class _Tee(io.TextIOBase):
    """A terminal stream that also copies each finished line to the log file (a line's last
    carriage-return segment: what a terminal leaves visible of a progress bar)."""

    def __init__(self, terminal: TextIO) -> None:
        self.terminal = terminal
        self._pending = ""

    def write(self, text: str) -> int:
        self.terminal.write(text)
        self._pending += text
        *lines, self._pending = self._pending.split("\n")
        for line in lines:
            visible = _ANSI.sub("", line.rsplit("\r", 1)[-1])
            if visible.strip():
                _to_log(visible + "\n")
        return len(text)

    def flush(self) -> None:
        self.terminal.flush()

    def isatty(self) -> bool:
        return self.terminal.isatty()

    def fileno(self) -> int:
        return self.terminal.fileno()

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return getattr(self.terminal, "encoding", "utf-8")


class _Once(logging.Filter):
    """Lets each distinct message through once (Ray repeats some warnings every few seconds)."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        key = f"{record.name}:{record.levelno}:{record.getMessage()}"
        if key in self.seen:
            return False
        self.seen.add(key)
        return True


@contextlib.contextmanager
def session(log_file: Path | None, *, verbose: bool = False) -> Iterator[None]:
    """Route this process's output for one command (see the module docstring); restores it after."""
    previous = (sys.stdout, sys.stderr)
    _state.verbose = verbose
    if log_file is not None:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        _state.log = log_file.open("a", encoding="utf-8")
        _state.path = log_file
        sys.stdout, sys.stderr = _Tee(sys.stdout), _Tee(sys.stderr)
    try:
        yield
    finally:
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
        sys.stdout, sys.stderr = previous
        for handler, stream in _state.moved or []:
            handler.setStream(stream)
        if _state.file_handler is not None:
            for name in RAY_LOGGERS:
                logging.getLogger(name).removeHandler(_state.file_handler)
        if _state.log is not None:
            _state.log.close()
        _state.__init__()  # type: ignore[misc]


def quiet_ray_logging() -> None:
    """Ray's driver-side loggers: INFO to the log file only, each warning to the terminal once."""
    import ray.data  # noqa: F401  (configures its logger on import; configure after that, not before)

    _state.ray_used = True
    if _state.file_handler is None and _state.log is not None and not _state.verbose:
        # Below WARNING only: warnings reach the terminal, and the terminal is copied to the file already.
        handler = logging.StreamHandler(_state.log)
        handler.setLevel(logging.INFO)
        handler.addFilter(lambda record: record.levelno < logging.WARNING)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s -- %(message)s"))
        _state.file_handler = handler
    once = _Once()
    for name in RAY_LOGGERS:
        logger = logging.getLogger(name)
        for handler in logger.handlers:
            if isinstance(handler, logging.StreamHandler) and not isinstance(handler, logging.FileHandler) \
                    and handler is not _state.file_handler:
                if isinstance(sys.stderr, _Tee) and handler.stream is not sys.stderr:
                    _state.moved = (_state.moved or []) + [(handler, handler.setStream(sys.stderr))]
                if not _state.verbose:
                    handler.setLevel(logging.WARNING)
                    handler.addFilter(once)
        to_file = _state.file_handler is not None and (name == "ray" or not logger.propagate)
        if to_file and _state.file_handler not in logger.handlers:
            logger.addHandler(_state.file_handler)
    if not _state.verbose:
        # One bar per stage: Ray Data's own bars (reading shards for training, per operator) stay off;
        # a command whose stage is a Ray Data job (explain-bulk) turns them back on for that job.
        ray.data.DataContext.get_current().enable_progress_bars = False


def attach_ray() -> None:
    """After `ray.init`: route the output Ray forwards from workers (no-op when log_to_driver is off)."""
    from ray._private import worker as ray_worker
    from ray._private.ray_logging import global_worker_stdstream_dispatcher as dispatcher

    names = [name for name, _ in dispatcher.handlers]
    if "ray_print_logs" not in names:
        return
    original = next(handle for name, handle in dispatcher.handlers if name == "ray_print_logs")

    def forwarded(data: dict[str, Any]) -> None:
        lines = data.get("lines", [])
        bars = [line for line in lines if ray_worker.RAY_TQDM_MAGIC in line]
        rest = [line for line in lines if ray_worker.RAY_TQDM_MAGIC not in line]
        for line in bars:
            ray_worker.process_tqdm(line)
        if not rest:
            return
        who = data.get("actor_name") or data.get("task_name") or ""
        prefix = f"({who} pid={data.get('pid')})".replace("( ", "(")
        _to_log("".join(f"{prefix} {_ANSI.sub('', line)}\n" for line in rest))
        if _state.verbose or data.get("pid") == "autoscaler":
            original({**data, "lines": rest})

    dispatcher.remove_handler("ray_print_logs")
    dispatcher.add_handler("ray_print_logs", forwarded)


class Progress:
    """A progress bar with one interface inside and outside Ray workers (tqdm_ray lacks set_postfix)."""

    def __init__(self, iterable: Iterable[Any] | None = None, *, desc: str, total: int | None = None,
                 unit: str = "it", initial: int = 0, disable: bool = False) -> None:
        self.desc = desc
        self.disable = disable
        self._iterable = iterable
        self._bar: Any = None
        if disable:
            return
        if _in_ray_worker():
            from ray.experimental import tqdm_ray

            self._bar = tqdm_ray.tqdm(desc=desc, total=total, unit=unit)
            self._bar.n = initial
            self._bar.refresh()
        else:
            from tqdm import tqdm

            self._bar = tqdm(desc=desc, total=total, unit=unit, initial=initial, dynamic_ncols=True)

    def __iter__(self) -> Iterator[Any]:
        assert self._iterable is not None, "Progress was made without an iterable"
        for item in self._iterable:
            yield item
            self.update(1)
        self.close()

    def update(self, n: int = 1) -> None:
        if self._bar is not None:
            self._bar.update(n)

    def set_postfix(self, values: dict[str, Any]) -> None:
        """Show `values` after the bar (in the description for tqdm_ray)."""
        if self._bar is None:
            return
        text = ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in values.items())
        if hasattr(self._bar, "set_postfix_str"):
            self._bar.set_postfix_str(text)
        else:
            self._bar.set_description(f"{self.desc} ({text})")

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def progress(iterable: Iterable[Any] | None = None, **kwargs: Any) -> Progress:
    """`Progress(iterable, **kwargs)`: tqdm_ray in a Ray worker (drawn on the driver), tqdm elsewhere."""
    return Progress(iterable, **kwargs)


def _in_ray_worker() -> bool:
    if "ray" not in sys.modules:
        return False
    import ray
    from ray._private import worker as ray_worker  # how tqdm_ray itself tells a worker from the driver

    return ray.is_initialized() and ray_worker.global_worker.mode == ray.WORKER_MODE


__all__ = ["Progress", "attach_ray", "log_path", "progress", "quiet_ray_logging", "session", "verbose"]
