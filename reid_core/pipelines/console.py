"""What a long job prints: one progress bar (or a few status lines) per stage and a summary, with
Ray's, MLflow's and Optuna's own chatter only under ``--verbose``.

Quiet (the default) is built from the libraries' own switches, in one place:
- Ray: ``ray.init(log_to_driver=False, logging_level=ERROR)`` (worker and actor output, e.g. Ray
  Train's per-epoch "Checkpoint successfully created" lines, stays in Ray's session logs under
  ``/tmp/ray/session_*/logs``; errors still reach the driver as exceptions), Ray Train's
  ``LoggingConfig(log_level="WARNING")`` for trainers started while Ray was initialised by someone
  else, Tune's legacy output engine at ``verbose=0`` (the new engine prints its experiment header at
  every verbosity) and Ray Data's progress bars off;
- MLflow and Optuna: their loggers at WARNING (database set-up, "new study created").

A ``Progress`` is a tqdm bar on a terminal and, in logs and pipes (Ray jobs, CI, tests), a status
line each time another tenth of the stage is done, so a log stays short however long the job.
Progress goes to stderr, the tables and summaries the workflows print go to stdout.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import time
from collections.abc import Iterator, Mapping
from typing import Any, TextIO

# Loggers turned down to WARNING in quiet mode (driver side).
QUIET_LOGGERS = ("mlflow", "optuna", "ray")
# A warning MLflow prints at every model logged into an environment without pip (uv venvs): harmless.
QUIET_ERROR_LOGGERS = ("mlflow.utils.environment",)


def configure(verbose: bool) -> None:
    """The driver's library loggers for a workflow: everything with ``verbose``, warnings otherwise."""
    if verbose:
        return
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    for name in QUIET_ERROR_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
    try:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
    except ImportError:  # pragma: no cover - optuna is a dependency; be safe for library users
        pass


def ray_init_kwargs(verbose: bool) -> dict[str, Any]:
    """``ray.init`` arguments: worker output forwarded to the driver only with ``verbose``."""
    return {"log_to_driver": verbose, "logging_level": logging.INFO if verbose else logging.ERROR}


def train_logging_config(verbose: bool):
    """Ray Train's logging for a trainer's controller and workers (``ray.train.RunConfig``)."""
    import ray.train

    return ray.train.LoggingConfig(log_level="INFO" if verbose else "WARNING")


def tune_verbosity(verbose: bool) -> int:
    """``ray.tune.RunConfig(verbose=...)``: Tune's status tables with ``verbose``, nothing otherwise."""
    return 1 if verbose else 0


@contextlib.contextmanager
def tune_output(verbose: bool) -> Iterator[None]:
    """Around ``Tuner.fit()``: quiet uses Tune's legacy reporter, which prints nothing at ``verbose=0``
    (the new output engine, Ray's default, prints its experiment header at every verbosity)."""
    if verbose:
        yield
        return
    key, old = "RAY_AIR_NEW_OUTPUT", os.environ.get("RAY_AIR_NEW_OUTPUT")
    os.environ[key] = "0"
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = old


def configure_ray_data(verbose: bool) -> None:
    """Ray Data's own progress bars and console log only with ``verbose`` (the workflow shows its own)."""
    from ray.data import DataContext

    context = DataContext.get_current()
    context.enable_progress_bars = verbose
    context.print_on_execution_start = verbose
    # Ray Data logs to its own console handler (INFO: execution plans, "execution finished") besides
    # its log file (ray-data.log in the session's logs): quiet turns the console handler only down.
    for handler in logging.getLogger("ray.data").handlers:
        if isinstance(handler, logging.StreamHandler):
            handler.setLevel(logging.INFO if verbose else logging.ERROR)


def _interval(seconds: float) -> str:
    minutes, seconds = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{seconds:02d}" if hours else f"{minutes:02d}:{seconds:02d}"


def format_status(status: Mapping[str, Any]) -> str:
    """``{"loss": 1.23456, "val.mAP": 0.5}`` -> ``loss 1.235, val.mAP 0.5``."""
    parts = []
    for key, value in status.items():
        if value is None:
            continue
        text = f"{value:.4g}" if isinstance(value, float) else str(value)
        parts.append(text if key.startswith("_") else f"{key} {text}")
    return ", ".join(parts)


class Progress:
    """One stage's progress: ``done`` of ``total`` ``unit`` (images, epochs, trials, trainings).

    On a terminal a tqdm bar with the status as its postfix; elsewhere a line each time another
    ``1/lines`` of the stage is done (and at the end), so at most ``lines`` lines. ``close(summary)``
    ends the stage with one summary line.
    """

    def __init__(self, desc: str, total: int, unit: str, *, stream: TextIO | None = None, lines: int = 10,
                 tty: bool | None = None, enabled: bool = True) -> None:
        self.desc, self.total, self.unit = desc, max(0, int(total)), unit
        self.stream = stream or sys.stderr
        self.lines = max(1, lines)
        self.done = 0
        self.status: dict[str, Any] = {}
        self.started = time.perf_counter()
        self.enabled = enabled
        self._printed_step = 0
        self._bar = None
        tty = self.stream.isatty() if tty is None and hasattr(self.stream, "isatty") else bool(tty)
        if enabled and tty:
            from tqdm.auto import tqdm

            self._bar = tqdm(total=self.total, desc=desc, unit=unit, file=self.stream, dynamic_ncols=True,
                             leave=True)

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.started

    def update_to(self, done: int, **status: Any) -> None:
        """Set how much is done (e.g. the epoch reached) and the status shown beside it."""
        done = max(0, min(int(done), self.total)) if self.total else max(0, int(done))
        self.status.update(status)
        step, self.done = done - self.done, done
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.set_postfix_str(format_status(self.status), refresh=False)
            self._bar.update(step)
            return
        milestone = self.done * self.lines // self.total if self.total else self.done
        if milestone > self._printed_step or (self.total and self.done == self.total and step):
            self._printed_step = milestone
            self._line()

    def advance(self, n: int = 1, **status: Any) -> None:
        self.update_to(self.done + n, **status)

    def set_status(self, **status: Any) -> None:
        """Change the status without progress (a bar refreshes; logs wait for the next milestone)."""
        self.status.update(status)
        if self.enabled and self._bar is not None:
            self._bar.set_postfix_str(format_status(self.status))

    def _line(self) -> None:
        percent = f" ({100 * self.done // self.total}%)" if self.total else ""
        status = format_status(self.status)
        print(f"{self.desc}: {self.done}/{self.total} {self.unit}{percent} [{_interval(self.elapsed)}]"
              + (f" {status}" if status else ""), file=self.stream, flush=True)

    def close(self, summary: str | None = None) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        if self.enabled and summary:
            print(f"{self.desc}: {summary} [{_interval(self.elapsed)}]", file=self.stream, flush=True)

    def __getstate__(self) -> dict:
        # Ray pickles what holds a Progress (a Tune callback in the Tuner's state): no stream, no bar.
        return {**self.__dict__, "stream": None, "_bar": None}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self.stream = sys.stderr

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
