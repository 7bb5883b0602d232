"""The `raygan` command: one subcommand per user task, each a thin layer over the library.

Every subcommand parses its flags, builds a frozen config and calls one library function;
nothing here holds logic worth testing on its own. `main` wraps each command in the console
session (raygan.console: a log file, Ray's chatter kept out of the terminal unless --verbose)
and turns errors into one line on stderr (the traceback goes to the log file).
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

Command = Callable[[argparse.Namespace], int]

ENVIRONMENT_HELP = """\
environment:
  RAY_ADDRESS             join this Ray cluster (set by `ray job submit`); else a cluster `ray start`
                          left on this machine, else a new local Ray instance (each command says which)
  RAYGAN_S3_ENDPOINT_URL  S3-compatible endpoint for s3:// URIs, e.g. http://127.0.0.1:9000 (MinIO,
                          Ceph); also read: AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL
  AWS_REGION, AWS_DEFAULT_REGION, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY
                          region and credentials (the standard AWS chain: env, ~/.aws, instance roles)
  RAYGAN_SERVE_TOKEN      default bearer-token variable of `raygan serve` (see --token-env)
  MLFLOW_TRACKING_URI     also log training and tune metrics to this MLflow server or store
  RAYGAN_SHARED_PREFIXES  ":"-separated local prefixes mounted on every node (e.g. /mnt/nfs:/data); on a
                          cluster of several nodes, train, train-classifier, tune and explain-bulk refuse
                          other local paths (the other nodes cannot see them): use s3:// URIs there
  RAYGAN_WAIT_FOR_RESOURCES=1
                          wait (warn) instead of stopping when a stage asks for more CPUs/GPUs than the
                          cluster has (autoscaling clusters)
