"""`ray job submit --working-dir . -- python jobs/explain.py --input URI --bundle URI --out URI [...]`

Thin entry point: the flags are exactly those of `raygan explain-bulk` (see `raygan explain-bulk
--help`); the Ray Data job runs on the cluster the job is submitted to (ray.init() joins it).
Resubmitting the same command after a failure resumes: work units whose results file is already in
<out>/results/ are skipped (a failure loses at most the units in progress).
"""

from __future__ import annotations

import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    """Run `raygan explain-bulk` with this script's arguments."""
    # `python jobs/explain.py` puts jobs/ first on sys.path; the package sits one level up in the
    # job's working directory when raygan is not installed on the cluster.
    root = str(Path(__file__).resolve().parents[1])
    if root not in sys.path:
        sys.path.insert(0, root)
    from raygan.cli import main as cli_main

    return cli_main(["explain-bulk", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
