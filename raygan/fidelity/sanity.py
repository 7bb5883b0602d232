"""The full-pipeline sanity check: does raygan's explanation depend on what the classifier learned?

Adebayo et al.'s model-randomisation test, applied to the whole pipeline rather than to a map of
a fixed model: the GAN is retrained against (a) a weight-randomised copy of the classifier and
(b) a classifier trained on permuted labels, and the same shortcut-only test phantoms are
explained by each pipeline. If the difference maps and the traversal probability curves of those
pipelines resemble the trained pipeline's, the explanation shows the generator (or the data), not
the classifier. Scores per image: SSIM and Spearman rho between the maps (each normalised to
[0, 1]), Spearman rho between the traversal curves; Grad-CAM and IG of the same classifiers beside
them. Low similarity passes. The three pipelines train in parallel processes, one thread each.
"""

from __future__ import annotations

import concurrent.futures as futures
import dataclasses
import datetime as dt
import json
import math
import multiprocessing
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

VARIANTS = ("trained", "randomised", "permuted")
SSIM_TARGET = 0.2  # issue 10: mean SSIM of the trained vs randomised difference maps at most this


@dataclass(frozen=True)
class SanityConfig:
    """What the sanity check runs."""

    out: str = "runs/fidelity-sanity"  # models and per-variant explanations
    docs: str | None = "docs"  # fidelity-sanity.json and .md go here (None: under `out`)
    preset: str = "small"  # model preset
    world: str = "shortcut_only"  # the phantom world
    shortcut_kind: str = "marker"  # its shortcut
    seed: int = 0  # seeds phantoms, classifiers, GANs, explanations and the permutation
    phantoms: int = 2000  # phantoms rendered
    explain: int = 32  # test phantoms explained by every pipeline
    classifier_epochs: int = 4  # epochs of the trained and the label-permuted classifier
    gan_epochs: int | None = None  # GAN epochs (None: the preset's)
    gan_cap_s: float = 420.0  # each GAN stops after the epoch that crosses this
    workers: int = 3  # pipelines trained at once (one torch thread each)


def _phantoms(config: SanityConfig) -> tuple[Any, Any]:
    from raygan.config import preset
    from raygan.data.phantoms import world_config
    from raygan.fidelity.phantom_set import render_split

    size = preset(config.preset).gan.image_size
    world = world_config(config.world, n=config.phantoms, size=size, seed=config.seed,
                         shortcut_kind=config.shortcut_kind)  # type: ignore[arg-type]
    test = render_split(world, "test", twins=False)
    carriers = test.has_shortcut.nonzero().squeeze(1)[: config.explain]  # shortcut carriers first: what C reads
    rest = (~test.has_shortcut).nonzero().squeeze(1)[: max(0, config.explain - carriers.numel())]
    return render_split(world, "train", twins=False), test.subset(torch.cat([carriers, rest]).sort().values)


def _pipeline(variant: str, config: SanityConfig, classifier_path: str, out: str) -> str:
    """Worker process: the GAN against this variant's classifier, then the explanations; saves a .pt."""
    from raygan.config import preset, replace
    from raygan.explain.explainer import Explainer
    from raygan.fidelity.cell import explain_all, frozen_classifier
    from raygan.metrics.class_consistency import class_consistency
    from raygan.models.classifier import build_classifier
    from raygan.train.local import fit_gan

    torch.set_num_threads(1)
    p = preset(config.preset)
    train, sample = _phantoms(config)
    arch, size = p.classifier.arch, p.gan.image_size
    model = build_classifier(arch, image_size=size)
    model.load_state_dict(torch.load(classifier_path, weights_only=True))
    classifier = frozen_classifier(model.eval(), arch=arch, size=size)
    train_cfg = replace(p.train, epochs=config.gan_epochs, seed=config.seed, workers=0, use_gpu=False)
    generator, fit = fit_gan(train.images, classifier, gan=p.gan, train=train_cfg, cap_s=config.gan_cap_s)
    explainer = Explainer(generator, classifier, inversion=replace(p.inversion, seed=config.seed),
                          traversal=p.traversal, device="cpu")
    explained = explain_all(explainer, sample, batch=config.explain)
    torch.save({
        "variant": variant, "settings": _settings(config), "epochs": fit.epochs,
        "consistency": class_consistency(generator, classifier, n_z1=250, seed=config.seed).accuracy,
        "maps": {name: torch.stack([e.maps[name] for e in explained]) for name in ("diff", "path", "swap", "gradcam", "ig")},
        "curves": torch.tensor([e.traversal_probs for e in explained]),
        "p_input": torch.tensor([e.p_input for e in explained]),
    }, out)
    return out


