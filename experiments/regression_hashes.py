"""Hash the numbers of a regression run's outputs (issue 26): one line per metrics/calibration/model file.

Names, times, paths and run-folder timestamps differ between runs, so they are dropped or normalised before hashing;
a refactor that changes no behaviour prints the same lines before and after.
    usage: python experiments/regression_hashes.py OUT_DIR
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
from pathlib import Path

PATTERNS = ("metrics.json", "calibration.json", "ensemble.json", "operating_points.csv", "cv_summary.csv",
            "val_by_source.json", "val_metrics.json", "model.pt")
DROP = re.compile(r"second|time|path|root|created|date|version")
STAMP = re.compile(r"\d{8}-\d{6}")


def _clean(obj: object) -> object:
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items() if not DROP.search(k)}
    if isinstance(obj, list):
        return [_clean(v) for v in obj]
    return obj


def digest(path: Path, root: Path) -> str:
    if path.suffix == ".pt":  # the fitted operating point and the weights
        import torch

        blob = torch.load(path, map_location="cpu", weights_only=False)
        prep = {k: blob["preprocessing"][k] for k in ("temperature", "thresholds", "unsure_threshold")}
        weights = hashlib.sha256(b"".join(v.numpy().tobytes() for v in blob["state_dict"].values())).hexdigest()
        text = json.dumps(prep, sort_keys=True) + weights
    elif path.suffix == ".json":
        text = json.dumps(_clean(json.loads(path.read_text())), sort_keys=True)
    else:
        text = path.read_text()
    text = text.replace(str(root.resolve()), "<out>").replace(str(root), "<out>")  # the output folder's own name
    return hashlib.sha256(STAMP.sub("<ts>", text).encode()).hexdigest()[:16]


def main(root: Path) -> None:
    for path in sorted(p for name in PATTERNS for p in root.rglob(name)):
        print(digest(path, root), STAMP.sub("<ts>", str(path.relative_to(root))))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
