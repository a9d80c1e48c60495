"""Shared training utilities: seeding, world batches, noise schedules, JSONL loss log, resumable checkpoints."""
import datetime
import json
import math
import os
import time
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F

from .. import world
from ..tokenizer import ClipBPE, tiny_tokenizer

NET_CONFIG = "tiny"
#: Which world (models/world.py) the trainers sample: "core" for the embedded default model, "full" for all of it.
WORLD = "core"
#: Where the trainers compute (``set_device``; ``--device`` of models.train.all). Data is rendered and batched on
#: the CPU and moved here; the networks of a TrainLoop are moved here; finished weights are saved as CPU tensors.
DEVICE = torch.device("cpu")
#: Data-parallel training (``set_ranks``; ``--ranks`` of models.train.all): (this process's rank, number of ranks).
RANKS = (0, 1)


def set_device(name: str) -> torch.device:
    """Selects the training device ("cpu", "cuda", "cuda:1"); a clear error when CUDA is asked for but absent."""
    global DEVICE
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit(f"--device {name}: this torch ({torch.__version__}) sees no CUDA device")
    if dev.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    DEVICE = dev
    return dev


def set_ranks(rank: int, ranks: int, port: int) -> None:
    """Joins a data-parallel group of ``ranks`` one-thread processes on this machine (torch.distributed, gloo over
    127.0.0.1:``port``). Every TrainLoop then averages its gradients over the ranks after each backward pass (so
    the batch is ``ranks`` x the trainer's batch at the same learning rate), stops all ranks together, and only
    rank 0 writes the loss log, the checkpoints and the finished weights."""
    global RANKS
    if not 0 <= rank < ranks:
        raise ValueError(f"rank {rank} of {ranks}")
    if ranks > 1:
        import torch.distributed as dist
        # a rank that waits longer than this for the others (one of them died) fails instead of hanging
        dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=ranks,
                                timeout=datetime.timedelta(minutes=10))
    RANKS = (rank, ranks)


def is_writer() -> bool:
    """Whether this process writes files (rank 0, or the only process)."""
    return RANKS[0] == 0


def to_device(*tensors: torch.Tensor):
    """The tensors on ``DEVICE`` (one tensor -> that tensor)."""
    moved = tuple(t.to(DEVICE) for t in tensors)
    return moved[0] if len(moved) == 1 else moved


def cpu_state(module: torch.nn.Module) -> Dict[str, torch.Tensor]:
    """The module's state dict with every tensor on the CPU (what the finished ``<component>.pt`` files hold)."""
    return {k: v.detach().cpu() for k, v in module.state_dict().items()}


def setup_torch(threads: int = 1) -> None:
    """One intra-op thread: on a shared 2-core machine OpenMP with 2 threads was ~10x slower (spin-waiting)."""
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True, warn_only=True)


def seed_all(seed: int) -> np.random.Generator:
    torch.manual_seed(seed)
    return np.random.default_rng(seed)


# ---------------------------------------------------------------- text
_TOK: Optional[ClipBPE] = None


def tokenizer() -> ClipBPE:
    """The exporter's default tiny tokenizer; the world's words are a subset of its word list (see world.py)."""
    global _TOK
    if _TOK is None:
        _TOK = tiny_tokenizer()
    return _TOK


def token_ids(texts: Sequence[str], pad_id: Optional[int] = None) -> torch.Tensor:
    """[B, 77] int64 on ``DEVICE`` as the pipeline tokenizes (stage 1/2: the tokenizer's pad id; stage 3: pad 0)."""
    tok = tokenizer()
    rows = []
    for t in texts:
        ids = tok.encode(t)
        if pad_id is not None:
            n = len(tok.content_ids(t)[: tok.max_length - 2]) + 2
            ids = ids[:n] + [pad_id] * (tok.max_length - n)
        rows.append(ids)
    return torch.tensor(rows, dtype=torch.int64).to(DEVICE)


# ---------------------------------------------------------------- data
def world_clips(rng: np.random.Generator, batch: int, frames: int, size: int = 64,
                t_range: Tuple[int, int] = (0, 400)) -> Tuple[torch.Tensor, List[str], List[world.Scene], List[int]]:
    """[B, 3, F, size, size] in [-1,1], captions, scenes, start frames."""
    scenes, starts, vids = [], [], []
    for _ in range(batch):
        s = world.sample_scene(rng, WORLD)
        t0 = int(rng.integers(t_range[0], t_range[1] + 1))
        vids.append(world.render(s, t0, frames, size))
        scenes.append(s)
        starts.append(t0)
    x = torch.from_numpy(np.stack(vids)).permute(0, 2, 1, 3, 4).contiguous()
    return x, [world.caption(s) for s in scenes], scenes, starts


