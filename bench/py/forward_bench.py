"""Python side of bench/bridge.mjs: times forward() of a TorchScript file with Debian's torch.

    /usr/bin/python3 bench/py/forward_bench.py MODEL.pt --inputs spec.json --iters N --threads T
Prints one JSON line {"ms": [per-call milliseconds...]}. Inputs are built exactly as the Node
side builds them (torch.randn with fixed seeds, torch.full), so both run the same work.
"""
import argparse
import json
import time

import torch


def build(spec):
    out = []
    for item in spec:
        if item["kind"] == "randn":
            out.append(torch.randn(item["shape"], generator=torch.Generator().manual_seed(item["seed"])))
        elif item["kind"] == "full":
            out.append(torch.full(item["shape"], float(item["value"])))
        else:
            out.append(item["value"])
    return out


def main():
    p = argparse.ArgumentParser()
    p.add_argument("model")
    p.add_argument("--inputs", required=True)
    p.add_argument("--iters", type=int, default=100)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    with open(a.inputs) as f:
        spec = json.load(f)
    m = torch.jit.load(a.model).eval()
    args = build(spec)
    times = []
    with torch.inference_mode():
        for _ in range(a.warmup):
            m(*args)
        for _ in range(a.iters):
            t0 = time.perf_counter()
            m(*args)
            times.append((time.perf_counter() - t0) * 1000.0)
    print(json.dumps({"ms": times, "threads": torch.get_num_threads(), "torch": torch.__version__}))


if __name__ == "__main__":
    main()