def _settings(config: SanityConfig) -> dict[str, Any]:
    """What decides a pipeline's result (not where it is written or how many run at once)."""
    return {k: v for k, v in dataclasses.asdict(config).items() if k not in ("out", "docs", "workers")}


def _saved_runs(config: SanityConfig) -> dict[str, dict[str, Any]] | None:
    """The three pipelines of an earlier run with the same settings, else None (then everything is retrained)."""
    paths = {v: Path(config.out) / f"run-{v}.pt" for v in VARIANTS}
    if not all(path.is_file() for path in paths.values()):
        return None
    runs = {v: torch.load(path, weights_only=False) for v, path in paths.items()}
    return runs if all(r.get("settings") == _settings(config) for r in runs.values()) else None


def _similarity(a: torch.Tensor, b: torch.Tensor) -> dict[str, list[float]]:
    """Per image SSIM and Spearman rho of two map sets [N, 1, S, S] (each normalised to [0, 1])."""
    from raygan.metrics.reconstruction import per_image_ssim
    from raygan.metrics.sanity import _unit_to_signed
    from raygan.metrics.stats import spearman_rows

    return {"ssim": per_image_ssim(_unit_to_signed(a.float()), _unit_to_signed(b.float())).tolist(),
            "spearman": spearman_rows(a.flatten(1).float(), b.flatten(1).float()).tolist()}


OTHER_IMAGE = "trained, another image"  # the floor: the trained pipeline's map of one image against another image's


