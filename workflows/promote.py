"""Promote a registered version to production behind a gate; force with a reason; roll back; list.

    python workflows/promote.py --model reid-dve-tiger --version 7
    python workflows/promote.py --model reid-dve-tiger --alias candidate --metric mAP --tolerance 0.01
    python workflows/promote.py --model reid-dve-tiger --version 6 --force --reason "hotfix: v7 fails on night images"
    python workflows/promote.py --model reid-dve-tiger --rollback --reason "v7 regressed in the field"
    python workflows/promote.py --model reid-dve-tiger --list
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the submitted working dir's reid_core

from reid_core.cli import app  # noqa: E402

if __name__ == "__main__":  # an alias of `reid promote`
    sys.exit(app.main(["promote", *sys.argv[1:]]))
