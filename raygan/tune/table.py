"""The sweep's results table: one row per (settings, image sample), written as CSV and Markdown."""

from __future__ import annotations

import csv
import dataclasses
import io
import math
from dataclasses import dataclass

from raygan.config import InversionConfig, TraversalConfig
from raygan.tune.objective import Score

# Score fields shown in the Markdown table (the CSV has them all).
MARKDOWN_SCORES = (
    "objective", "recon_mse", "recon_ssim", "prob_gap", "flip_rate", "monotone_share", "monotone_own",
    "monotone_fallback", "start_share",
    "end_gap", "fallback_share", "max_jump", "boundary_frames", "steps",
)


@dataclass(frozen=True)
class TableRow:
    """One set of settings scored on one sample of images."""

    label: str  # which settings: "tuned", "authors", "before" (the bundle's previous defaults)
    sample: str  # which images: "search" (validation split) or "holdout" (test split)
    inversion: InversionConfig  # the inversion settings scored
    traversal: TraversalConfig  # the traversal settings scored
    score: Score  # every component and the objective
    seconds: float  # wall time of inversion + evaluation for the whole sample (0 when taken from the trial)
    note: str = ""  # e.g. "5000 steps shrunk to 300 (--authors-steps)"

    def flat(self) -> dict[str, object]:
        """The row as one flat dict: settings, every score component, time, note."""
        inv, trav = self.inversion, self.traversal
        return {
            "label": self.label,
            "sample": self.sample,
            "a_mse_weight": inv.mse_weight,
            "b_bce_weight": inv.bce_weight,
            "lr": inv.lr,
            "steps_budget": inv.steps,
            "counterfactual_weight": inv.counterfactual_weight,
            "schedule": inv.schedule,
            "frames": trav.frames,
            "rate": trav.rate,
            "reach": trav.frames * trav.rate,
            **dataclasses.asdict(self.score),
            "seconds": self.seconds,
            "note": self.note,
        }


def to_csv(rows: list[TableRow]) -> str:
    """All columns of `rows` as CSV text."""
    buffer = io.StringIO()
    flat = [r.flat() for r in rows]
    writer = csv.DictWriter(buffer, fieldnames=list(flat[0]) if flat else ["label"])
    writer.writeheader()
    writer.writerows(flat)
    return buffer.getvalue()


def _fmt(value: object) -> str:
    if isinstance(value, float):
        if math.isnan(value):
            return "n/a"
        return f"{value:.4g}"
    return str(value)


def to_markdown(rows: list[TableRow]) -> str:
    """A readable Markdown table of `rows` (settings, the main score components, time, note)."""
    head = ["settings", "sample", "images", "a", "b", "lr", "steps", "cf w", "N", "lambda", *MARKDOWN_SCORES,
            "seconds", "note"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        inv, trav, s = r.inversion, r.traversal, r.score
        cells = [
            r.label, r.sample, s.images, inv.mse_weight, inv.bce_weight, inv.lr, inv.steps, inv.counterfactual_weight,
            trav.frames, trav.rate, *(getattr(s, k) for k in MARKDOWN_SCORES), r.seconds, r.note,
        ]
        lines.append("| " + " | ".join(_fmt(c) for c in cells) + " |")
    return "\n".join(lines) + "\n"


def score_from_metrics(metrics: dict[str, object]) -> Score:
    """Rebuild a `Score` from a trial's reported metrics (which carry every field)."""
    kwargs = {}
    for f in dataclasses.fields(Score):
        value = metrics[f.name]
        kwargs[f.name] = int(value) if f.type in ("int", int) else float(value)  # type: ignore[arg-type]
    return Score(**kwargs)  # type: ignore[arg-type]


__all__ = ["MARKDOWN_SCORES", "TableRow", "score_from_metrics", "to_csv", "to_markdown"]
