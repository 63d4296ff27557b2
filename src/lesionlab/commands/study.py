"""``lesionlab study``: re-run a literature study (``configs/studies/NAME.yaml``) and write its results page."""

from __future__ import annotations

import argparse
import sys

from lesionlab.commands.common import add_data_root

EPILOG = """examples:
  lesionlab study --list
  lesionlab study focal-ablation --data-root ../shared/data          # every arm x seed (resumes)
  lesionlab study focal-ablation --results-dir docs/results            # refresh the checkout's results pages
  lesionlab study focal-ablation --only full no-focal                  # some arms
  lesionlab study dermamnist-resolution --scale gpu                    # the paper-resolution variant
  lesionlab study --summary                                            # docs/results/README.md's table"""


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("study", help="re-run a source study (arms x seeds) beside the paper's numbers",
                       description="Run the arms of a study file over its seeds on the full data, resuming after "
                       "the last finished arm x seed, and write <results>/<study>.md (paper vs ours, mean ± sd, "
                       "bootstrap CIs, figure). Each run's own report stays in its run directory.",
                       epilog=EPILOG)
    p.add_argument("study", nargs="?", help="a study shipped with LesionLab (see --list) or a study YAML file")
    p.add_argument("--scale", default="cpu", help="which variant of the study: cpu (default) or gpu (paper resolution)")
    add_data_root(p, "data root for every arm (default: each config's own)")
    p.add_argument("--only", nargs="+", default=(), metavar="ARM", help="run only these arms")
    p.add_argument("--results-dir", default=None, help="where <study>.csv/.md/.png go (default RUNS_DIR/results; "
                   "docs/results in a checkout refreshes its committed pages)")
    p.add_argument("--runs-dir", default="runs/studies", help="parent of the run directories (default runs/studies)")
    p.add_argument("--list", action="store_true", help="list the studies and their arms, then exit")
    p.add_argument("--summary", action="store_true", help="write the studies table into <results>/README.md")
    p.set_defaults(func=cmd_study)


def cmd_study(args: argparse.Namespace) -> int:
    from pathlib import Path

    from lesionlab.config import ConfigError
    from lesionlab.config.study import STUDY_DIR, load_study, study_names

    if args.results_dir is None:
        args.results_dir = str(Path(args.runs_dir) / "results")
    if args.list:
        for name in study_names():
            study = load_study(name)
            print(f"{study.name:28s} {study.title}\n{'':28s} arms: {', '.join(a.name for a in study.arms)}; "
                  f"seeds {list(study.seeds)}; scales {', '.join(study.scales) or 'cpu'}")
        return 0
    if args.summary:
        from lesionlab.engine.study.summary import write_summary

        print(f"summary: {write_summary(sorted(STUDY_DIR.glob('*.yaml')), Path(args.results_dir))}")
        return 0
    if not args.study:
        raise ConfigError("name a study (lesionlab study --list shows them)")
    from lesionlab.commands.common import prepare_training

    prepare_training(args.verbose)
    study = load_study(args.study)  # a wrong name fails before the training stack is imported
    from lesionlab.engine.study.run import results_path, run_study
    from lesionlab.reports.study_page import write_study_page

    command = " ".join(["lesionlab study", study.name, *([f"--scale {args.scale}"] if args.scale != "cpu" else [])])
    page = Path(args.results_dir) / (f"{study.name}.md" if args.scale == "cpu" else f"{study.name}-{args.scale}.md")

    def write(results) -> None:
        write_study_page(study, results, page, scale=args.scale, command=command)

    results = run_study(study, scale=args.scale, data_root=args.data_root, results_dir=args.results_dir,
                        runs_dir=args.runs_dir, only=args.only, on_progress=write)
    write(results)
    print(f"results: {results_path(study, args.results_dir, args.scale)}\npage: {page}", file=sys.stdout)
    return 0
