"""``lesionlab data download`` and ``lesionlab data build-dermamnist``."""

from __future__ import annotations

import argparse


def register(dsub: argparse._SubParsersAction) -> None:
    p = dsub.add_parser("download", help="download an official dataset release (checksums, resume, progress)",
                        description="Fetch the official files into <data root>/<dataset>/ and unpack them. "
                        "Offline, it says so and explains how to place the files by hand.")
    p.add_argument("name", help="dataset name (ham10000, isic2018, isic2019, isic2020; the others print where to "
                   "place the files)")
    p.add_argument("--data-root", default=None, help="data root (default: $LESIONLAB_DATA, then the user cache)")
    p.add_argument("--server", default=None, help="override the repository server URL (mirrors, tests)")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_download)

    p = dsub.add_parser("build-dermamnist", help="DermaMNIST-Corrected-style arrays with a lesion-disjoint split",
                        description="Write dermamnist_corrected_<size>.npz (MedMNIST layout: train/val/test "
                        "images+labels) from HAM10000 images, split lesion-disjoint (the 'DermaMNIST-Corrected' "
                        "protocol; not the official MedMNIST split).")
    p.add_argument("--data-root", default=None)
    p.add_argument("--image-dir", default=None)
    p.add_argument("--sizes", default="28,64,128", help="comma-separated sizes (default 28,64,128)")
    p.add_argument("--out", default=None, help="output folder (default: <data root>/dermamnist)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=cmd_build_dermamnist)


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
