"""`ray job submit --working-dir . -- python jobs/train_classifier.py --data URI --out URI [--arch A ...]`

Thin entry point: the flags are exactly those of `raygan train-classifier` (see `raygan
train-classifier --help`). Inside a submitted job RAY_ADDRESS is set and training joins that
cluster; run directly it starts a local Ray. Prints held-out accuracy and ROC AUC; --out becomes
a classifier spec for `raygan train --classifier`.
"""

from __future__ import annotations

import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    """Run `raygan train-classifier` with this script's arguments."""
    root = str(Path(__file__).resolve().parents[1])
    if root not in sys.path:
        sys.path.insert(0, root)
    from raygan.cli import main as cli_main

    return cli_main(["train-classifier", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
