"""The `raygan tune` driver: a Ray Tune sweep over inversion and traversal settings of a bundle.

Stages (each a function below):
1. load the bundle and two image samples once on the driver: the search sample from the data's
   validation split, the holdout sample from its test split (`raygan.data.splits`);
2. sweep: OptunaSearch (TPE; Tune's random BasicVariantGenerator when optuna is missing or
   `search="random"`) proposes settings, ASHA stops weak trials early on the intermediate
   reports of `raygan.tune.trial.tune_trial`; the bundle's current settings are the first point;
3. re-score the winner, the bundle's previous settings ("before") and the authors' recipe
   (a = 4, b = 1, lr 0.01, 5000 steps, batched) on both samples, on a pool of Ray actors with
   the trials' resources, so every table row is measured the same way;
4. write trials.csv, results.csv / results.md and sweep.json under `<out>/<name>/` (results
   also as `<out>/results.*`) and make the winner the bundle's default settings
   (`raygan.bundle.update_settings`, which keeps the previous ones in the bundle's history).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
import os
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import torch
from ray.tune import Callback

from raygan import storage
from raygan.config import AUTHORS_INVERSION, InversionConfig, TraversalConfig
from raygan.data.shards import decode_rows, read_table
from raygan.data.splits import Split, filter_split
from raygan.tracking import tune_callbacks
from raygan.tune.objective import ObjectiveWeights, score
from raygan.tune.space import SearchSpace, param_space, params_from_settings, settings_from_params, step_choices
from raygan.tune.table import TableRow, score_from_metrics, to_csv, to_markdown

SearchName = Literal["optuna", "random"]
METRIC, MODE = "objective", "min"


@dataclass(frozen=True)
class SweepConfig:
    """What `raygan tune` sweeps, on which images, with which resources."""

    bundle: str  # bundle URI (local path, file:// or s3://); its settings are updated at the end
    data: str  # input shards (Parquet prefix); search images from its val split, holdout from test
    out: str | None = None  # results and Tune storage; None = <bundle>/tune
    samples: int = 20  # number of trials
    images: int = 32  # search sample size (validation split)
    holdout: int = 64  # held-out sample size (test split) the winner is re-scored on
    search: SearchName = "optuna"  # "optuna" (TPE) or "random" (Tune's BasicVariantGenerator)
    max_steps: int | None = None  # largest step budget searched; None = the bundle's current steps
    authors_steps: int = AUTHORS_INVERSION.steps  # steps of the authors' baseline row (5000; lower for quick runs)
    gpu_per_trial: float = 0.0  # GPU share of each trial and re-scoring task (e.g. 0.25: four per GPU)
    cpu_per_trial: float = 1.0  # logical CPUs of each trial and re-scoring task
    report_every: int | None = None  # inversion steps between intermediate reports; None = max_steps // 10
    grace_steps: int | None = None  # ASHA grace period in inversion steps; None = max_steps // 4
    reduction_factor: float = 2.0  # ASHA: keep the best 1 / reduction_factor at each rung
    max_concurrent: int | None = None  # trials (and re-scoring actors) at once; None = resources allow (optuna: 4)
    seed: int = 0  # seeds the image samples and the search algorithm
    update_bundle: bool = True  # write the winner into the bundle's settings
    name: str | None = None  # experiment name; None = sweep-<UTC time>
    progress: bool = True  # progress bars for the trials and the re-scoring

    def __post_init__(self) -> None:
        if self.samples < 1 or self.images < 1 or self.holdout < 1:
            raise ValueError(
                f"samples, images and holdout must be >= 1, got {self.samples}, {self.images}, {self.holdout}")
        if self.search not in ("optuna", "random"):
            raise ValueError(f"search must be 'optuna' or 'random', got {self.search!r}")
        if self.authors_steps < 1 or (self.max_steps is not None and self.max_steps < 1):
            raise ValueError(f"max_steps and authors_steps must be >= 1, got {self.max_steps}, {self.authors_steps}")
        if self.gpu_per_trial < 0 or self.cpu_per_trial <= 0:
            raise ValueError(
                f"gpu_per_trial must be >= 0 and cpu_per_trial > 0, got {self.gpu_per_trial}, {self.cpu_per_trial}")


@dataclass(frozen=True)
class ImageSample:
    """Images drawn from one split of the data, decoded at the generator's size."""

    split: Split  # "val" for the search, "test" for the holdout
    image_ids: list[str]  # ids of the decoded images, in sample order
    images: torch.Tensor  # [N, C, S, S] in [-1, 1]
    available: int  # rows of the split (the sample is min(n, available) of them, minus bad images)
    skipped: int  # sampled rows whose image failed to decode