def world_frames_masks(rng: np.random.Generator, batch: int, size: int = 64,
                       t_range: Tuple[int, int] = (0, 600)) -> Tuple[torch.Tensor, torch.Tensor]:
    """Single frames [B, 3, size, size] and their object masks [B, 1, size, size]."""
    fr, ms = [], []
    for _ in range(batch):
        s = world.sample_scene(rng, WORLD)
        f, m = world.render_with_masks(s, int(rng.integers(t_range[0], t_range[1] + 1)), 1, size)
        fr.append(f[0])
        ms.append(m[0])
    return torch.from_numpy(np.stack(fr)), torch.from_numpy(np.stack(ms))[:, None]


def drop_captions(rng: np.random.Generator, captions: Sequence[str], p: float) -> Tuple[List[str], np.ndarray]:
    keep = rng.random(len(captions)) >= p
    return [c if k else "" for c, k in zip(captions, keep)], keep


# ---------------------------------------------------------------- schedules
def ddpm_alphas_cumprod(n: int = 1000, beta_start: float = 0.00085, beta_end: float = 0.012) -> torch.Tensor:
    """ModelScope/diffusers 'scaled_linear' betas (stages 1 and 2)."""
    betas = torch.linspace(beta_start ** 0.5, beta_end ** 0.5, n, dtype=torch.float64) ** 2
    return torch.cumprod(1.0 - betas, 0).float()


def logsnr_cosine_interp(n: int = 1000, scale_min: float = 2.0, scale_max: float = 4.0,
                         logsnr_min: float = -15.0, logsnr_max: float = 15.0) -> Tuple[torch.Tensor, torch.Tensor]:
    """(alphas, sigmas) [n] of MS-Vid2Vid-XL's schedule with zero terminal SNR (spec §1.9; lib/schedulers)."""
    u = torch.linspace(1, 0, n, dtype=torch.float64)
    # index 0 is the cleanest, 999 pure noise (sigma = 1), as the official table and lib/schedulers; run 2's
    # enhancer was trained with these two lines swapped (the table reversed) and came out unusable
    a = math.atan(math.exp(-0.5 * logsnr_min))
    b = math.atan(math.exp(-0.5 * logsnr_max))
    lam = -2.0 * torch.log(torch.tan(a + u * (b - a)))
    lam = u * (lam + 2 * math.log(1 / scale_min)) + (1 - u) * (lam + 2 * math.log(1 / scale_max))
    sig = torch.sqrt(torch.sigmoid(-lam))
    lo, hi = sig.min(), sig.max()
    sig = lo + (1 - lo) / (hi - lo) * (sig - lo)
    alp = torch.sqrt((1 - sig * sig).clamp(min=0))
    return alp.float(), sig.float()


# ---------------------------------------------------------------- logging / checkpoints
class LossLog:
    """Appends one JSON object per line: {component, step, loss, ..., elapsed_s}."""

    def __init__(self, path: str, component: str):
        self.path, self.component = path, component
        self.t0 = time.time()

    def write(self, step: int, **values) -> None:
        rec = {"component": self.component, "step": step,
               **{k: (round(float(v), 6) if isinstance(v, (float, int, np.floating)) else v) for k, v in values.items()},
               "elapsed_s": round(time.time() - self.t0, 1)}
        if not is_writer():
            return
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(rec) + "\n")
        print(json.dumps(rec), flush=True)


def save_final(obj, path: str) -> None:
    """``torch.save`` of a finished component's weights (rank 0 only; see ``set_ranks``)."""
    if is_writer():
        torch.save(obj, path)


