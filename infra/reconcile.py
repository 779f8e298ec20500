"""Read a setting, compare it with what is wanted, write it only when it differs.

Every bucket and IAM setting is a ``Setting``: ``apply`` writes the ones that differ (in order, so a
bucket exists before its settings are read), ``--dry-run`` and ``check`` only read. A store that answers
NotImplemented (MinIO-like, with ``--s3-compatible``) gets a warning and the run goes on.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import ClientError


class _Absent:
    def __repr__(self) -> str:
        return "absent"


ABSENT = _Absent()


class InfraError(RuntimeError):
    """A failed AWS call or a conflict: one line naming the fix; exit status 1."""


class NotImplementedByStore(InfraError):
    pass


def error_code(error: ClientError) -> str:
    return error.response.get("Error", {}).get("Code", "")


def is_not_implemented(error: ClientError) -> bool:
    status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return error_code(error) in ("NotImplemented", "NotImplementedError", "501") or status == 501


def show(value: Any) -> str:
    if value is ABSENT:
        return "absent"
    if isinstance(value, str):
        return value
    text = json.dumps(value, sort_keys=True, default=str, separators=(",", ":"))
    return text if len(text) <= 160 else text[:157] + "..."


@dataclass
class Setting:
    resource: str                                   # e.g. "bucket reid-data", "role reid-ray-worker"
    name: str                                       # e.g. "versioning"
    want: Any
    read: Callable[[], Any]                         # the current value, normalised like ``want``; ABSENT
    write: Callable[[Any], None]                    # given the current value, make it ``want``
    matches: Callable[[Any, Any], bool] = lambda current, want: current == want
    operation: str = ""                             # the API call it writes with, for messages

    def label(self) -> str:
        return f"{self.resource}: {self.name}"


@dataclass
class Outcome:
    checked: int = 0
    changes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def _call(setting: Setting, action: Callable[[], Any], s3_compatible: bool, outcome: Outcome, verb: str):
    try:
        return action()
    except ClientError as error:
        if is_not_implemented(error):
            message = (f"{setting.label()}: the store does not implement {setting.operation or 'this call'} "
                       f"({verb})")
            if s3_compatible:
                outcome.warnings.append(f"warning: {message}; left as it is (--s3-compatible)")
                return _SKIPPED
            raise NotImplementedByStore(
                f"{message}; rerun with --s3-compatible to skip what an S3-compatible store lacks") from None
        raise InfraError(f"{setting.label()}: {verb} failed: {error_code(error) or 'error'}: "
                         f"{error.response.get('Error', {}).get('Message', error)}") from None


_SKIPPED = object()


def reconcile(settings: list[Setting], *, apply: bool, s3_compatible: bool = False, check: bool = False,
              log: Callable[[str], None] = print) -> Outcome:
    """Compare each setting in order; with ``apply`` write those that differ. Returns what differed
    (``check`` words each difference as a drift)."""
    outcome = Outcome()
    for setting in settings:
        current = _call(setting, setting.read, s3_compatible, outcome, "reading it")
        if current is _SKIPPED:
            log(outcome.warnings[-1])
            continue
        outcome.checked += 1
        if setting.matches(current, setting.want):
            continue
        if check:
            change = f"drift: {setting.label()}: is {show(current)}, want {show(setting.want)}"
        elif current is ABSENT:
            change = f"+ {setting.label()}: {show(setting.want)}"
        else:
            change = f"~ {setting.label()}: {show(current)} -> {show(setting.want)}"
        if apply:
            result = _call(setting, lambda s=setting, c=current: s.write(c), s3_compatible, outcome, "writing it")
            if result is _SKIPPED:
                log(outcome.warnings[-1])
                continue
        outcome.changes.append(change)
        log(change)
    return outcome