Paths: on a cluster (`ray job submit --working-dir .`) use absolute paths on shared storage or s3://
URIs; relative paths and git-ignored folders such as runs/ are not uploaded with the working dir.
"""

# Commands that run torch in this process: they take --threads (default raygan.threads.default_threads).
TORCH_COMMANDS = ("train-classifier", "train", "train-encoder", "evaluate", "tune", "explain", "demo")


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="raygan",
        description="Explain image classifiers by latent traversal of a class-conditional GAN, on Ray.",
        epilog=ENVIRONMENT_HELP, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for register in _REGISTRARS:
        register(sub)
    for name, command in sub.choices.items():
        command.epilog = ENVIRONMENT_HELP
        command.formatter_class = argparse.RawDescriptionHelpFormatter
        command.add_argument("--verbose", action="store_true",
                             help="show Ray's own log lines and full tracebacks (they always go to the log file)")
        if name in TORCH_COMMANDS:
            command.add_argument("--threads", type=int, default=None,
                                 help="torch CPU threads in this process (default: 1 on machines with <= 2 cores "
                                 "or a busy machine, else the free cores)")
    return parser


# --- data -------------------------------------------------------------------------------------


def _add_phantoms(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "phantoms",
        help="write synthetic chest X-ray phantoms (lesion masks, a planted shortcut) as input shards",
    )
    p.add_argument("--n", type=int, required=True, help="number of phantoms")
    p.add_argument("--size", type=int, required=True, help="image side in pixels")
    p.add_argument("--out", required=True, help="output prefix: local path, file:// or s3:// URI")
    p.add_argument("--seed", type=int, default=0, help="root seed; image i is the same for any --n")
    p.add_argument("--positive-fraction", type=float, default=0.5, help="P(label = 1)")
    p.add_argument(
        "--world", choices=["lesion_only", "shortcut_only", "mixed"], default="mixed",
        help="how the cues go with the label: lesion_only (lesions = label, shortcut at random), shortcut_only "
             "(shortcut 0.95 / 0.05, lesions at random), mixed (lesions = label, shortcut 0.8 / 0.2; default)",
    )
    p.add_argument("--shortcut-kind", choices=["marker", "stamp"], default="marker",
                   help="the planted shortcut: a corner marker glyph or a burned-in text stamp")
    p.add_argument("--rows-per-shard", type=int, default=1000, help="rows per Parquet shard")
    p.set_defaults(func=_run_phantoms)


def _run_phantoms(args: argparse.Namespace) -> int:
    from raygan.data.phantoms import world_config, write_phantoms

    config = world_config(
        args.world, n=args.n, size=args.size, seed=args.seed, positive_fraction=args.positive_fraction,
        shortcut_kind=args.shortcut_kind, rows_per_shard=args.rows_per_shard,
    )
    shards = write_phantoms(config, args.out)
    print(f"wrote {config.n} phantoms in {len(shards)} shard(s) under {args.out}")
    return 0


def _add_ingest(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "ingest",
        help="convert a class-per-subfolder image folder or a path,label CSV (PNG/JPEG/DICOM) into input shards",
    )
    p.add_argument("src", help="folder with one subfolder per class, or a CSV with header path,label")
    p.add_argument("--out", required=True, help="output prefix: local path, file:// or s3:// URI")
    p.add_argument("--size", type=int, default=128, help="stored image side in pixels (center crop, then resize)")
    p.add_argument("--rows-per-shard", type=int, default=1000, help="rows per Parquet shard")
    p.add_argument("--positive-class", default=None, help="class name that gets label 1 (all others get 0)")
    p.set_defaults(func=_run_ingest)


def _run_ingest(args: argparse.Namespace) -> int:
    from raygan.data.ingest import ingest

    try:
        result = ingest(
            args.src, args.out, size=args.size, rows_per_shard=args.rows_per_shard,
            positive_class=args.positive_class,
        )
    except (ValueError, FileNotFoundError, FileExistsError) as e:
        # Input mistakes (layout, missing --positive-class, existing shards): a message, not a traceback.
        print(f"raygan ingest: error: {e}", file=sys.stderr)
        return 2
    for error in result.errors:
        print(f"skipped {error.message}", file=sys.stderr)
    print(
        f"wrote {result.rows} image(s) in {len(result.shards)} shard(s) under {args.out}; "
        f"classes {result.classes}; {len(result.errors)} file(s) skipped"
    )
    return 0 if result.rows > 0 else 1


# --- models and training ----------------------------------------------------------------------


def _add_run_flags(p: argparse.ArgumentParser, *, batch: str = "images per step, per worker",
                   seed: str = "seeds weights, latents and data order", checkpoints: bool = True,
                   epochs: str = "total epochs (a resumed run continues up to this)") -> None:
    """The flags every training command shares: epochs, workers, GPU, batch size, checkpoints, seed."""
    p.add_argument("--epochs", type=int, default=None, help=epochs)
    p.add_argument("--workers", type=int, default=None, help="Ray Train workers (0 = in-process local mode)")
    p.add_argument("--gpu", action=argparse.BooleanOptionalAction, default=None,
                   help="one GPU per worker (default: the preset's)")
    p.add_argument("--batch-size", type=int, default=None, help=batch)
    if checkpoints:
        p.add_argument("--checkpoint-every", type=int, default=None,
                       help="epochs between checkpoints (the last always checkpoints)")
    p.add_argument("--seed", type=int, default=None, help=seed)


def _add_train(sub: argparse._SubParsersAction) -> None:
    from raygan.config import PRESETS

    p = sub.add_parser(
        "train",
        help="train the class-conditional GAN against a frozen classifier (Ray Train); writes a bundle; "
        "rerunning with the same --out resumes",
    )
    p.add_argument("--data", required=True, help="input shards (prefix of .parquet files); the train split is used")
    p.add_argument("--classifier", required=True, help="classifier spec directory (classifier.json + weights)")
    p.add_argument("--out", required=True,
                   help="bundle URI: local path or s3://; checkpoints/ and samples/ go under it")
    p.add_argument("--preset", choices=sorted(PRESETS), default="small",
                   help="model and recipe: paper (the authors' 128 px nets, GPU), small (64 px, CPU demo), "
                   "tiny (tests)")
    _add_run_flags(p)
    p.add_argument("--image-size", type=int, default=None,
                   help="generator side in pixels (default: the preset's); the classifier gets its own size")
    p.add_argument("--channels", type=int, choices=(1, 3), default=None,
                   help="generator channels: 1 gray or 3 RGB (default: the classifier's input channels)")
    p.add_argument("--target-class", default=None,
                   help="the class to explain, by name (classifier.json 'classes') or output index; the GAN learns "
                   "it against the rest (default: the spec's positive_index)")
    p.set_defaults(func=_run_train)


def _run_train(args: argparse.Namespace) -> int:
    from raygan import storage
    from raygan.config import preset, replace
    from raygan.models.frozen import SPEC_FILE, ClassifierSpec
    from raygan.models.generator import build_generator

    chosen = preset(args.preset)
    train = replace(chosen.train, epochs=args.epochs, workers=args.workers, use_gpu=args.gpu,
                    batch_size=args.batch_size, checkpoint_every=args.checkpoint_every, seed=args.seed)
    try:
        spec = ClassifierSpec.from_json(storage.read_json(storage.join(args.classifier, SPEC_FILE)))
        if args.target_class is not None:
            spec.class_index(args.target_class)
        # The generator makes images at its own size; its channels follow the classifier's unless told.
        gan = replace(chosen.gan, image_size=args.image_size, channels=args.channels or spec.channels)
        build_generator(gan)  # refuses a size its architecture cannot make
    except (FileNotFoundError, ValueError) as e:
        # A missing classifier, a bad classifier.json, an unknown --target-class or a bad --image-size.
        print(f"raygan train: error: {e}", file=sys.stderr)
        return 2
    if gan.channels == 1 and spec.channels == 3:
        print("note: a 1-channel generator for a 3-channel classifier: its gray images reach the classifier "
              "repeated on all three channels (use --channels 3 for colour)", file=sys.stderr)
    from raygan.train.gan_trainer import train_gan

    try:
        result = train_gan(args.data, args.classifier, args.out, gan=gan, train=train,
                           inversion=chosen.inversion, traversal=chosen.traversal, target=args.target_class)
    except FileNotFoundError as e:
        print(f"raygan train: error: {e}", file=sys.stderr)
        return 2
    names = ("d_loss", "g_adv", "g_class", "class_consistency", "images_per_s")
    m = {k: float(result.metrics.get(k, "nan")) for k in names}
    print(f"bundle written to {result.bundle}: {result.epochs} epoch(s) (this run from epoch {result.start_epoch}), "
          f"{result.seconds:.0f} s; explains class {result.target_class!r}")
    print(f"last epoch: d_loss {m['d_loss']:.4f}  g_adv {m['g_adv']:.4f}  g_class {m['g_class']:.4f}  "
          f"class consistency {m['class_consistency']:.3f}  {m['images_per_s']:.0f} images/s")
    print(f"quality gate: {result.quality.describe()}")
    return 0


def _add_train_encoder(sub: argparse._SubParsersAction) -> None:
    from raygan.config import PRESETS

    p = sub.add_parser(
        "train-encoder",
        help="train an encoder E(x) -> (z1, z2) against a bundle's frozen generator and classifier (Ray Train); "
        "explanations then start from E(x) and refine a few steps; rerunning the same recipe resumes",
    )
    p.add_argument("--bundle", required=True, help="bundle URI (from `raygan train`); encoder.pt is written into it")
    p.add_argument("--data", required=True, help="input shards (prefix of .parquet files); the train split is used")
    p.add_argument("--preset", choices=sorted(PRESETS), default=None,
                   help="encoder size and recipe (default: the preset whose generator the bundle has, else small)")
    _add_run_flags(p, batch="real images per step, per worker")
    p.add_argument("--lr", type=float, default=None, help="Adam learning rate of the encoder")
    p.add_argument("--storage-path", default=None,
                   help="Ray Train storage for the checkpoints (default <bundle>/checkpoints; shared storage on "
                   "a cluster)")
    p.set_defaults(func=_run_train_encoder)


def _encoder_preset(gan_config: object) -> str:
    """The preset whose generator the bundle has (channels aside), else "small"."""
    import dataclasses

    from raygan.config import PRESETS

    for name, chosen in PRESETS.items():
        if dataclasses.replace(chosen.gan, channels=gan_config.channels) == gan_config:  # type: ignore[attr-defined]
            return name
    return "small"


def _run_train_encoder(args: argparse.Namespace) -> int:
    from raygan.bundle import BundleError, read_meta
    from raygan.config import GanConfig, from_dict, preset, replace
    from raygan.train.encoder_trainer import train_encoder

    try:
        gan = from_dict(GanConfig, read_meta(args.bundle)["gan"])
    except BundleError as e:
        print(f"raygan train-encoder: error: {e}", file=sys.stderr)
        return 2
    chosen = preset(args.preset or _encoder_preset(gan))
    config = replace(chosen.encoder, epochs=args.epochs, workers=args.workers, use_gpu=args.gpu,
                     batch_size=args.batch_size, lr=args.lr, checkpoint_every=args.checkpoint_every, seed=args.seed)
    try:
        result = train_encoder(args.bundle, args.data, config=config, storage_path=args.storage_path)
    except (BundleError, FileNotFoundError, ValueError) as e:
        print(f"raygan train-encoder: error: {e}", file=sys.stderr)
        return 2
    m = result.metrics
    print(f"encoder written to {result.bundle}/encoder.pt (fingerprint {result.fingerprint}, preset {chosen.name}, "
          f"seed {config.seed}): {result.epochs} epoch(s) (this run from epoch {result.start_epoch}), "
          f"{result.seconds:.0f} s")
    print(f"last epoch: loss {m.get('loss', float('nan')):.4f}  latent_mse {m.get('latent_mse', float('nan')):.4f}  "
          f"real_loss {m.get('real_loss', float('nan')):.4f}")
    if "start_loss_encoder" in m:
        print(f"inversion loss at the start, {m['start_samples']} training images: E(x) "
              f"{m['start_loss_encoder']:.4f} vs from scratch {m['start_loss_scratch']:.4f} and z = 0 "
              f"{m['start_loss_zero']:.4f} (E(x) lower than both for {m['start_better_share']:.0%})")
    return 0


def _add_train_classifier(sub: argparse._SubParsersAction) -> None:
    from raygan.config import PRESETS

    p = sub.add_parser(
        "train-classifier",
        help="train a classifier to explain (Ray Train) and write it as a classifier spec; "
        "prints held-out accuracy and ROC AUC",
    )
    p.add_argument("--data", required=True,
                   help="labelled input shards; trains on the train split, scores val and test")
    p.add_argument("--out", required=True, help="classifier spec directory to write (local path or s3://)")
    p.add_argument("--arch", choices=("small_cnn", "vgg16_bn"), default=None,
                   help="network: small_cnn, or vgg16_bn (the paper's VGG16, from scratch) (default: the preset's)")
    p.add_argument("--preset", choices=sorted(PRESETS), default="small",
                   help="recipe defaults (image size, epochs, lr)")
    _add_run_flags(p, seed="seeds weights and data order", checkpoints=False, epochs="total epochs")
    p.add_argument("--image-size", type=int, default=None, help="input side in pixels (default: the preset's)")
    p.add_argument("--lr", type=float, default=None, help="AdamW learning rate")
    p.set_defaults(func=_run_train_classifier)


def _run_train_classifier(args: argparse.Namespace) -> int:
    from raygan.config import preset, replace
    from raygan.train.classifier_trainer import train_classifier

    config = replace(preset(args.preset).classifier, arch=args.arch, epochs=args.epochs, workers=args.workers,
                     use_gpu=args.gpu, batch_size=args.batch_size, image_size=args.image_size, lr=args.lr,
                     seed=args.seed)
    try:
        result = train_classifier(args.data, args.out, config=config)
    except FileNotFoundError as e:
        print(f"raygan train-classifier: error: {e}", file=sys.stderr)
        return 2
    print(f"classifier spec written to {result.spec_uri} ({config.arch}, {config.image_size} px, "
          f"{result.epochs} epoch(s))")
    print(f"held-out test: accuracy {result.test_accuracy:.4f}  ROC AUC {result.test_auc:.4f}  "
          f"({result.test_samples} images); val accuracy {result.val_accuracy:.4f}")
    return 0


def _add_evaluate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "evaluate",
        help="evaluate a bundle: generator class consistency (the paper's protocol) and, with --data, the "
        "explanation metrics (flip rate, monotone share, faithfulness, localisation on phantoms, ...); "
        "prints a table, writes JSON",
    )
    p.add_argument("--bundle", required=True, help="bundle URI (from `raygan train`)")
    p.add_argument("--data", default=None, help="input shards to explain and score (phantoms add localisation metrics)")
    p.add_argument("--limit", type=int, default=64, help="images explained from --data (the first of the split)")
    p.add_argument("--split", choices=("train", "val", "test", "all"), default="test",
                   help="hash split of image_id to evaluate on (the GAN trains on train)")
    p.add_argument("--sanity-images", type=int, default=8,
                   help="images re-explained with a randomised classifier for the sanity check (0: skip)")
    p.add_argument("--out", default=None,
                   help="where evaluation.json and evaluation.md go: a directory/prefix or a .json path "
                   "(default: the bundle)")
    p.add_argument("--n-z1", type=int, default=1000,
                   help="structure latents per repeat (paper: 1000), 1 negative + 3 positives each")
    p.add_argument("--repeats", type=int, default=1,
                   help="repeats of the whole draw (paper: 1000); std is over repeats")
    p.add_argument("--seed", type=int, default=0, help="seeds the latents")
    p.add_argument("--device", default=None, help="torch device, e.g. cuda or cpu (default: cuda when available)")
    p.add_argument("--no-encoder", action="store_true",
                   help="invert from scratch even when the bundle has an encoder")
    p.set_defaults(func=_run_evaluate)


def _evaluation_config(args: argparse.Namespace):  # -> raygan.evaluate.EvaluationConfig
    """The EvaluationConfig of `raygan evaluate`'s flags (extend here when adding flags)."""
    from raygan.evaluate import EvaluationConfig

    return EvaluationConfig(n_z1=args.n_z1, repeats=args.repeats, seed=args.seed, limit=args.limit,
                            split=None if args.split == "all" else args.split, sanity_images=args.sanity_images,
                            no_encoder=getattr(args, "no_encoder", False))