@dataclass(frozen=True)
class SweepResult:
    """The outcome of a sweep."""

    name: str  # experiment name
    out: str  # <out>/<name>: Tune's experiment and this sweep's tables
    params: dict[str, Any]  # the winning point of the search space
    inversion: InversionConfig  # the winning inversion settings
    traversal: TraversalConfig  # the winning traversal settings
    rows: list[TableRow]  # the results table
    trials: int  # trials run
    completed: int  # trials that ran their whole step budget
    stopped_early: int  # trials ASHA stopped before their budget
    search: SearchName  # the search algorithm actually used (random when optuna is missing)
    bundle_fingerprint: str  # the bundle's fingerprint with the settings it holds after the sweep


# --- 1. images ---------------------------------------------------------------------------------


def sample_split(table: pa.Table, *, split: Split, n: int, size: int, channels: int, seed: int) -> ImageSample:
    """A seeded random sample of `n` decodable images of `split` (fewer when the split is smaller)."""
    rows = filter_split(table, split)
    order = np.random.default_rng(seed).permutation(rows.num_rows)
    ids: list[str] = []
    images: list[torch.Tensor] = []
    skipped, start = 0, 0
    # Decode in chunks until n images decoded: a bad image is replaced by the next one in the order.
    while len(ids) < n and start < len(order):
        take = order[start:start + (n - len(ids))]
        start += len(take)
        batch = decode_rows(rows.take(pa.array(take)), size=size, channels=channels)
        ids += batch.image_ids
        images.append(batch.images)
        skipped += len(batch.errors)
    if not ids:
        raise ValueError(f"no decodable image in the {split!r} split ({rows.num_rows} rows); need at least one")
    return ImageSample(split, ids, torch.cat(images), rows.num_rows, skipped)


# --- 2. the sweep ------------------------------------------------------------------------------