def compare(runs: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows (variant, method, metric, mean, ci95, n) comparing each variant with the trained pipeline.

    Beside them, the same similarities between the trained pipeline's maps of *different* images (each image
    against the next one): what unrelated maps score. Sparse maps score a high SSIM whatever they show, so a
    variant's similarity reads against this floor, not against 0. Traversal curves rise by construction, so
    their rank correlation is near 1 for any two pipelines; their mean abs(p - p_trained) along alpha says
    more."""
    from raygan.metrics.bootstrap import bootstrap
    from raygan.metrics.stats import spearman_rows

    def row(variant: str, method: str, metric: str, values: list[float]) -> dict[str, Any]:
        ci = bootstrap([values])
        return {"variant": variant, "method": method, "metric": metric, "mean": ci.value, "ci95": ci.as_list(),
                "n": ci.n}

    rows = []
    base = runs["trained"]
    another = torch.roll(torch.arange(base["curves"].shape[0]), 1)
    maps = (("raygan", "diff"), ("raygan_path", "path"), ("raygan_swap", "swap"), ("gradcam", "gradcam"), ("ig", "ig"))
    for variant in ("randomised", "permuted", OTHER_IMAGE):
        for method, key in maps:
            other = base["maps"][key][another] if variant == OTHER_IMAGE else runs[variant]["maps"][key]
            for metric, values in _similarity(base["maps"][key], other).items():
                rows.append(row(variant, method, f"map {metric}", values))
        if variant == OTHER_IMAGE:
            continue
        curves = runs[variant]["curves"].double()
        rows.append(row(variant, "raygan", "traversal curve spearman",
                        spearman_rows(base["curves"].double(), curves).tolist()))
        rows.append(row(variant, "raygan", "traversal curve mean abs(p - p_trained)",
                        (base["curves"].double() - curves).abs().mean(1).tolist()))
    return rows


def run_sanity(config: SanityConfig, *, log: Any = print) -> dict[str, Any]:
    """Train the three pipelines (in parallel; reused when saved with the same settings), compare them, write
    fidelity-sanity.{json,md}."""
    started = time.perf_counter()
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    runs = _saved_runs(config)
    reused = runs is not None
    if runs is None:
        runs = _train_pipelines(config, log=log, started=started)
    else:
        log(f"reusing the three pipelines in {out} (same settings); delete them to retrain")
    rows = compare(runs)
    ssim = next(r["mean"] for r in rows if (r["variant"], r["method"], r["metric"]) == ("randomised", "raygan", "map ssim"))
    document = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), "config": dataclasses.asdict(config),
        "seconds": time.perf_counter() - started, "reused": reused, "rows": rows,
        "runs": {v: {"epochs": r["epochs"], "consistency": r["consistency"],
                     "mean_p_input": float(r["p_input"].mean())} for v, r in runs.items()},
        "target": {"metric": "mean SSIM, trained vs randomised difference maps", "value": ssim,
                   "goal": f"<= {SSIM_TARGET}", "met": bool(ssim <= SSIM_TARGET) if math.isfinite(ssim) else None},
    }
    folder = Path(config.docs) if config.docs else out
    folder.mkdir(parents=True, exist_ok=True)
    from raygan.storage import jsonable

    (folder / "fidelity-sanity.json").write_text(json.dumps(jsonable(document), indent=1, allow_nan=False) + "\n")
    (folder / "fidelity-sanity.md").write_text(to_markdown(document))
    log(f"wrote {folder / 'fidelity-sanity'}.json and .md ({document['seconds'] / 60:.1f} min)")
    return document


def _train_pipelines(config: SanityConfig, *, log: Any, started: float) -> dict[str, dict[str, Any]]:
    """The trained, weight-randomised and label-permuted classifiers, then a GAN and explanations for each."""
    from raygan.config import preset
    from raygan.fidelity.cell import train_classifier
    from raygan.metrics.sanity import randomised_copy

    out = Path(config.out)
    p = preset(config.preset)
    train, _ = _phantoms(config)
    trained = train_classifier(p.classifier.arch, train, preset=p, seed=config.seed, epochs=config.classifier_epochs)
    permutation = torch.randperm(len(train), generator=torch.Generator().manual_seed(config.seed + 7))
    permuted_train = dataclasses.replace(train, labels=train.labels[permutation])
    permuted = train_classifier(p.classifier.arch, permuted_train, preset=p, seed=config.seed,
                                epochs=config.classifier_epochs)
    models = {"trained": trained.model, "randomised": randomised_copy(trained.model, seed=config.seed),
              "permuted": permuted.model}
    paths = {}
    for variant, model in models.items():
        paths[variant] = str(out / f"classifier-{variant}.pt")
        torch.save(model.state_dict(), paths[variant])
    log(f"classifiers ready ({time.perf_counter() - started:.0f} s); training {len(VARIANTS)} GANs")
    context = multiprocessing.get_context("spawn")
    with futures.ProcessPoolExecutor(max_workers=config.workers, mp_context=context) as pool:
        jobs = {v: pool.submit(_pipeline, v, config, paths[v], str(out / f"run-{v}.pt")) for v in VARIANTS}
        return {v: torch.load(job.result(), weights_only=False) for v, job in jobs.items()}


def to_markdown(document: dict[str, Any]) -> str:
    """The sanity check as Markdown."""
    cfg = document["config"]
    lines = [
        "# Full-pipeline sanity check", "",
        f"- date {document['date']}; {cfg['world']}/{cfg['shortcut_kind']} phantoms, seed {cfg['seed']}, preset "
        f"{cfg['preset']}; {document['seconds'] / 60:.1f} min wall"
        + (" (the pipelines reused from an earlier run with the same settings)" if document.get("reused") else ""),
        "- pipelines: " + "; ".join(f"{v}: GAN {r['epochs']} epochs, class consistency {r['consistency']:.3f}"
                                    for v, r in document["runs"].items()),
        f"- target: {document['target']['metric']} {document['target']['goal']}: "
        f"{document['target']['value']:.3f} ({'met' if document['target']['met'] else 'MISSED'})",
        f"- how to read it: a map passes when its similarity to a variant's map of the same image is no higher than "
        f"the floor, `{OTHER_IMAGE}` (the trained pipeline's map of one image against the next image's). SSIM of "
        "sparse maps is high whatever they show (compare each SSIM with its floor); traversal curves rise by "
        "construction, so their rank correlation is near 1 for any pipeline, and their mean abs(p - p_trained) "
        "says more.", "",
        "| compared with the trained pipeline | method | similarity | mean [95% CI] | n |", "|---|---|---|---|---|",
    ]
    for r in document["rows"]:
        low, high = r["ci95"]
        fmt = (lambda v: "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.3f}")
        lines.append(f"| {r['variant']} | {r['method']} | {r['metric']} | {fmt(r['mean'])} [{fmt(low)}, {fmt(high)}] "
                     f"| {r['n']} |")
    return "\n".join(lines) + "\n"


__all__ = ["OTHER_IMAGE", "SSIM_TARGET", "SanityConfig", "VARIANTS", "compare", "run_sanity", "to_markdown"]
