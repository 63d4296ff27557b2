"""``lesionlab transfer-report``: one model on several datasets, the shift table in one HTML report."""

from __future__ import annotations

import argparse

from lesionlab.commands.common import add_data_root, add_out


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("transfer-report", help="one model on several datasets: the shift table in one HTML report",
                       description=(
                           "Score RUN on each dataset with its own crop and size: balanced accuracy, macro AUC, "
                           "calibration error, melanoma AUC and priority-1 sensitivity/specificity at the model's "
                           "stored triage operating point (95 % CIs, lesions resampled) and the OOD-flag rate when "
                           "the model carries an OOD detector. Diagnoses outside the model's classes are reported, "
                           "not dropped; images, lesions or patients the model trained on are refused.\n\n"
                           "No labels yet? `lesionlab shift MODEL FOLDER` compares a clinic's unlabelled images with "
                           "the model's test data (class mix, OOD rate, MMD test)."),
                       epilog="example:\n  lesionlab transfer-report runs/default-XXXX --datasets test ph2 isic2020 "
                       "--data-root ../shared/data")
    p.add_argument("run", help="run directory or ensemble folder")
    p.add_argument("--datasets", nargs="+", required=True, metavar="NAME",
                   help="dataset names (ph2, isic2018, isic2020, pad_ufes_20, derm7pt, ham10000, ...); 'test' is the "
                   "run's own held-out test split")
    add_data_root(p, "data root of the sets (default: $LESIONLAB_DATA, then the cache)")
    p.add_argument("--option", action="append", default=[], metavar="NAME:KEY=VALUE",
                   help="dataset option, e.g. derm7pt:image=clinic or isic2018:parts=test (repeatable)")
    p.add_argument("--exclude-seen", action="store_true", help="drop seen images instead of refusing")
    p.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples of lesions (default 1000)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-ood", action="store_true", help="skip the OOD detector even when the model has one")
    add_out(p, "output folder (default: RUN/transfer/<time>)")
    p.set_defaults(func=cmd_transfer_report)


def _dataset_options(items: list[str]) -> dict[str, dict[str, str]]:
    from lesionlab.config import ConfigError

    out: dict[str, dict[str, str]] = {}
    for item in items:
        name, sep, rest = item.partition(":")
        if not sep or "=" not in rest:
            raise ConfigError(f"--option {item!r} must look like DATASET:KEY=VALUE (e.g. derm7pt:image=clinic)")
        key, value = rest.split("=", 1)
        out.setdefault(name, {})[key] = value
    return out


def predictor_ood_flagger(run: str):
    """Per-image OOD flags from the predictor, when the model carries an OOD detector; else ``None``.

    Read defensively: a prediction without an ``ood`` field (or with ``None``) means no detector; an image the
    predictor rejects as not assessable counts as flagged.
    """
    import functools

    import numpy as np

    from lesionlab.serving.predictor import Predictor

    load = functools.cache(lambda: Predictor.load(run))  # loaded when first asked, after the sets were checked

    def flags(paths):
        if not paths:
            return None
        predictor = load()
        probe, _ = predictor.predict_files(paths[:1])
        if not probe or getattr(probe[0], "ood", None) is None:
            return None
        results, errors = predictor.predict_files(paths)
        by_path = {r.source: getattr(r, "ood", None) for r in results}
        rejected = {e.split(": ", 1)[0] for e in errors}
        return np.array([1.0 if p in rejected else np.nan if by_path.get(p) is None else float(bool(by_path[p]))
                         for p in paths])

    return flags


def cmd_transfer_report(args: argparse.Namespace) -> int:
    from lesionlab.builtin.registry import resolve_model_ref
    from lesionlab.config import ConfigError, DataConfig
    from lesionlab.data.datasets import load_dataset

    if args.bootstrap < 0:
        raise ConfigError("--bootstrap must be 0 (no intervals) or more")
    resolve_model_ref(args.run)
    options = _dataset_options(args.option)
    for name in args.datasets:  # every set checked before the engine, the model and any image load
        if name != "test":
            load_dataset(DataConfig(dataset=name, root=args.data_root, options=options.get(name, {})))
    from lesionlab.engine.transfer_report import transfer_report

    ood = None if args.no_ood else predictor_ood_flagger(args.run)
    result = transfer_report(args.run, args.datasets, data_root=args.data_root,
                             options=options, exclude_seen=args.exclude_seen, ood=ood,
                             n_boot=args.bootstrap, seed=args.seed, out_dir=args.out, progress=not args.quiet)
    print(result.table.to_string(float_format=lambda v: f"{v:.4f}"))
    if not result.outside.empty:
        print("\noutside the model's classes:")
        print(result.outside.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    print(f"report: {(result.directory / 'report.html').resolve()}")
    return 0