def _search_algorithm(name: SearchName, *, start: dict[str, Any], seed: int, samples: int) -> tuple[Any, SearchName]:
    """(Tune search algorithm, name actually used): TPE via Optuna, else random search."""
    from ray.tune.search import BasicVariantGenerator

    if name == "optuna":
        try:
            import optuna
            from ray.tune.search.optuna import OptunaSearch
        except ImportError as e:
            warnings.warn(f"optuna is not available ({e}); falling back to random search", stacklevel=2)
        else:
            # TPE samples at random for its first trials; keep that phase to about a third of the sweep.
            sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=max(2, min(10, samples // 3)))
            return OptunaSearch(sampler=sampler, points_to_evaluate=[start]), "optuna"
    return BasicVariantGenerator(points_to_evaluate=[start], random_state=seed), "random"


def _tune_storage(out: str, settings: storage.StorageSettings | None) -> dict[str, Any]:
    """RunConfig storage arguments: an absolute local path, or an S3 path with its filesystem."""
    if storage.is_remote(out):
        fs, path = storage.filesystem(out, settings)
        return {"storage_path": path, "storage_filesystem": fs}
    return {"storage_path": str(Path(out.removeprefix("file://")).expanduser().resolve())}


def _trial_rows(grid: Any) -> list[dict[str, Any]]:
    """One dict per trial: its parameters, last report, reports made, and whether it finished."""
    rows = []
    for result in grid:
        metrics = dict(result.metrics)
        history = result.metrics_dataframe
        rows.append({
            "trial_id": metrics.get("trial_id"),
            **{f"config/{k}": v for k, v in result.config.items()},
            "reports": 0 if history is None else len(history),
            "last_step": int(metrics["step"]),
            "complete": bool(metrics["complete"]),
            **{k: metrics[k] for k in score_from_metrics(metrics).metrics()},
        })
    return rows


def _winner(trials: list[dict[str, Any]]) -> dict[str, Any]:
    """The completed trial with the lowest objective (a stopped trial's last report is partial)."""
    complete = [t for t in trials if t["complete"] and not math.isnan(t[METRIC])]
    if not complete:
        raise RuntimeError(f"no trial of {len(trials)} ran its whole step budget; raise --samples or --grace-steps")
    return min(complete, key=lambda t: t[METRIC])


class TrialsBar(Callback):
    """One progress bar for the sweep: trials finished (completed or stopped by ASHA) of all."""

    def __init__(self, total: int, *, disable: bool = False) -> None:
        self.total = total
        self.disable = disable
        self.bar: Any = None
        self.stopped = 0

    def setup(self, **_info: Any) -> None:
        from raygan import console

        self.bar = console.progress(desc="tune trials", total=self.total, unit="trial", disable=self.disable)

    def on_trial_complete(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        self.stopped += int(not (trial.last_result or {}).get("complete", False))
        self.bar.set_postfix({"stopped early": self.stopped})
        self.bar.update(1)

    def on_trial_error(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        self.bar.update(1)

    def on_experiment_end(self, trials: list[Any], **info: Any) -> None:
        self.bar.close()


# --- 3. re-scoring -----------------------------------------------------------------------------


class Scorer:
    """Scores settings on image samples with one bundle (run as a Ray actor; loads the bundle once)."""

    def __init__(self, bundle_uri: str, *, settings: storage.StorageSettings | None = None) -> None:
        from raygan.bundle import load_bundle

        bundle = load_bundle(bundle_uri, settings=settings)
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self.generator = bundle.generator.to(self.device)
        self.classifier = bundle.classifier.to(self.device)

    def score(
        self,
        images: torch.Tensor,
        image_ids: list[str],
        *,
        label: str,
        sample: str,
        inversion: InversionConfig,
        traversal: TraversalConfig,
        weights: ObjectiveWeights,
        note: str = "",
    ) -> TableRow:
        """Invert `images` [N, C, S, S] as one batch with `inversion`, evaluate with `traversal`, score."""
        from raygan.tune.evaluation import invert_and_evaluate

        started = time.perf_counter()
        evaluation = invert_and_evaluate(
            self.generator, self.classifier, images.to(self.device),
            image_ids=image_ids, inversion=inversion, traversal=traversal,
        )
        seconds = time.perf_counter() - started
        return TableRow(label, sample, inversion, traversal, score(evaluation, weights=weights), seconds, note)


def _rescore(
    config: SweepConfig,
    candidates: list[tuple[str, InversionConfig, TraversalConfig, str]],
    samples: list[tuple[str, ImageSample]],
    *,
    actors: int,
    weights: ObjectiveWeights,
    settings: storage.StorageSettings | None,
) -> list[TableRow]:
    """Score every (label, settings, note) candidate on every (name, sample), in that order."""
    import ray
    from ray.util import ActorPool

    jobs = []
    for sample_name, sample in samples:
        images_ref = ray.put(sample.images)
        for label, inversion, traversal, note in candidates:
            jobs.append({"images": images_ref, "image_ids": sample.image_ids, "label": label, "sample": sample_name,
                         "inversion": inversion, "traversal": traversal, "note": note})
    # A few long-lived scorers (each imports torch and loads the bundle once) rather than a process per row,
    # never more than the cluster can place: ActorPool hands jobs to every actor, and a job given to an
    # actor that can never start waits forever.
    count = min(len(jobs), actors, scorers_that_fit(ray.cluster_resources(), cpu=config.cpu_per_trial,
                                                    gpu=config.gpu_per_trial))
    scorer = ray.remote(Scorer).options(num_cpus=config.cpu_per_trial, num_gpus=config.gpu_per_trial)
    pool = ActorPool([scorer.remote(config.bundle, settings=settings) for _ in range(count)])

    def submit(actor: Any, job: dict[str, Any]) -> Any:
        job = dict(job)
        return actor.score.remote(job.pop("images"), job.pop("image_ids"), weights=weights, **job)

    from tqdm import tqdm

    desc = f"re-scoring on {count} actor(s)"
    return list(tqdm(pool.map(submit, jobs), total=len(jobs), desc=desc, unit="row", disable=not config.progress))


def scorers_that_fit(total: dict[str, float], *, cpu: float, gpu: float) -> int:
    """How many scorer actors of `cpu` CPUs and `gpu` GPUs the cluster's `total` resources hold at once (>= 1;
    `raygan.cluster.require` has already refused a trial that fits nowhere)."""
    fits = [math.floor(total.get("CPU", 0.0) / cpu + 1e-9)]
    if gpu > 0:
        fits.append(math.floor(total.get("GPU", 0.0) / gpu + 1e-9))
    return max(1, min(fits))


# --- 4. the whole run --------------------------------------------------------------------------


def run_sweep(
    config: SweepConfig,
    *,
    space: SearchSpace = SearchSpace(),
    weights: ObjectiveWeights = ObjectiveWeights(),
    settings: storage.StorageSettings | None = None,
) -> SweepResult:
    """Sweep, re-score, write the tables and (unless told not to) update the bundle's settings."""
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler

    from raygan.bundle import load_bundle, update_settings
    from raygan.cluster import connect, require, require_shared
    from raygan.tune.trial import tune_trial

    bundle = load_bundle(config.bundle, settings=settings)
    max_steps = config.max_steps or bundle.inversion.steps
    report_every = config.report_every or max(1, max_steps // 10)
    grace = config.grace_steps or max(report_every, max_steps // 4)
    name = config.name or f"sweep-{dt.datetime.now(dt.timezone.utc):%Y%m%d-%H%M%S}"
    out = config.out or storage.join(config.bundle, "tune")
    run_dir = storage.join(out, name)

    # 1. Images, once, on the driver.
    table = read_table(config.data, columns=["image_id", "image"], settings=settings)
    size, channels = bundle.gan.image_size, bundle.gan.channels
    search = sample_split(table, split="val", n=config.images, size=size, channels=channels, seed=config.seed)
    holdout = sample_split(table, split="test", n=config.holdout, size=size, channels=channels, seed=config.seed)
    print(f"[raygan tune] search sample: {len(search.image_ids)} val images ({search.skipped} undecodable); "
          f"holdout: {len(holdout.image_ids)} test images ({holdout.skipped} undecodable)")

    # 2. The sweep; the bundle's current settings are its first point.
    connect(local_cpus=os.cpu_count() or 1)
    # Every trial loads the bundle and Tune keeps its trial state under `out`; the images were read here.
    require_shared({"--bundle": config.bundle, "--out": out})
    require(cpus=config.cpu_per_trial, gpus=config.gpu_per_trial, what="a tune trial")
    start = params_from_settings(bundle.inversion, bundle.traversal, space=space, max_steps=max_steps)
    search_alg, used = _search_algorithm(config.search, start=start, seed=config.seed, samples=config.samples)
    trainable = tune.with_resources(
        tune.with_parameters(
            tune_trial, images=search.images, image_ids=search.image_ids, bundle_uri=config.bundle,
            base_inversion=bundle.inversion, base_traversal=bundle.traversal, report_every=report_every,
            weights=weights, settings=settings,
        ),
        {"cpu": config.cpu_per_trial, "gpu": config.gpu_per_trial},
    )
    scheduler = ASHAScheduler(time_attr="step", max_t=max_steps, grace_period=grace,
                              reduction_factor=config.reduction_factor)
    concurrent = config.max_concurrent or (4 if used == "optuna" else None)  # TPE learns little from many at once
    tuner = tune.Tuner(
        trainable,
        param_space=param_space(space, max_steps=max_steps),
        tune_config=tune.TuneConfig(
            metric=METRIC, mode=MODE, num_samples=config.samples, search_alg=search_alg, scheduler=scheduler,
            max_concurrent_trials=concurrent, reuse_actors=True,  # reuse: torch and the bundle load once per actor
        ),
        # verbose=0: a trials bar instead of Tune's status tables; TensorBoard files per trial come
        # from Tune's own tensorboardX logger, MLflow from tune_callbacks when MLFLOW_TRACKING_URI is set.
        run_config=tune.RunConfig(name=name, verbose=0, callbacks=[TrialsBar(config.samples, disable=not config.progress),
                                                                   *tune_callbacks()], **_tune_storage(out, settings)),
    )
    grid = tuner.fit()
    if grid.num_errors:
        raise RuntimeError(f"{grid.num_errors} of {len(grid)} trials failed; first error: {grid.errors[0]}")
    trials = _trial_rows(grid)
    best = _winner(trials)
    params = {k.removeprefix("config/"): v for k, v in best.items() if k.startswith("config/")}
    inversion, traversal = settings_from_params(params, base_inversion=bundle.inversion,
                                                base_traversal=bundle.traversal)

    # 3. Winner, previous defaults and the authors' recipe on both samples.
    authors = dataclasses.replace(AUTHORS_INVERSION, steps=config.authors_steps)
    authors_note = "authors' recipe, DESIGN.md traversal N = 10, lambda = 0.1" + (
        "" if config.authors_steps == AUTHORS_INVERSION.steps
        else f"; {AUTHORS_INVERSION.steps} steps shrunk to {config.authors_steps} (--authors-steps)")
    candidates = [
        ("tuned", inversion, traversal, f"winner of {len(trials)} trials ({used})"),
        ("before", bundle.inversion, bundle.traversal, "the bundle's settings before this sweep"),
        ("authors", authors, TraversalConfig(), authors_note),
    ]
    rows = _rescore(config, candidates, [("search", search), ("holdout", holdout)],
                    actors=concurrent or len(candidates) * 2, weights=weights, settings=settings)

    # 4. Tables, the sweep's record, and the bundle's new defaults.
    storage.write_text(storage.join(run_dir, "trials.csv"), _dicts_to_csv(trials), settings=settings)
    for target in (run_dir, out):
        storage.write_text(storage.join(target, "results.csv"), to_csv(rows), settings=settings)
        storage.write_text(storage.join(target, "results.md"), to_markdown(rows), settings=settings)
    record = {
        "config": dataclasses.asdict(config), "space": dataclasses.asdict(space),
        "weights": dataclasses.asdict(weights), "search_used": used, "max_steps": max_steps,
        "step_choices": step_choices(space, max_steps=max_steps), "report_every": report_every,
        "grace_steps": grace, "bundle_fingerprint_before": bundle.fingerprint,
        "winner": {"params": params, "trial_id": best["trial_id"], "inversion": dataclasses.asdict(inversion),
                   "traversal": dataclasses.asdict(traversal)},
        "samples": {"search": {"split": "val", "images": len(search.image_ids), "available": search.available},
                    "holdout": {"split": "test", "images": len(holdout.image_ids), "available": holdout.available}},
        "rows": [r.flat() for r in rows],
    }
    storage.write_json(storage.join(run_dir, "sweep.json"), record, settings=settings)
    fingerprint = bundle.fingerprint
    if config.update_bundle:
        scores = {f"{r.label}_{r.sample}_objective": r.score.objective for r in rows}
        update_settings(
            config.bundle, inversion=inversion, traversal=traversal, source=f"raygan tune {name}",
            scores={k: v for k, v in scores.items() if not math.isnan(v)}, settings=settings,
        )
        fingerprint = bundle.bundle_id(inversion, traversal)
    return SweepResult(
        name=name, out=run_dir, params=params, inversion=inversion, traversal=traversal, rows=rows,
        trials=len(trials), completed=sum(t["complete"] for t in trials),
        stopped_early=sum(not t["complete"] for t in trials), search=used, bundle_fingerprint=fingerprint,
    )


def _dicts_to_csv(rows: list[dict[str, Any]]) -> str:
    import csv
    import io

    buffer = io.StringIO()
    fields = list(dict.fromkeys(k for r in rows for k in r))
    writer = csv.DictWriter(buffer, fieldnames=fields)
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


__all__ = ["ImageSample", "SweepConfig", "SweepResult", "Scorer", "run_sweep", "sample_split"]
