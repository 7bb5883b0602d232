"""`ray job submit --working-dir . -- python jobs/train_encoder.py --bundle URI --data URI [...]`

Thin entry point: the flags are exactly those of `raygan train-encoder` (see `raygan train-encoder
--help`). Inside a submitted job RAY_ADDRESS is set and training joins that cluster; run directly
it starts a local Ray. On a multi-node cluster --bundle (or --storage-path) must be shared storage
(s3://...). Resubmitting the same command resumes from the latest checkpoint.
"""

from __future__ import annotations

import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    """Run `raygan train-encoder` with this script's arguments."""
    # `python jobs/train_encoder.py` puts jobs/ first on sys.path; the package sits one level up in
    # the job's working directory when raygan is not installed on the cluster.
    root = str(Path(__file__).resolve().parents[1])
    if root not in sys.path:
        sys.path.insert(0, root)
    from raygan.cli import main as cli_main

    return cli_main(["train-encoder", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
