"""Paired comparison of two benchmark runs, video by video, with a bootstrap confidence interval per metric.

The benchmark's table gives one mean per run, and the videos of one run spread widely (a 240-frame video's colour
drift ranges from 2 to 38 grey levels on the default model), so two means that differ by 1-2 may say nothing. This
script pairs the videos of run A and run B by prompt (and by seed, when several metrics files are given), takes
the per-video difference A - B of each metric, and bootstraps its mean over prompts: the prompts are resampled
with replacement, each drawn prompt bringing all of its pairs (one per seed), so two seeds of one prompt count as
one correlated unit, not two independent ones. A difference is called clear when its 95 % percentile interval
excludes 0 (the issue's "drift clearly below the no-APM ablation").

    /usr/bin/python3 bench/quality/compare.py S33/metrics.json:guard2 N33/metrics.json:noapm-guard \\
        S34/metrics.json:guard2 N34/metrics.json:noapm-guard [--resamples 20000] [--seed 0] [--json out.json]

Arguments come in pairs, ``A B``: each ``FILE:TAG`` is a ``metrics.py --json`` file and a run (tag) in it; every
pair is one seed's (or one setting's) A against B. Metrics (per video; lower is better except where noted):
``colour_drift`` (grey levels), ``size_error`` = |log size_ratio|, ``adherence`` (share of colour, shape and
direction right; higher is better), ``cuts``, ``colour_turns``, ``dir_turns``, ``seam_tone``.

Numpy only; the bootstrap is seeded, so a rerun prints the same table.
"""
import argparse
import json
import math
import sys
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

# (name, how a video's value is computed from its metrics row, True where higher is better)
METRICS = [
    ("colour_drift", lambda r: r["colour_drift"], False),
    ("size_error", lambda r: abs(math.log(r["size_ratio"])) if r["size_ratio"] > 0 else float("nan"), False),
    ("adherence", lambda r: (r["colour_ok"] + r["shape_ok"] + r["dir_ok"]) / 3.0, True),
    ("cuts", lambda r: r["cuts"], False),
    ("colour_turns", lambda r: r["colour_turns"], False),
    ("dir_turns", lambda r: r["dir_turns"], False),
    ("seam_tone", lambda r: r["seam_tone"], False),
]


class CompareError(ValueError):
    """An argument or a metrics file that cannot be compared (names the file, tag or prompt)."""


def load_run(spec: str) -> List[Dict]:
    """Per-video rows of ``FILE:TAG`` (a ``metrics.py --json`` file and one of its runs)."""
    path, sep, tag = spec.rpartition(":")
    if not sep or not path or not tag:
        raise CompareError(f"expected FILE:TAG (a metrics.py --json file and a run in it) but received {spec!r}")
    try:
        with open(path) as f:
            data = json.load(f)
    except OSError as e:
        raise CompareError(f"cannot read {path!r}: {e.strerror}") from None
    except json.JSONDecodeError as e:
        raise CompareError(f"{path!r} is not JSON: {e}") from None
    videos = data.get("videos") if isinstance(data, dict) else None
    if not isinstance(videos, dict):
        raise CompareError(f"{path!r} has no 'videos' object: not a metrics.py --json file")
    if tag not in videos:
        raise CompareError(f"{path!r} has no run {tag!r}; it has {sorted(videos)}")
    return videos[tag]


def pair_rows(a: Sequence[Dict], b: Sequence[Dict], where: str) -> List[Tuple[str, Dict, Dict]]:
    """(prompt, row of A, row of B) for every prompt, in A's order; both runs must hold the same prompts once each."""
    def by_prompt(rows: Sequence[Dict], side: str) -> Dict[str, Dict]:
        out: Dict[str, Dict] = {}
        for r in rows:
            if r["prompt"] in out:
                raise CompareError(f"{where}: run {side} has the prompt {r['prompt']!r} twice")
            out[r["prompt"]] = r
        return out
    ra, rb = by_prompt(a, "A"), by_prompt(b, "B")
    if ra.keys() != rb.keys():
        only_a, only_b = sorted(ra.keys() - rb.keys()), sorted(rb.keys() - ra.keys())
        raise CompareError(f"{where}: the runs hold different prompts (only in A: {only_a[:3]}{'...' if len(only_a) > 3 else ''}"
                           f", only in B: {only_b[:3]}{'...' if len(only_b) > 3 else ''})")
    return [(p, ra[p], rb[p]) for p in ra]


