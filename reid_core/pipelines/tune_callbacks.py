"""Tune callbacks of a sweep (they run on the Tune driver): MLflow child runs, and the console progress.

Both survive what Tune survives: a trial retried after a lost worker (``on_trial_recover``, then
``on_trial_start`` again) keeps its child run, and a driver resumed with ``--resume`` reattaches to the
child runs of the trials it continues (found by their ``trial_id`` tag under the same parent run).
"""

from __future__ import annotations

from collections.abc import Mapping

import polars as pl

from reid_core import tracking
from reid_core.pipelines import console
from reid_core.settings import Settings

METRIC = "val.mAP"
TIME_ATTR = "tuned_epoch"  # epochs of the stages the method lets the tuner count


def existing_trial_run(parent_run_id: str, trial_id: str, settings: Settings) -> str | None:
    """The child run of ``trial_id`` under the sweep's parent run, if an earlier driver made one."""
    children = tracking.child_runs(parent_run_id, settings=settings)
    if children.is_empty() or "tags.trial_id" not in children.columns:
        return None
    found = children.filter(pl.col("tags.trial_id") == trial_id)["run_id"]
    return found[0] if len(found) else None


def trial_logger(parent_run_id: str, tags: Mapping[str, str], settings: Settings, data_input=None):
    """A Tune callback mirroring each trial into an MLflow child run as it runs; ``data_input(run_id)``
    logs the sweep's manifest as a new child run's dataset input."""
    from ray.tune import Callback

    class TrialRunLogger(Callback):
        def __init__(self) -> None:
            self.run_ids: dict[str, str] = {}

        def on_trial_start(self, iteration, trials, trial, **info):
            run_id = self.run_ids.get(trial.trial_id) or existing_trial_run(parent_run_id, trial.trial_id, settings)
            if run_id is not None:  # a retry after a failure, or a trial a killed driver had started
                tracking.configure(settings).update_run(run_id, status="RUNNING")
            else:
                run_id = tracking.start_trial_run(
                    parent_run_id, params=trial.config, tags={**tags, "trial_id": trial.trial_id},
                    run_name=f"trial-{trial.trial_id}", settings=settings)
                if data_input is not None:
                    data_input(run_id)
            self.run_ids[trial.trial_id] = run_id

        def on_trial_result(self, iteration, trials, trial, result, **info):
            metrics = {k: v for k, v in result.items() if k.startswith(("train.", "val."))}
            tracking.log_metrics(self.run_ids[trial.trial_id], metrics, step=int(result.get("epoch", 0)),
                                 settings=settings)

        def on_trial_recover(self, iteration, trials, trial, **info):
            # Tune restarts the trial from its last checkpoint; the run records how often that happened.
            tracking.set_tags(self.run_ids[trial.trial_id], {"num_failures": trial.num_failures}, settings=settings)

        def on_trial_complete(self, iteration, trials, trial, **info):
            tracking.end_run(self.run_ids[trial.trial_id], "FINISHED", settings=settings)

        def on_trial_error(self, iteration, trials, trial, **info):
            tracking.set_tags(self.run_ids[trial.trial_id], {"num_failures": trial.num_failures}, settings=settings)
            tracking.end_run(self.run_ids[trial.trial_id], "FAILED", settings=settings)

    return TrialRunLogger()


def trial_progress(species: str, num_samples: int, epochs: int, done: int = 0, enabled: bool = True):
    """A Tune callback moving one progress over the sweep's trials: finished (completed, stopped early
    by ASHA or failed) of ``num_samples`` (``done`` of them by an earlier driver), with the running
    trials, the epochs trained so far and the best validation mAP as its status."""
    from ray.tune import Callback

    class TrialProgress(Callback):
        def __init__(self) -> None:
            self.bar = console.Progress(f"tune {species}", num_samples, "trials", enabled=enabled)
            self.bar.advance(done)
            self.epochs: dict[str, int] = {}
            self.scores: dict[str, float] = {}  # each trial's latest val.mAP (what picks the best trial)
            self.stopped_early = self.failed = self.retried = 0

        def _best(self) -> tuple[str, float] | None:
            return max(self.scores.items(), key=lambda item: item[1]) if self.scores else None

        def _status(self, trials, ended=None) -> dict:
            running = sum(1 for t in trials if t.status == "RUNNING" and t is not ended)
            best = self._best()
            return {"running": running, "epochs": f"{sum(self.epochs.values())}/{num_samples * epochs}",
                    f"best {METRIC}": f"{best[1]:.4g} ({best[0]})" if best else None}

        def on_trial_result(self, iteration, trials, trial, result, **info):
            self.epochs[trial.trial_id] = int(result.get(TIME_ATTR, self.epochs.get(trial.trial_id, 0)))
            if METRIC in result:
                self.scores[trial.trial_id] = float(result[METRIC])
            self.bar.set_status(**self._status(trials))

        def on_trial_recover(self, iteration, trials, trial, **info):
            self.retried += 1

        def on_trial_complete(self, iteration, trials, trial, **info):
            if self.epochs.get(trial.trial_id, 0) < epochs:
                self.stopped_early += 1
            self.bar.advance(1, **self._status(trials, ended=trial))

        def on_trial_error(self, iteration, trials, trial, **info):
            self.failed += 1
            self.scores.pop(trial.trial_id, None)
            self.bar.advance(1, **self._status(trials, ended=trial))

        def summary(self) -> str:
            best = self._best()
            text = (f"{self.bar.done} trials, {sum(self.epochs.values())} epochs ({self.stopped_early} stopped "
                    f"early by ASHA, {self.failed} failed, {self.retried} retried after a failure)")
            return text + (f", best {METRIC} {best[1]:.4g} (trial {best[0]})" if best else "")

    return TrialProgress()