def save_checkpoint(path: str, step: int, modules: Dict[str, torch.nn.Module], opt: torch.optim.Optimizer,
                    rng: np.random.Generator, extra: Optional[dict] = None) -> None:
    if not is_writer():
        return
    state = {"step": step, "modules": {k: m.state_dict() for k, m in modules.items()}, "opt": opt.state_dict(),
             "torch_rng": torch.get_rng_state(), "np_rng": rng.bit_generator.state, "extra": extra or {}}
    tmp = path + ".tmp"
    torch.save(state, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: str, modules: Dict[str, torch.nn.Module], opt: torch.optim.Optimizer,
                    rng: np.random.Generator) -> Tuple[int, dict]:
    """Restores modules/optimizer/RNGs from ``path`` if it exists; returns (step, extra) (0, {} when absent)."""
    if not os.path.exists(path):
        return 0, {}
    state = torch.load(path, map_location="cpu")
    for k, m in modules.items():
        m.load_state_dict(state["modules"][k])
    opt.load_state_dict(state["opt"])
    torch.set_rng_state(state["torch_rng"])
    rng.bit_generator.state = state["np_rng"]
    print(f"resumed {path} at step {state['step']}", flush=True)
    return state["step"], state.get("extra", {})


class EMA:
    """Exponential moving average of a module's parameters (exported instead of the raw weights)."""

    def __init__(self, module: torch.nn.Module, decay: float):
        self.decay = decay
        self.shadow = {k: v.detach().clone() for k, v in module.state_dict().items()}

    @torch.no_grad()
    def update(self, module: torch.nn.Module, step: int) -> None:
        d = min(self.decay, (1 + step) / (10 + step))
        for k, v in module.state_dict().items():
            if self.shadow[k].device != v.device:     # the module was moved to DEVICE after the EMA was made
                self.shadow[k] = self.shadow[k].to(v.device)
            if v.dtype.is_floating_point:
                self.shadow[k].mul_(d).add_(v.detach(), alpha=1 - d)
            else:
                self.shadow[k].copy_(v)

    def state_dict(self) -> Dict[str, torch.Tensor]:
        return {k: v.detach().cpu().clone() for k, v in self.shadow.items()}

    def load_state_dict(self, sd: Dict[str, torch.Tensor]) -> None:
        self.shadow = {k: v.clone() for k, v in sd.items()}


class _EMAModule(torch.nn.Module):
    """Adapter so an EMA can be checkpointed with the modules dict."""

    def __init__(self, ema: EMA):
        super().__init__()
        self.ema = ema

    def state_dict(self, *args, **kwargs):  # type: ignore[override]
        return self.ema.state_dict()

    def load_state_dict(self, sd, strict: bool = True):  # type: ignore[override]
        self.ema.load_state_dict(sd)


def ema_module(ema: EMA) -> torch.nn.Module:
    return _EMAModule(ema)


def lr_at(step: int, base: float, warmup: int, total: int) -> float:
    """Linear warm-up then cosine decay to 10 %."""
    if step < warmup:
        return base * (step + 1) / warmup
    p = min(1.0, (step - warmup) / max(1, total - warmup))
    return base * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * p)))


