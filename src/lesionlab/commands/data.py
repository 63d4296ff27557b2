"""``lesionlab data``: ``info``, ``download`` and ``build-dermamnist``."""

from __future__ import annotations

import argparse
import json

from lesionlab.commands.common import add_data_root, add_dataset_options, add_out, data_config_from_args


def register(sub: argparse._SubParsersAction) -> None:
    data = sub.add_parser("data", help="dataset tools: info, download, build-dermamnist",
                          description="Look at, fetch and convert datasets.",
                          epilog="examples:\n  lesionlab data info ham10000\n"
                          "  lesionlab data download ham10000 --data-root ~/data")
    dsub = data.add_subparsers(dest="data_command", metavar="DATA_COMMAND", required=True)
    p = dsub.add_parser("info", help="counts per class, lesions, images, licence and citation",
                        description="Count a dataset's images, lesions and patients per class and print its "
                        "licence, citation and the loader's findings.",
                        epilog="example:\n  lesionlab data info ph2 --data-root ../shared/data --json")
    p.add_argument("name", help="dataset name")
    add_dataset_options(p)
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_data_info, dataset=None)

    p = dsub.add_parser("download", help="download an official dataset release (checksums, resume, progress)",
                        description="Fetch the official files into <data root>/<dataset>/ and unpack them. "
                        "Offline, it says so and explains how to place the files by hand.",
                        epilog="example:\n  lesionlab data download ham10000 --data-root ~/data")
    p.add_argument("name", help="dataset name (ham10000, isic2018, isic2019, isic2020; the others print where to "
                   "place the files)")
    add_data_root(p)
    p.add_argument("--server", default=None, help="override the repository server URL (mirrors, tests)")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_download)

    p = dsub.add_parser("build-dermamnist", help="DermaMNIST-Corrected-style arrays with a lesion-disjoint split",
                        description="Write dermamnist_corrected_<size>.npz (MedMNIST layout: train/val/test "
                        "images+labels) from HAM10000 images, split lesion-disjoint (the 'DermaMNIST-Corrected' "
                        "protocol; not the official MedMNIST split).",
                        epilog="example:\n  lesionlab data build-dermamnist --data-root ../shared/data --sizes 28,64")
    add_data_root(p)
    p.add_argument("--image-dir", default=None, help="HAM10000 image folder (default: the dataset's own layout)")
    p.add_argument("--sizes", default="28,64,128", help="comma-separated sizes (default 28,64,128)")
    add_out(p, "output folder (default: <data root>/dermamnist)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_build_dermamnist)


def cmd_data_info(args: argparse.Namespace) -> int:
    from lesionlab.data.datasets import load_dataset
    from lesionlab.data.info import DATASET_INFO

    args.dataset = args.name
    ds = load_dataset(data_config_from_args(args))
    summary = ds.summary()
    if args.name in DATASET_INFO:
        info = DATASET_INFO.get(args.name)
        summary.update({"title": info.title, "licence": info.licence, "citation": info.citation,
                        "homepage": info.homepage, "modality": info.modality})
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    print(f"{summary.get('title', ds.name)}  [{ds.taxonomy.name}]")
    patients = f", patients {summary['patients']}" if summary.get("patients") else ""
    print(f"  images {summary['images']}, lesions {summary['lesions']}{patients}, age missing {summary['age_missing']}")
    width = max(len(c) for c in summary["classes"])
    for cls, n in summary["classes"].items():
        print(f"  {cls:{width}s} {n:6d}  {ds.taxonomy.descriptions.get(cls, '')}")
    for key, value in ds.notes.items():  # loader findings, e.g. the near-duplicate check's counts
        print(f"  {key.replace('_', ' ')}: " + (", ".join(f"{k.replace('_', ' ')} {v}" for k, v in value.items())
                                                 if isinstance(value, dict) else str(value)))
    if "licence" in summary:
        print(f"  modality: {summary['modality']} | url: {summary['homepage']}")
        print(f"  licence: {summary['licence']}\n  cite: {summary['citation']}")
    return 0


def cmd_download(args: argparse.Namespace) -> int:
    from lesionlab.data.download import download_dataset
    from lesionlab.data.roots import resolve_data_root

    target = download_dataset(args.name, resolve_data_root(args.data_root), server=args.server,
                              progress=not args.no_progress)
    print(f"{args.name} is ready in {target}")
    return 0


def cmd_build_dermamnist(args: argparse.Namespace) -> int:
    from lesionlab.data.dermamnist_build import build_dermamnist
    from lesionlab.data.roots import resolve_data_root

    sizes = tuple(int(s) for s in args.sizes.split(","))
    paths = build_dermamnist(resolve_data_root(args.data_root), sizes=sizes, image_dir=args.image_dir,
                             out_dir=args.out, seed=args.seed)
    for p in paths:
        print(p)
    return 0