def bootstrap_means(clusters: Sequence[Sequence[float]], resamples: int, seed: int) -> np.ndarray:
    """Means of ``resamples`` cluster bootstrap samples: each draws len(clusters) clusters with replacement and
    averages every value of the drawn clusters (pairs of one prompt over several seeds stay together)."""
    if not clusters or any(len(c) == 0 for c in clusters):
        raise CompareError("every cluster needs at least one value")
    if resamples < 1:
        raise CompareError(f"expected a positive number of resamples but received {resamples}")
    sums = np.array([float(np.sum(c)) for c in clusters])
    counts = np.array([len(c) for c in clusters], dtype=np.float64)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(clusters), size=(resamples, len(clusters)))
    return sums[idx].sum(1) / counts[idx].sum(1)


def compare_metric(pairs: Sequence[Tuple[str, Dict, Dict]], value, resamples: int, seed: int) -> Optional[Dict]:
    """Mean of A, of B, of A - B, its 95 % cluster-bootstrap percentile interval, and the per-video win counts."""
    clusters: Dict[str, List[float]] = {}
    va, vb = [], []
    for prompt, ra, rb in pairs:
        x, y = value(ra), value(rb)
        if x is None or y is None or not (math.isfinite(x) and math.isfinite(y)):
            continue
        va.append(x)
        vb.append(y)
        clusters.setdefault(prompt, []).append(x - y)
    if not va:
        return None
    diffs = np.array(va) - np.array(vb)
    boot = bootstrap_means(list(clusters.values()), resamples, seed)
    lo, hi = np.quantile(boot, [0.025, 0.975])
    tidy = lambda x: float(np.round(x, 12)) + 0.0          # noqa: E731 - no 4.6e-18 for an exact 0, no -0
    return {"n": len(va), "prompts": len(clusters), "mean_a": float(np.mean(va)), "mean_b": float(np.mean(vb)),
            "diff": tidy(np.mean(diffs)), "ci95": [tidy(lo), tidy(hi)],
            "a_lower": int((diffs < 0).sum()), "b_lower": int((diffs > 0).sum()), "ties": int((diffs == 0).sum())}


def verdict(res: Dict, higher_better: bool) -> str:
    lo, hi = res["ci95"]
    if lo > 0 or hi < 0:
        a_better = (lo > 0) == higher_better
        return "A clearly better" if a_better else "B clearly better"
    return "no clear difference"


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("runs", nargs="+", help="FILE:TAG FILE:TAG [...]: pairs of runs, A then B")
    ap.add_argument("--resamples", type=int, default=20000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    try:
        if len(args.runs) % 2:
            raise CompareError(f"runs come in pairs (A B [A B ...]) but received {len(args.runs)}")
        pairs: List[Tuple[str, Dict, Dict]] = []
        for k in range(0, len(args.runs), 2):
            pairs += pair_rows(load_run(args.runs[k]), load_run(args.runs[k + 1]),
                               f"{args.runs[k]} vs {args.runs[k + 1]}")
        results = {}
        for name, value, higher in METRICS:
            res = compare_metric(pairs, value, args.resamples, args.seed)
            if res is not None:
                res["verdict"] = verdict(res, higher)
                res["higher_is_better"] = higher
                results[name] = res
    except CompareError as e:
        print(f"compare: {e}", file=sys.stderr)
        return 2
    print(f"A = {', '.join(args.runs[0::2])}")
    print(f"B = {', '.join(args.runs[1::2])}")
    print(f"{len(pairs)} paired videos; 95 % intervals from {args.resamples} cluster-bootstrap resamples over prompts "
          f"(seed {args.seed})")
    print("| metric | pairs | A | B | A - B | 95 % interval | A lower / B lower / ties | verdict |")
    print("|---|---|---|---|---|---|---|---|")
    for name, r in results.items():
        print(f"| {name}{' (higher is better)' if r['higher_is_better'] else ''} | {r['n']} | {r['mean_a']:.3g} | "
              f"{r['mean_b']:.3g} | {r['diff']:+.3g} | [{r['ci95'][0]:+.3g}, {r['ci95'][1]:+.3g}] | "
              f"{r['a_lower']} / {r['b_lower']} / {r['ties']} | {r['verdict']} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"a": args.runs[0::2], "b": args.runs[1::2], "resamples": args.resamples, "seed": args.seed,
                       "metrics": results}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