class TrainLoop:
    """The checkpointed, budget-limited optimisation loop every trainer uses: one step = ``step_fn()`` returning
    (loss, extra log values). Per step: lr = lr_at(step) x the group's ``lr_mult``, backward, gradient clipping
    at 1.0, optimizer step, EMA updates. Stops at ``steps``, at ``stop_at`` (replaying a budget-stopped run) or
    when ``budget_s`` of wall clock (summed over resumes) is spent, and logs why. Checkpoints every
    ``ckpt_every`` steps to ``<out>/ckpt_<name>.pt`` (modules, EMAs, optimizer, RNG states); resumes from it.
    ``adam``: torch.optim.Adam, else AdamW without weight decay (the same update)."""

    def __init__(self, out: str, name: str, mods: Dict[str, torch.nn.Module], params: List[dict], lr: float,
                 warmup: int, steps: int, budget_s: float, stop_at: Optional[int], rng: np.random.Generator,
                 emas: Optional[Dict[str, EMA]] = None, ckpt_every: int = 100, log_every: int = 20,
                 adam: bool = False):
        self.lr, self.warmup, self.steps, self.budget_s, self.stop_at = lr, warmup, steps, budget_s, stop_at
        self.rng, self.emas, self.ckpt_every, self.log_every = rng, emas or {}, ckpt_every, log_every
        for m in mods.values():   # in place: the parameter objects in ``params`` stay the same
            m.to(DEVICE)
        self.opt = torch.optim.Adam(params, lr=lr) if adam else torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
        self.params = [p for g in params for p in g["params"]]
        self.mods = {**mods, **{f"ema_{k}": ema_module(e) for k, e in self.emas.items()}}
        self.ck = os.path.join(out, f"ckpt_{name}.pt")
        self.step, extra = load_checkpoint(self.ck, self.mods, self.opt, rng)
        self.elapsed0, self.t_start = extra.get("elapsed", 0.0), time.time()
        rank, ranks = RANKS
        if rank > 0:   # the same weights as rank 0 (same files), other batches and noise: reseeded from (rank, step)
            seed = int(rng.integers(1 << 31)) + 7919 * rank + self.step
            rng.bit_generator.state = np.random.default_rng(seed).bit_generator.state
            torch.manual_seed(seed)
        self.log = LossLog(os.path.join(out, "losses.jsonl"), name)

    def run(self, step_fn: Callable[[], Tuple[torch.Tensor, Dict[str, float]]]) -> None:
        run = 0.0
        while self.step < self.steps:
            if self.stop_at is not None and self.step >= self.stop_at:
                self.log.write(self.step, note="stopped by --stop-at (replaying a budget-stopped run)")
                break
            if self._all_ranks_any(self.elapsed0 + time.time() - self.t_start > self.budget_s):
                self.log.write(self.step, note="stopped by wall-clock budget")
                break
            base = lr_at(self.step, self.lr, self.warmup, self.steps)
            for g in self.opt.param_groups:
                g["lr"] = base * g.get("lr_mult", 1.0)
            loss, info = step_fn()
            self.opt.zero_grad()
            loss.backward()
            self._average_gradients()
            torch.nn.utils.clip_grad_norm_(self.params, 1.0)
            self.opt.step()
            for k, e in self.emas.items():
                e.update(self.mods[k], self.step)
            self.step += 1
            run = loss.item() if self.step == 1 else 0.95 * run + 0.05 * loss.item()
            if self.step % self.log_every == 0 or self.step == 1:
                self.log.write(self.step, loss=loss.item(), loss_avg=run, lr=base, **info)
            if self.step % self.ckpt_every == 0:
                self._check_in_sync()
                save_checkpoint(self.ck, self.step, self.mods, self.opt, self.rng,
                                {"elapsed": self.elapsed0 + time.time() - self.t_start})


    @staticmethod
    def _all_ranks_any(flag: bool) -> bool:
        """``flag`` of any rank (every rank must stop at the same step, or the others wait forever)."""
        if RANKS[1] == 1:
            return flag
        import torch.distributed as dist
        t = torch.tensor([1.0 if flag else 0.0])
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return bool(t.item() > 0)

    def _check_in_sync(self) -> None:
        """Raises when the ranks' weights have diverged (they must stay bit-identical: same start, same averaged
        gradients, same optimizer)."""
        if RANKS[1] == 1:
            return
        import torch.distributed as dist
        total = sum(float(p.detach().double().sum()) for p in self.params)
        hi, lo = torch.tensor([total], dtype=torch.float64), torch.tensor([total], dtype=torch.float64)
        dist.all_reduce(hi, op=dist.ReduceOp.MAX)
        dist.all_reduce(lo, op=dist.ReduceOp.MIN)
        if float(hi) != float(lo):
            raise RuntimeError(f"data-parallel ranks diverged at step {self.step}: weight sums {float(lo)!r} .. "
                               f"{float(hi)!r}")

    def _average_gradients(self) -> None:
        """Mean of the gradients over the ranks, as one flat all-reduce (a no-op with one rank)."""
        if RANKS[1] == 1:
            return
        import torch.distributed as dist
        for p in self.params:      # a parameter unused in this rank's step still takes part (as zeros)
            if p.grad is None:
                p.grad = torch.zeros_like(p)
        grads = [p.grad for p in self.params]
        flat = torch.cat([g.reshape(-1) for g in grads]).cpu()
        dist.all_reduce(flat)
        flat /= RANKS[1]
        i = 0
        for g in grads:
            g.copy_(flat[i:i + g.numel()].view_as(g))
            i += g.numel()


def upsample2x(video: torch.Tensor) -> torch.Tensor:
    """[B,3,F,H,W] -> [B,3,F,2H,2W] bicubic, clamped to [-1,1] (the stage-3 input resize)."""
    b, c, f, h, w = video.shape
    x = video.transpose(1, 2).reshape(b * f, c, h, w)
    x = F.interpolate(x, scale_factor=2, mode="bicubic", align_corners=False).clamp(-1, 1)
    return x.reshape(b, f, c, 2 * h, 2 * w).transpose(1, 2)
