"""Data-parallel training (common.set_ranks, models.train.all --ranks): two real one-thread processes joined by
torch.distributed (gloo) on this machine.

* the gradient each rank uses after ``_average_gradients`` is the mean of the two ranks' own gradients (by hand);
* a stop requested by one rank stops both (``_all_ranks_any``), so neither waits forever;
* after a short run both ranks hold bit-identical weights, which differ from a one-process run (the second rank's
  batches count), and only rank 0 wrote the log and the checkpoint."""
import json
import os
import socket
import sys
import tempfile
import unittest

import numpy as np
import torch
import torch.multiprocessing as mp

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)
from models.train import common as C  # noqa: E402


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _loop(out: str, steps: int, budget_s: float = 1e9) -> "tuple[torch.nn.Module, C.TrainLoop]":
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 2)
    rng = np.random.default_rng(1)
    loop = C.TrainLoop(out, "toy", {"model": model}, [{"params": list(model.parameters())}], 0.05, 1, steps,
                       budget_s, None, rng, ckpt_every=2, log_every=1)
    target = torch.tensor([[1.0, -2.0, 0.5], [0.3, 0.2, -1.0]])

    def step():
        x = torch.from_numpy(rng.normal(size=(4, 3))).float()
        return ((model(x) - x @ target.T) ** 2).mean(), {}
    return model, loop, step


def _worker(rank: int, port: int, out: str, result_dir: str) -> None:
    C.setup_torch(1)
    C.set_ranks(rank, 2, port)
    res = {}
    # 1. gradient averaging, by hand
    model, loop, _ = _loop(os.path.join(out, f"avg{rank}"), 1)
    for i, p in enumerate(loop.params):
        p.grad = torch.full_like(p, float(rank + 1) * (i + 1))
    loop._average_gradients()
    res["avg"] = [p.grad.tolist() for p in loop.params]
    # 2. one rank asks to stop
    res["any"] = loop._all_ranks_any(rank == 1)
    res["none"] = loop._all_ranks_any(False)
    # 3. a short run (checkpoint at steps 2 and 4 checks that the ranks stay identical)
    model, loop, step = _loop(out, 4)
    loop.run(step)
    res["weights"] = [p.detach().tolist() for p in model.parameters()]
    with open(os.path.join(result_dir, f"rank{rank}.json"), "w") as f:
        json.dump(res, f)


class TrainRanksTest(unittest.TestCase):
    def test_two_ranks(self) -> None:
        with tempfile.TemporaryDirectory() as out, tempfile.TemporaryDirectory() as res_dir, \
                tempfile.TemporaryDirectory() as single:
            mp.spawn(_worker, args=(_free_port(), out, res_dir), nprocs=2, join=True)
            r = []
            for k in (0, 1):
                with open(os.path.join(res_dir, f"rank{k}.json")) as f:
                    r.append(json.load(f))
            # mean of (1 * (i+1)) and (2 * (i+1)) = 1.5 (i+1) for parameter i, on both ranks
            for k in (0, 1):
                self.assertEqual(np.unique(np.array(r[k]["avg"][0])).tolist(), [1.5])
                self.assertEqual(np.unique(np.array(r[k]["avg"][1])).tolist(), [3.0])
                self.assertTrue(r[k]["any"])
                self.assertFalse(r[k]["none"])
            self.assertEqual(r[0]["weights"], r[1]["weights"])
            model, loop, step = _loop(single, 4)       # one process, same seeds: rank 0's batches only
            loop.run(step)
            one = [p.detach().tolist() for p in model.parameters()]
            self.assertNotEqual(one, r[0]["weights"])
            with open(os.path.join(out, "losses.jsonl")) as f:
                steps_logged = [json.loads(line)["step"] for line in f]
            self.assertEqual(steps_logged, [1, 2, 3, 4])          # rank 0 only: each step once
            self.assertEqual(torch.load(os.path.join(out, "ckpt_toy.pt"))["step"], 4)


if __name__ == "__main__":
    unittest.main()