def _run_evaluate(args: argparse.Namespace) -> int:
    from raygan.bundle import BundleError, load_bundle
    from raygan.evaluate import evaluate_bundle, to_markdown, write_report

    try:
        bundle = load_bundle(args.bundle)
    except BundleError as e:
        print(f"raygan evaluate: error: {e}", file=sys.stderr)
        return 2
    # Generator metrics always; explanation metrics when a --data flag is registered and given.
    report = evaluate_bundle(bundle, data_uri=getattr(args, "data", None), config=_evaluation_config(args),
                             device=args.device)
    print(to_markdown(report))
    written = write_report(report, args.out or args.bundle)
    print(f"written: {', '.join(written)}")
    return 0


# --- explanations -----------------------------------------------------------------------------


def _add_explain(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "explain",
        help="explain images with a bundle: inversion, counterfactual, traversal and maps, to Parquet + PNGs",
    )
    p.add_argument("input", help="input shards (prefix or .parquet file), a folder of PNG/JPEG files, or one image "
                   "file (file names without suffix become image_ids)")
    p.add_argument("--bundle", required=True, help="bundle URI (from `raygan train`); its settings are the defaults")
    p.add_argument("--out", required=True, help="output prefix: results/ and artifacts/ go under it; reruns skip done rows")
    p.add_argument("--steps", type=int, default=None, help="inversion steps (default: the bundle's)")
    p.add_argument("--lr", type=float, default=None, help="inversion Adam learning rate")
    p.add_argument("--mse-weight", type=float, default=None, help="a: weight of the MSE term of Eq. 2")
    p.add_argument("--bce-weight", type=float, default=None, help="b: weight of the BCE term of Eq. 2")
    p.add_argument("--rate", type=float, default=None, help="traversal step lambda (alpha = n * lambda)")
    p.add_argument("--frames", type=int, default=None, help="traversal steps N after alpha = 0")
    p.add_argument("--encoder-steps", type=int, default=None,
                   help="K: refinement steps from the encoder's E(x) when the bundle has one (0: encoder only)")
    p.add_argument("--no-encoder", action="store_true",
                   help="invert from scratch even when the bundle has an encoder")
    p.add_argument("--batch-size", type=int, default=16, help="images inverted together (results do not depend on it)")
    p.add_argument("--device", default=None, help="torch device, e.g. cuda or cpu (default: cuda when available)")
    p.add_argument("--no-attributions", action="store_true", help="skip Grad-CAM and Integrated Gradients")
    p.add_argument("--retry-errors", action="store_true",
                   help="explain rows that an earlier run wrote as errors again (their error rows are replaced)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(func=_run_explain)


def _run_explain(args: argparse.Namespace) -> int:
    import dataclasses
    import json

    from raygan.bundle import BundleError, load_bundle
    from raygan.config import replace
    from raygan.explain.explainer import Explainer
    from raygan.explain.results import explain_shards

    try:
        bundle = load_bundle(args.bundle)
    except BundleError as e:
        print(f"raygan explain: error: {e}", file=sys.stderr)
        return 2
    inversion = replace(bundle.inversion, steps=args.steps, lr=args.lr, mse_weight=args.mse_weight,
                        bce_weight=args.bce_weight, encoder_steps=args.encoder_steps)
    traversal = replace(bundle.traversal, rate=args.rate, frames=args.frames)
    explainer = Explainer.from_bundle(bundle, inversion=inversion, traversal=traversal, device=args.device,
                                      attributions=not args.no_attributions, no_encoder=args.no_encoder)
    summary = explain_shards(args.input, args.out, explainer=explainer, batch_size=args.batch_size,
                             retry_errors=args.retry_errors, progress=not args.no_progress)
    for line in summary.failure_lines():
        print(line, file=sys.stderr)
    print(summary.describe())
    print(f"explained class {bundle.target_class!r}; quality gate: {bundle.quality.describe()}")
    print(_inversion_start(explainer))
    if explainer.warning:
        print(f"warning: {explainer.warning}", file=sys.stderr)
    for name, why in sorted(explainer.maps_skipped.items()):
        print(f"note: {name} skipped: {why}", file=sys.stderr)
    print(json.dumps(dataclasses.asdict(summary)))
    if summary.error and not summary.ok:
        print("raygan explain: no row was explained; fix the inputs and rerun with --retry-errors", file=sys.stderr)
        return 1
    return 0


def _inversion_start(explainer) -> str:  # explainer: raygan.explain.explainer.Explainer
    """One line saying where the inversion started."""
    if explainer.encoder is not None:
        return f"inversion: from the bundle's encoder, at most {explainer.inversion.encoder_steps} refinement steps"
    return f"inversion: from scratch, at most {explainer.inversion.steps} steps"


def _add_tune(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "tune",
        help="Ray Tune sweep of the inversion weights, learning rate, steps and traversal rate; "
        "writes the winner into the bundle's default settings",
    )
    p.add_argument("--bundle", required=True, help="bundle URI (from `raygan train`); its settings are updated")
    p.add_argument("--data", required=True, help="input shards: search images from the val split, holdout from test")
    p.add_argument("--samples", type=int, default=20, help="number of trials")
    p.add_argument("--gpu-per-trial", type=float, default=0.0, help="GPU share per trial, e.g. 0.25 = four trials per GPU")
    p.add_argument("--cpu-per-trial", type=float, default=1.0, help="logical CPUs per trial")
    p.add_argument("--out", default=None, help="results and Tune storage (local path or URI); default <bundle>/tune")
    p.add_argument("--images", type=int, default=32, help="search sample size (validation split)")
    p.add_argument("--holdout", type=int, default=64, help="held-out sample size (test split) for re-scoring")
    p.add_argument("--search", choices=("optuna", "random"), default="optuna", help="TPE via Optuna, or random")
    p.add_argument("--max-steps", type=int, default=None, help="largest inversion step budget searched (default: the bundle's)")
    p.add_argument("--authors-steps", type=int, default=None,
                   help="steps of the authors' baseline row (default 5000; lower for quick runs, noted in the table)")
    p.add_argument("--report-every", type=int, default=None, help="inversion steps between ASHA reports (default max/10)")
    p.add_argument("--grace-steps", type=int, default=None, help="ASHA grace period in steps (default max/4)")
    p.add_argument("--concurrency", type=int, default=None, help="trials at once (default: resources allow; optuna: 4)")
    p.add_argument("--seed", type=int, default=0, help="seeds the image samples and the search")
    p.add_argument("--no-update", action="store_true", help="only report: leave the bundle's settings unchanged")
    p.set_defaults(func=_run_tune)


def _run_tune(args: argparse.Namespace) -> int:
    from raygan.config import replace
    from raygan.tune.sweep import SweepConfig, run_sweep

    config = replace(
        SweepConfig(bundle=args.bundle, data=args.data),
        out=args.out, samples=args.samples, images=args.images, holdout=args.holdout, search=args.search,
        max_steps=args.max_steps, authors_steps=args.authors_steps, gpu_per_trial=args.gpu_per_trial,
        cpu_per_trial=args.cpu_per_trial, report_every=args.report_every, grace_steps=args.grace_steps,
        max_concurrent=args.concurrency, seed=args.seed, update_bundle=not args.no_update,
    )
    result = run_sweep(config)
    print(f"{result.trials} trials ({result.search}), {result.stopped_early} stopped early by ASHA; "
          f"results in {result.out}")
    print(f"winner: {result.inversion}\n        {result.traversal}")
    for row in result.rows:
        print(f"  {row.label:8s} {row.sample:8s} objective {row.score.objective:.4f} ({row.score.images} images)")
    if config.update_bundle:
        print(f"bundle settings updated; bundle_id now {result.bundle_fingerprint}")
    return 0


def _add_report(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "report",
        help="one self-contained HTML page summarising an explanation-results dataset (from `raygan explain`)",
    )
    p.add_argument("--results", required=True, help="the `raygan explain --out` prefix, or its results/ prefix")
    p.add_argument("--out", required=True, help="an .html file, or a directory/prefix (report.html inside it)")
    p.add_argument("--bundle-id", default=None, help="report the rows of this bundle_id (needed when results mix bundles)")
    p.add_argument("--artifact-base", default=None,
                   help="prefix for figure links, replacing the output root (e.g. an https URL of the bucket); "
                   "default: relative links when --out is the output root, else the artifact URIs")
    p.add_argument("--title", default=None, help="page title")
    p.add_argument("--bundle", default=None,
                   help="the bundle that explained the rows: with --input, adds the shortcut audit (the classifier's "
                        "reliance on each *_mask region and the border band, measured by intervention, beside each "
                        "map's verdict)")
    p.add_argument("--input", default=None, help="the explained input shards (images and any *_mask columns)")
    p.set_defaults(func=_run_report)


def _run_report(args: argparse.Namespace) -> int:
    from raygan.render.dataset import ReportError, write_dataset_report

    try:
        written = write_dataset_report(args.results, args.out, artifact_base=args.artifact_base,
                                       bundle_id=args.bundle_id, title=args.title, bundle_uri=args.bundle,
                                       input_uri=args.input)
    except (ReportError, FileNotFoundError) as e:
        print(f"raygan report: error: {e}", file=sys.stderr)
        return 2
    print(f"report written to {written}")
    return 0


# --- services ---------------------------------------------------------------------------------


def _add_explain_bulk(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "explain-bulk",
        help="explain Parquet shards on a Ray cluster with Ray Data (actor pool, GPUs); reruns resume",
    )
    p.add_argument("--input", required=True, help="input shards: a prefix of .parquet files (local path or s3://)")
    p.add_argument("--bundle", required=True, help="bundle URI (from `raygan train`); its settings are used")
    p.add_argument("--out", required=True, help="output prefix: results/ and artifacts/ go under it; reruns skip done rows")
    p.add_argument("--batch-size", type=int, default=16, help="images per Explainer call")
    p.add_argument("--rows-per-file", type=int, default=2048,
                   help="rows per work unit and its one results file (a crash loses at most the units in progress)")
    p.add_argument("--artifacts", choices=("none", "flagged", "all"), default="flagged",
                   help="PNG artifacts for no row, for the rows worth a look (not monotone, fallback direction, or a "
                        "positive call whose counterfactual did not flip; see docs/design.md), or for every ok row")
    p.add_argument("--actors", type=int, default=1, help="Explainer actors (each holds one copy of the models)")
    p.add_argument("--min-actors", type=int, default=None, help="autoscaling floor of the actor pool (default --actors)")
    p.add_argument("--cpus-per-actor", type=float, default=1.0, help="CPUs per actor (also its torch threads)")
    p.add_argument("--gpu", action="store_true", help="one GPU per actor")
    p.add_argument("--no-attributions", action="store_true", help="skip Grad-CAM and Integrated Gradients")
    p.add_argument("--no-encoder", action="store_true",
                   help="invert from scratch even when the bundle has an encoder")
    p.add_argument("--no-progress", action="store_true", help="hide Ray Data's progress bars")
    p.set_defaults(func=_run_explain_bulk)


def _run_explain_bulk(args: argparse.Namespace) -> int:
    import dataclasses
    import json
    import math
    import os

    from raygan.bulk import BulkConfig, explain_bulk
    from raygan.bundle import BundleError

    try:
        config = BulkConfig(
            batch_size=args.batch_size, rows_per_file=args.rows_per_file, artifacts=args.artifacts,
            min_actors=args.min_actors or args.actors, max_actors=args.actors, num_gpus=1.0 if args.gpu else 0.0,
            num_cpus=args.cpus_per_actor, attributions=not args.no_attributions, progress=not args.no_progress,
            no_encoder=args.no_encoder,
        )
    except ValueError as e:
        print(f"raygan explain-bulk: error: {e}", file=sys.stderr)
        return 2
    from raygan.cluster import connect, require, require_shared

    # Joins the cluster of a submitted job (or RAY_ADDRESS, or `ray start`), else starts a local one
    # with room for the actors and Ray Data's read tasks beside them.
    connect(local_cpus=max(os.cpu_count() or 1, math.ceil(config.min_actors * config.num_cpus) + 1))
    # Ray Data's tasks on any node read the shards and write results; every actor loads the bundle.
    require_shared({"--input": args.input, "--bundle": args.bundle, "--out": args.out})
    require(cpus=config.min_actors * config.num_cpus, gpus=config.min_actors * config.num_gpus,
            what=f"explain-bulk with {config.min_actors} actor(s)")
    try:
        summary = explain_bulk(args.input, args.bundle, args.out, config=config)
    except (BundleError, FileNotFoundError, ValueError) as e:  # ValueError: input schema, or results that conflict
        print(f"raygan explain-bulk: error: {e}", file=sys.stderr)
        return 2
    print(summary.describe())
    print(json.dumps(dataclasses.asdict(summary)))
    if summary.error and not summary.ok:
        print(f"raygan explain-bulk: no row was explained; the error rows are in {summary.results_uri}",
              file=sys.stderr)
        return 1
    return 0


def _add_serve(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "serve",
        help="run the HTTP explanation service (Ray Serve) with its web viewer, in the foreground "
        "(on the cluster at RAY_ADDRESS, else on a new local Ray)",
    )
    p.add_argument("--bundle", required=True, help="bundle URI (from `raygan train`)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0 exposes it to the network)")
    p.add_argument("--port", type=int, default=8000, help="HTTP port")
    p.add_argument("--gpus", type=float, default=0.0, help="GPUs per Explainer replica")
    p.add_argument("--cpus", type=float, default=1.0, help="CPUs per Explainer replica (also its torch threads)")
    p.add_argument("--replicas", type=int, default=1, help="Explainer replicas (autoscaling ceiling)")
    p.add_argument("--max-batch-size", type=int, default=8, help="requests inverted together per replica")
    p.add_argument("--allowed-prefix", action="append", default=[], metavar="URI",
                   help="shard jobs may read/write only under this prefix (repeatable); none: /v1/shards refused")
    p.add_argument("--token-env", default=None, metavar="NAME",
                   help="require 'Authorization: Bearer TOKEN' on /v1/* (all but /v1/health), TOKEN being the "
                   "value of this environment variable on every node (default: RAYGAN_SERVE_TOKEN when it is set "
                   "here); never pass the token itself on the command line, where `ps` shows it")
    p.add_argument("--token-file", default=None, metavar="PATH",
                   help="or read the token from this file (the same absolute path on every node)")
    p.add_argument("--insecure", action="store_true",
                   help="allow a non-loopback --host without a token (anyone who reaches the port can use the service)")
    p.add_argument("--pictures-prefix", default=None, help="store pictures here and answer URIs instead of base64")
    p.add_argument("--jobs-uri", default=None, metavar="URI",
                   help="keep shard-job records here (folder or s3://): a restarted service still answers for its "
                   "jobs and resumes those it had not finished (default: in memory, lost with the service)")
    p.add_argument("--timeout", type=float, default=300.0, help="seconds before an explanation answers 504")
    p.add_argument("--no-encoder", action="store_true",
                   help="invert from scratch (the bundle's full optimisation) even when the bundle has an encoder")
    p.set_defaults(func=_run_serve)


def _is_loopback(host: str) -> bool:
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name: it may resolve to anything
        return False


def _run_serve(args: argparse.Namespace) -> int:
    import math
    import os
    import time

    from ray import serve

    from raygan.cluster import connect, require
    from raygan.service.app import build_app
    from raygan.service.config import ServiceConfig

    if args.token_env and args.token_file:
        print("raygan serve: error: give --token-env or --token-file, not both", file=sys.stderr)
        return 2
    token_env = args.token_env or (None if args.token_file or not os.environ.get("RAYGAN_SERVE_TOKEN")
                                   else "RAYGAN_SERVE_TOKEN")
    token_file = os.path.abspath(args.token_file) if args.token_file else None
    if not (token_env or token_file) and not _is_loopback(args.host) and not args.insecure:
        print(f"raygan serve: error: --host {args.host} exposes the service to the network without a token. "
              "Put a token in an environment variable (RAYGAN_SERVE_TOKEN, or name one with --token-env) or a "
              "file (--token-file), or pass --insecure to serve it open.", file=sys.stderr)
        return 2
    # Only references travel in the settings (the dashboard shows them); each replica reads the token.
    settings = {
        "bundle_uri": args.bundle, "allowed_prefixes": args.allowed_prefix, "num_gpus": args.gpus,
        "num_cpus": args.cpus, "max_replicas": args.replicas, "max_batch_size": args.max_batch_size,
        "token_env": token_env, "token_file": token_file,
        "pictures_prefix": args.pictures_prefix, "request_timeout_s": args.timeout, "jobs_uri": args.jobs_uri,
        "no_encoder": args.no_encoder,
    }
    config = ServiceConfig.from_args(settings)
    try:
        config.resolve_token()  # the same check the replicas make, here first: a clear message before Ray starts
    except ValueError as e:
        print(f"raygan serve: error: {e}", file=sys.stderr)
        return 2
    app = build_app(settings)
    # A fresh local Ray gets at least the logical CPUs the replicas reserve (small machines fit the app).
    # Replicas started by it inherit this environment (the token variable included); on an existing
    # cluster the variable or file must be on its nodes. The replicas import the installed raygan package.
    # A service on loopback keeps a new local Ray node on loopback too (Ray may pick an external address).
    connect(local_cpus=max(os.cpu_count() or 1, math.ceil(args.cpus * args.replicas + 1)),
            node_ip_address="127.0.0.1" if args.host in ("127.0.0.1", "localhost") else None)
    require(cpus=config.num_cpus * config.min_replicas + 0.5, gpus=config.num_gpus * config.min_replicas,
            what="the service's replicas")
    stop = _StopOnSignal()
    try:
        serve.start(http_options={"host": args.host, "port": args.port, "request_timeout_s": args.timeout + 30})
        serve.run(app, name="raygan", route_prefix="/", blocking=False)
        if not stop.requested:
            auth = "bearer token required on /v1/*" if config.requires_token else "open (no token)"
            print(f"raygan service: viewer http://{args.host}:{args.port}/ , API docs "
                  f"http://{args.host}:{args.port}/docs; {auth} (Ctrl-C stops it)", flush=True)
        while not stop.requested:  # a flag, not an Event: a signal handler must not take a lock
            time.sleep(0.5)
        print("stopping the service", file=sys.stderr, flush=True)
    finally:
        serve.shutdown()
        stop.restore()
    return 0


class _StopOnSignal:
    """Ctrl-C (SIGINT) or SIGTERM asks the service to stop: the first sets `requested` (never an exception raised
    inside Ray's start-up or shutdown calls, where one can be lost); a second one interrupts for real.
    SIGUSR1 writes every thread's stack to stderr (for a service that seems stuck)."""

    def __init__(self) -> None:
        import faulthandler
        import signal

        self.requested = False
        stops = (signal.SIGINT, signal.SIGTERM)
        # Installed after Ray connected, and unblocked: a parent that started us with them blocked (Ray's own
        # worker processes do) would otherwise leave a service that ignores Ctrl-C.
        self._previous = {sig: signal.signal(sig, self._handle) for sig in stops}
        self._blocked = signal.pthread_sigmask(signal.SIG_UNBLOCK, stops) & set(stops)
        faulthandler.register(signal.SIGUSR1, all_threads=True)

    def _handle(self, signum: int, frame: object) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def restore(self) -> None:
        import faulthandler
        import signal

        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        if self._blocked:
            signal.pthread_sigmask(signal.SIG_BLOCK, self._blocked)
        faulthandler.unregister(signal.SIGUSR1)


# --- the demo ---------------------------------------------------------------------------------


def _add_demo(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="the whole pipeline on embedded phantoms: data -> classifier -> GAN -> report",
                       description="Phantoms -> classifier -> GAN (Ray Train) -> class consistency and explanation "
                                   "metrics -> <out>/report.html. Stages whose outputs exist are skipped.")
    p.add_argument("--out", default=None, help="output directory (default: runs/demo)")
    p.add_argument("--preset", choices=["small", "tiny", "paper"], default=None,
                   help="model preset (default small: 64 px, minutes on 2 cores; tiny: 32 px smoke run)")
    p.add_argument("--data", default=None, help="input shards to use instead of generated phantoms")
    p.add_argument("--gan-epochs", type=int, default=None, help="GAN training epochs")
    p.add_argument("--classifier-epochs", type=int, default=None, help="classifier training epochs")
    p.add_argument("--images", type=int, default=None, help="test images explained in the report")
    p.add_argument("--phantoms", type=int, default=None, help="phantoms generated when no --data is given")
    p.set_defaults(func=_run_demo)


def _run_demo(args: argparse.Namespace) -> int:
    from raygan.demo import demo_config, run_demo, summary_json

    config = demo_config(out=args.out, preset=args.preset, data=args.data, gan_epochs=args.gan_epochs,
                         classifier_epochs=args.classifier_epochs, explain_images=args.images,
                         phantoms=args.phantoms)
    print(summary_json(run_demo(config)))
    return 0


def _add_study(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "study", help="an end-to-end results run on labelled shards without Ray: classifier, GAN, evaluation, figures",
        description="Train the preset's classifier and GAN in-process on the training split of --data, evaluate "
                    "raygan's shipped inversion and the authors' recipe on the same test images, and write "
                    "results.json, results.md and Figure-2 pictures under --out.")
    p.add_argument("--data", required=True, help="labelled input shards (local path, file:// or s3://)")
    p.add_argument("--out", required=True, help="output directory or prefix")
    p.add_argument("--preset", choices=["paper", "small", "tiny"], default="small", help="model preset")
    p.add_argument("--device", default=None, help="torch device (default: cuda when available)")
    p.add_argument("--classifier-epochs", type=int, default=None, help="classifier epochs (default: the preset's)")
    p.add_argument("--gan-epochs", type=int, default=None, help="GAN epochs (default: the preset's)")
    p.add_argument("--classifier-cap", type=float, default=None,
                   help="seconds: classifier training stops after the epoch that crosses this")
    p.add_argument("--gan-cap", type=float, default=None,
                   help="seconds: GAN training stops after the epoch that crosses this")
    p.add_argument("--authors-cap", type=float, default=None,
                   help="seconds for the authors' recipe: fewer test images when a timed probe says all would not fit")
    p.add_argument("--images", type=int, default=None, help="test images explained by both recipes (default 64)")
    p.add_argument("--authors-steps", type=int, default=None, help="the authors' inversion steps (default 5000)")
    p.add_argument("--consistency-z1", type=int, default=None, help="class consistency: z1 per repeat (default 1000)")
    p.add_argument("--consistency-repeats", type=int, default=None, help="class consistency: repeats (default 10)")
    p.add_argument("--sanity-images", type=int, default=None,
                   help="images in the randomisation sanity check (default 8)")
    p.add_argument("--eval-batch", type=int, default=None, help="images per explainer call (default 64)")
    p.add_argument("--figures", type=int, default=None, help="Figure-2 pictures, half positives (default 4)")
    p.add_argument("--seed", type=int, default=None, help="seeds weights, data order and latents (default 0)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                   help="torch.compile the GAN step's networks on CUDA (default: the preset's)")
    p.add_argument("--encoder-epochs", type=int, default=None,
                   help="also train the encoder this many epochs, attach it to the bundle and compare explanations "
                   "from E(x) with the shipped inversion on the same test images (default 0: no encoder stage)")
    p.add_argument("--encoder-cap", type=float, default=None,
                   help="seconds: encoder training stops after the epoch that crosses this")
    p.set_defaults(func=_run_study)


def _run_study(args: argparse.Namespace) -> int:
    from raygan.config import replace
    from raygan.study import StudyConfig, run_study

    config = replace(
        StudyConfig(data=args.data, out=args.out, preset=args.preset), device=args.device,
        classifier_epochs=args.classifier_epochs, gan_epochs=args.gan_epochs, classifier_cap_s=args.classifier_cap,
        gan_cap_s=args.gan_cap, authors_cap_s=args.authors_cap, explain_images=args.images,
        authors_steps=args.authors_steps, consistency_z1=args.consistency_z1,
        consistency_repeats=args.consistency_repeats, sanity_images=args.sanity_images, eval_batch=args.eval_batch,
        figures=args.figures, seed=args.seed, threads=args.threads, compile=args.compile,
        encoder_epochs=args.encoder_epochs, encoder_cap_s=args.encoder_cap,
    )
    result = run_study(config)
    print(f"classifier test accuracy {result.classifier_test_accuracy:.3f}, class consistency "
          f"{result.class_consistency:.4f} (paper: 0.9115); {result.results_uri}")
    return 0


def _add_fidelity(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "fidelity", help="the ground-truth fidelity benchmark on phantom worlds (no Ray): do the maps find what the "
                         "classifier relies on?",
        description="Per cell (world x shortcut kind x seed): train the classifier and an independent judge, measure "
                    "their reliance on each cue by intervention (twins), train the GAN, explain the test phantoms "
                    "(and again with the counterfactual term off), score raygan's maps, Grad-CAM and IG against the "
                    "ground truth. Writes fidelity.json and fidelity.md (docs/fidelity.md explains them).")
    p.add_argument("--quick", action="store_true",
                   help="the development run: seed 0, the three marker cells (writes fidelity-quick.*)")
    p.add_argument("--sanity", action="store_true",
                   help="the full-pipeline sanity check instead: GANs retrained against a randomised and a "
                        "label-permuted classifier (writes fidelity-sanity.*)")
    p.add_argument("--out", default=None, help="cell results and logs (default runs/fidelity[-quick|-sanity])")
    p.add_argument("--docs", default="docs", help="where the summary documents go (default docs)")
    p.add_argument("--preset", choices=["paper", "small", "tiny"], default="small", help="model preset")
    p.add_argument("--seeds", default=None, help="comma-separated seeds (default 1,2,3; --quick: 0)")
    p.add_argument("--workers", type=int, default=None,
                   help="cells at once, one torch thread each (default 2; --quick: 3, its three cells at once)")
    p.add_argument("--phantoms", type=int, default=None, help="phantoms per cell (default 2000)")
    p.add_argument("--explain", type=int, default=None, help="test phantoms explained per cell")
    p.add_argument("--gan-epochs", type=int, default=None, help="GAN epochs (default: the benchmark's)")
    p.add_argument("--classifier-epochs", type=int, default=None, help="classifier epochs (default 8)")
    p.set_defaults(func=_run_fidelity)


def _run_fidelity(args: argparse.Namespace) -> int:
    from raygan.config import replace

    if args.sanity:
        from raygan.fidelity.sanity import SanityConfig, run_sanity

        config = replace(SanityConfig(out=args.out or "runs/fidelity-sanity", docs=args.docs, preset=args.preset),
                         phantoms=args.phantoms, explain=args.explain, gan_epochs=args.gan_epochs,
                         classifier_epochs=args.classifier_epochs, workers=args.workers,
                         seed=int(args.seeds) if args.seeds else None)
        run_sanity(config)
        return 0
    from raygan.fidelity.benchmark import DEV_CELLS, DEV_SEED, BenchmarkConfig, run_benchmark

    seeds = tuple(int(s) for s in args.seeds.split(",")) if args.seeds else ((DEV_SEED,) if args.quick else None)
    config = replace(
        BenchmarkConfig(out=args.out or ("runs/fidelity-quick" if args.quick else "runs/fidelity"), docs=args.docs,
                        preset=args.preset, quick=args.quick, cells=DEV_CELLS if args.quick else BenchmarkConfig.cells),
        seeds=seeds, workers=args.workers or (3 if args.quick else None), phantoms=args.phantoms, explain=args.explain, gan_epochs=args.gan_epochs,
        classifier_epochs=args.classifier_epochs,
    )
    document = run_benchmark(config)
    missed = [t for t in document["targets"] if t["met"] is False]
    print(f"{len(document['targets']) - len(missed)} of {len(document['targets'])} targets met; see "
          f"{config.docs}/{'fidelity-quick' if args.quick else 'fidelity'}.md")
    return 0


_REGISTRARS: list[Callable[[argparse._SubParsersAction], None]] = [_add_phantoms, _add_ingest, _add_train_classifier, _add_train, _add_train_encoder, _add_evaluate, _add_tune, _add_explain, _add_report, _add_explain_bulk, _add_serve, _add_demo, _add_study, _add_fidelity]


def _log_file(args: argparse.Namespace) -> Path:
    """Where this command's full log goes: `<out>/logs/` for a local --out (a file's folder), else a temp folder."""
    from raygan import storage

    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%d-%H%M%S")
    out = getattr(args, "out", None) or ("runs/demo" if args.command == "demo" else None)
    if out and not storage.is_remote(out):
        folder = Path(storage.local_path(out))  # no pyarrow needed: a core install still gets its log
        if folder.suffix.lower() in (".html", ".json", ".md"):
            folder = folder.parent
        return folder / "logs" / f"{args.command}-{stamp}.log"
    return Path(tempfile.gettempdir()) / "raygan-logs" / f"{args.command}-{stamp}.log"


def _user_error(error: BaseException) -> bool:
    """Mistakes in the input or the environment (one line is the whole story), as opposed to bugs."""
    from raygan.cluster import ClusterTooSmall, LocalPathOnCluster

    expected: tuple[type[BaseException], ...] = (FileNotFoundError, FileExistsError, NotADirectoryError,
                                                 IsADirectoryError, PermissionError, ClusterTooSmall,
                                                 LocalPathOnCluster)
    for module, name in (("raygan.bundle", "BundleError"), ("raygan.render.dataset", "ReportError"),
                         ("raygan.data.codec", "ImageDecodeError")):
        if module in sys.modules:
            expected += (getattr(sys.modules[module], name),)
    return isinstance(error, expected)


# The extra each command needs beyond the core (pyproject.toml [project.optional-dependencies]).
COMMAND_EXTRAS = {
    "phantoms": "data", "ingest": "data", "train-classifier": "ray", "train": "ray", "train-encoder": "ray",
    "evaluate": "data",
    "tune": "tune", "explain": "data", "report": "data", "explain-bulk": "ray", "serve": "serve", "demo": "ray",
    "study": "data", "fidelity": "data",
}


def _missing_extra(error: BaseException, command: str) -> str | None:
    """The extra that brings the module whose absence raised `error`; None for anything else
    (a module that is none of raygan's optional dependencies is a bug, reported as one)."""
    from raygan.extras import MissingExtra, extra_for

    if isinstance(error, MissingExtra):
        return error.extra
    if isinstance(error, ModuleNotFoundError):
        return extra_for(error.name or "", default=COMMAND_EXTRAS.get(command))
    return None


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `raygan` console script."""
    import traceback

    from raygan import console

    args = _build_parser().parse_args(argv)
    log = _log_file(args)
    missing = None  # the extra whose missing module stopped the command
    with console.session(log, verbose=args.verbose):
        try:
            if args.command in TORCH_COMMANDS:
                from raygan.threads import set_threads

                set_threads(args.threads)
            code = int(args.func(args))
        except KeyboardInterrupt:
            print(f"\nraygan {args.command}: interrupted", file=sys.stderr)
            code = 130
        except Exception as e:
            missing = _missing_extra(e, args.command)
            if args.verbose:
                raise
            traceback.print_exc(file=console.log_file_stream())
            message = " ".join(str(e).split()) or type(e).__name__
            if missing is not None:
                # An optional dependency of this command is not installed: one line naming the extra.
                print(f"raygan {args.command}: needs raygan[{missing}] (module {e.name!r} is not installed): "
                      f"pip install 'raygan[{missing}]'", file=sys.stderr)
                code = 2
            elif _user_error(e):
                print(f"raygan {args.command}: error: {message}", file=sys.stderr)
                code = 2
            else:
                print(f"raygan {args.command}: failed: {type(e).__name__}: {message[:500]}", file=sys.stderr)
                code = 1
        if (code not in (0, 130) and missing is None) or console.ray_used():
            print(f"raygan: full log in {log}", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
