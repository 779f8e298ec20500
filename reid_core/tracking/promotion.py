"""Moving the ``production`` alias and recording why, as version tags.

The registry alone tells the history: each promoted version carries ``promoted_at``, the version it
replaced (``previous_production_version``, "none" for the first) and the decision; rollback follows
that chain backwards. Deciding *whether* to promote (the gate) lives in ``reid_core.lifecycle.promote``.
"""

from __future__ import annotations

import getpass
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from reid_core.settings import Settings
from reid_core.tracking.registry import PRODUCTION, get_version_by_alias
from reid_core.tracking.store import configure
from reid_core.tracking.versions import LIST_HINT, ModelNotFoundError, get_version

NO_PREVIOUS = "none"


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry in some containers
        return "unknown"


def tag_version(name: str, version: str | int, tags: Mapping[str, Any], settings: Settings | None = None) -> None:
    client = configure(settings)
    for key, value in tags.items():
        client.set_model_version_tag(name, str(version), key, str(value))


def production_version(name: str, settings: Settings | None = None) -> str | None:
    found = get_version_by_alias(name, PRODUCTION, settings)
    return None if found is None else str(found.version)


def move_production(name: str, version: str | int, tags: Mapping[str, Any],
                    settings: Settings | None = None) -> str | None:
    """Point ``production`` at ``version``, tag it, and tag the version it replaces; returns that one."""
    previous = production_version(name, settings)
    # The alias first: if it fails, no version carries tags claiming a promotion that did not happen.
    configure(settings).set_registered_model_alias(name, PRODUCTION, str(version))
    tag_version(name, version, {"promoted_at": now_iso(), "promoted_by": _user(),
                                "previous_production_version": previous or NO_PREVIOUS, **tags}, settings)
    if previous is not None and previous != str(version):
        tag_version(name, previous, {"superseded_at": now_iso(), "superseded_by": str(version)}, settings)
    return previous


@dataclass
class Rollback:
    name: str
    from_version: str
    to_version: str


def rollback(name: str, reason: str, settings: Settings | None = None) -> Rollback:
    """Point ``production`` back at the version the current one replaced.

    Repeated rollbacks walk further back along ``previous_production_version``.
    """
    current = get_version_by_alias(name, PRODUCTION, settings)
    if current is None:
        raise ModelNotFoundError(f"{name} has no production version to roll back; {LIST_HINT.format(name=name)}")
    target = current.tags.get("previous_production_version", NO_PREVIOUS)
    if target == NO_PREVIOUS:
        raise ModelNotFoundError(
            f"{name} v{current.version} was its first production version: there is nothing to roll back to. "
            f"Promote another version instead (--version N --force --reason ...); {LIST_HINT.format(name=name)}")
    client = configure(settings)
    try:
        get_version(name, target, settings=settings)
    except ModelNotFoundError:  # deleted since: say so rather than pointing the alias at nothing
        raise ModelNotFoundError(f"{name} v{current.version} replaced v{target}, which no longer exists; "
                                 f"{LIST_HINT.format(name=name)}") from None
    client.set_registered_model_alias(name, PRODUCTION, target)
    stamp = now_iso()
    tag_version(name, current.version, {"rolled_back_at": stamp, "rolled_back_to": target,
                                        "rollback_reason": reason, "rolled_back_by": _user()}, settings)
    tag_version(name, target, {"restored_at": stamp, "restored_from": str(current.version)}, settings)
    return Rollback(name, str(current.version), target)
