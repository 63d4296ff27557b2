"""Data-preparation time of the same config, first run (decode + crop + resize into the cache) vs second (reuse).

Uses a fresh cache folder, so the first call really builds. Goal: the second run spends < 5 % of the first's time.

    python benchmarks/cache_reuse.py --size 64              # all 10,015 HAM10000 images
    python benchmarks/cache_reuse.py --size 32 --max-images 1000
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from lesionlab.config import load_config
from lesionlab.data.prepare import prepare_data


def main() -> None:
    default_root = os.environ.get("LESIONLAB_DATA", str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-root", default=default_root)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--max-images", type=int, default=None, help="subset (the cache still covers the dataset)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="lesionlab-cache-") as cache:
        cfg = load_config(None, [f"data.root={args.data_root}", f"data.image_size={args.size}",
                                 f"data.cache_dir={cache}",
                                 *([f"data.max_samples={args.max_images}"] if args.max_images else [])])
        times, built = [], []
        for _ in range(2):  # the same config twice: build (pixels + split), then reuse both
            t = time.perf_counter()
            data = prepare_data(cfg.data, progress=False)
            times.append(time.perf_counter() - t)
            built.append(data.arrays.built)
        n = len(data.arrays.images)
    share = times[1] / times[0]
    print(f"{n} images cached at {args.size} px; load {os.getloadavg()[0]:.2f}")
    print(f"first run  (table + decode/crop/resize into the cache + lesion-disjoint split) {times[0]:7.2f} s "
          f"(cache built: {built[0]})")
    print(f"second run (table + cached pixels + memoised split)                         {times[1]:7.2f} s "
          f"(cache built: {built[1]})")
    print(f"second / first = {100 * share:.1f} % (goal < 5 %: {'met' if share < 0.05 else 'NOT met'})")


if __name__ == "__main__":
    main()
