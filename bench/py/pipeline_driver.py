"""A minimal, independent Python driver of the StreamingT2V pipeline over an exported model directory.

It loads the SAME TorchScript files as the Node pipeline (``torch.jit.load``) and runs the same algorithm with
the same seeds, written from the published equations and the spec (``../shared/docs/streamingt2v-spec.md``), not
from the TypeScript code:

* tokenization: the pure-Python reference CLIP BPE of ``models/tokenizer.py`` over the vocabulary and merges of the
  directory's ``tokenizer.json`` (independent of ``@huggingface/tokenizers`` on the Node side);
* stage 1: DPM-Solver++(2M) (Lu et al. 2022, Algorithm 2, data prediction, midpoint form), diffusers
  ``linspace`` timesteps, ``lower_order_final``, final sigma 0, CFG ``u + w(c - u)`` on [negative; prompt];
* stage 2: autoregressive 16-frame windows, DDIM (Song et al. 2021, eq. 12/16) with ``leading`` timesteps + offset,
  eta = 1, the ancestral noise drawn as [F, C, H, W] (frames folded into the batch, as the diffusers T2V pipeline
  hands it to the scheduler) from the run's stage-2 generator, CAM = last 8 decoded frames, APM = 16 tokens of
  stage-1 frame 0 appended to the text (grey-image tokens for the unconditional half);
* stage 3: bicubic (antialiased) resize, letterbox, VAE posterior sample, SDEdit to t = noise_level - 1 of
  ``logsnr_cosine_interp`` with one noise field per video, DPM++(2M) SDE (k-diffusion form, eta = 1, midpoint,
  x = z * sigma_0), CFG with rescale, v-prediction, chunks with randomized blending of x0 at every step.

Where the project deliberately differs from the official code (README "Where we deliberately differ") the driver
follows the project: derived stage seeds, CPU generators everywhere, per-frame splitmix64 noise seeds for stage 3,
PCG32 blending cuts, an end-aligned tail chunk, exactly N frames, uint8 preview frames (truncated) fed to stage 3.

Usage (one run, frames written as raw RGB24):
    /usr/bin/python3 bench/py/pipeline_driver.py --model-dir models/tiny --prompt "..." --frames 20 \
        --steps1 2 --steps2 2 --steps3 2 --threads 1 --out /tmp/py
  -> OUT/preview.rgb ([N, H, W, 3] uint8), OUT/final.rgb (unless --no-enhance), one JSON line on stdout.
Server mode (``--serve``): loads once, prints ``{"ready": true}``, then for every stdin line ``{"out": DIR, ...}`` (any
option overridable by its dest name, e.g. ``"frames"``, ``"steps1"``, ``"perturb"``) runs once and prints a JSON line
``{"seconds": ...}`` (generation only, model loading excluded). Used by bench/pipeline-vs-python.mjs and
test/pipeline/python-parity.test.ts.
"""
import argparse
import json
import math
import os
import sys
import time

import torch
import torch.nn.functional as F

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, REPO)
from models.tokenizer import ClipBPE  # noqa: E402  (pure Python reference encoder)

M64 = (1 << 64) - 1
M63 = (1 << 63) - 1

# ---------------------------------------------------------------------------------------------------------------
# seeds and small PRNGs (project definitions: README "Where we deliberately differ")
# ---------------------------------------------------------------------------------------------------------------


def derived_seeds(seed):
    """stage1 = seed; stage k = (seed * golden + k * c) mod 2^63 for k = 2 (stage 2), 3 (stage 3), 4 (blending)."""
    mix = lambda k: (seed * 0x9E3779B97F4A7C15 + k * 0xBF58476D1CE4E5B9) & M63
    return {"stage1": seed, "stage2": mix(2), "stage3": mix(3), "blend": mix(4)}


def splitmix64(z):
    z = (z + 0x9E3779B97F4A7C15) & M64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
    return z ^ (z >> 31)


def shared_noise_seed(seed, stream, frame):
    return splitmix64(splitmix64(splitmix64(seed & M64) ^ stream) ^ frame) & M63


def cpu_randn(shape, seed):
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))


class Pcg32:
    """PCG-XSH-RR 64/32 (O'Neill 2014) with the reference seeding (state 0, step, add seed, step)."""

    MUL = 6364136223846793005

    def __init__(self, seed, stream=0):
        self.inc = ((stream << 1) | 1) & M64
        self.state = 0
        self.next_u32()
        self.state = (self.state + (seed & M64)) & M64
        self.next_u32()

    def next_u32(self):
        old = self.state
        self.state = (old * self.MUL + self.inc) & M64
        xorshifted = (((old >> 18) ^ old) >> 27) & 0xFFFFFFFF
        rot = old >> 59
        return ((xorshifted >> rot) | (xorshifted << ((32 - rot) & 31))) & 0xFFFFFFFF

    def uniform_int(self, n):
        """Unbiased integer in [0, n) by rejection of the top 2^32 mod n outputs."""
        limit = 2**32 - (2**32 % n)
        while True:
            x = self.next_u32()
            if x < limit:
                return x % n


# ---------------------------------------------------------------------------------------------------------------
# noise schedules
# ---------------------------------------------------------------------------------------------------------------


def alphas_cumprod(cfg):
    n = cfg.get("num_train_timesteps", 1000)
    if cfg.get("beta_schedule") == "scaled_linear":
        betas = torch.linspace(cfg["beta_start"] ** 0.5, cfg["beta_end"] ** 0.5, n, dtype=torch.float64) ** 2
    elif cfg.get("beta_schedule") == "linear":
        betas = torch.linspace(cfg["beta_start"], cfg["beta_end"], n, dtype=torch.float64)
    else:
        raise ValueError(f"beta schedule {cfg.get('beta_schedule')} not supported by this driver")
    return torch.cumprod(1.0 - betas, 0).tolist()


def _np_round(x):
    return int(round(x))  # Python round is half to even, like numpy's


def dpm_timesteps(n_train, steps):
    """diffusers DPMSolverMultistep `linspace`: round(linspace(0, N-1, n+1)) reversed, last (0) dropped."""
    import numpy as np

    return [int(v) for v in np.linspace(0, n_train - 1, steps + 1).round()[::-1][:-1]]


def ddim_timesteps(n_train, steps, offset):
    """diffusers DDIM `leading`: (arange(n) * (N // n)) reversed + steps_offset."""
    ratio = n_train // steps
    return [k * ratio + offset for k in reversed(range(steps))]


class LogSnrTable:
    """MS-Vid2Vid-XL `logsnr_cosine_interp` (spec 1.9) with zero terminal SNR, float64."""

    def __init__(self, cfg):
        n = cfg.get("num_timesteps", 1000)
        lmin, lmax = cfg.get("logsnr_min", -15.0), cfg.get("logsnr_max", 15.0)
        smin, smax = cfg.get("scale_min", 2.0), cfg.get("scale_max", 4.0)
        u = torch.linspace(1, 0, n, dtype=torch.float64)
        a, b = math.atan(math.exp(-0.5 * lmin)), math.atan(math.exp(-0.5 * lmax))
        lam_cos = -2.0 * torch.log(torch.tan(a + u * (b - a)))
        lam = u * (lam_cos + 2 * math.log(1 / smin)) + (1 - u) * (lam_cos + 2 * math.log(1 / smax))
        sig = torch.sigmoid(-lam).sqrt()
        if cfg.get("zero_terminal_snr", True):
            lo, hi = sig.min(), sig.max()
            sig = lo + (sig - lo) * (1 - lo) / (hi - lo)
        alp = (1 - sig**2).clamp(min=0).sqrt()
        self.n = n
        self.sigmas = sig.tolist()
        self.alphas = alp.tolist()
        self.log_sigmas = [math.log(s / a_) if a_ > 0 else math.inf for s, a_ in zip(self.sigmas, self.alphas)]

    def t_to_sigma(self, t):
        lo, hi = math.floor(t), math.ceil(t)
        w = t - lo
        return math.exp((1 - w) * self.log_sigmas[lo] + w * self.log_sigmas[hi])

    def sigma_to_t(self, sigma):
        ls = math.log(sigma)
        low = max([k for k in range(self.n) if ls - self.log_sigmas[k] >= 0], default=0)
        low = min(low, self.n - 2)
        l0, l1 = self.log_sigmas[low], self.log_sigmas[low + 1]
        w = min(max((l0 - ls) / (l0 - l1), 0.0), 1.0)
        return (1 - w) * low + w * (low + 1)

    def sdedit_sigmas(self, steps, t_max, t_min=0):
        """`trailing` + discard_penultimate_step (spec 1.9): steps+1 timesteps, sigma list with the penultimate dropped."""
        count = steps + 1
        ts = torch.arange(t_max, t_min - 1, -((t_max - t_min + 1) / count), dtype=torch.float64).clamp(t_min, t_max).tolist()
        sig = [self.t_to_sigma(t) for t in ts] + [0.0]
        return sig[:-2] + [0.0] if len(sig) >= 3 else sig


# ---------------------------------------------------------------------------------------------------------------
# the driver
# ---------------------------------------------------------------------------------------------------------------


def to_rgb(video):
    """[1, 3, F, H, W] in [-1, 1] -> uint8 [F, H, W, 3], truncated (spec G5: the official writer truncates)."""
    x = ((video.float() * 0.5 + 0.5).clamp(0, 1) * 255).floor().to(torch.uint8)
    return x[0].permute(1, 2, 3, 0).contiguous()


def stage2_plan(n, window=16, cond=8):
    """(keep_start, keep_count) per window: stage 1 keeps min(16, N); each stage-2 window 8 new frames (last truncated)."""
    segs = [(0, min(window, n))]
    per = window - cond
    windows = 0 if n <= window else -(-(n - window) // per)
    for k in range(1, windows + 1):
        segs.append((cond, min(per, n - (window + (k - 1) * per))))
    return segs


def stage3_chunks(length, chunk, overlap):
    """Regular chunks at stride C-O while they fit, then one chunk aligned to end at L (README deliberate difference)."""
    if length <= chunk:
        return [(0, length)]
    starts = list(range(0, length - chunk + 1, chunk - overlap))
    if starts[-1] + chunk < length:
        starts.append(length - chunk)
    return [(s, s + chunk) for s in starts]


class Driver:
    def __init__(self, model_dir, perturb=""):
        self.dir = model_dir
        with open(os.path.join(model_dir, "manifest.json")) as f:
            self.manifest = json.load(f)
        self.files = {c["role"]: c["file"] for c in self.manifest["components"]}
        self.mods = {}
        for role in ("text_encoder", "apm_image_encoder", "vae_decoder", "unet_stage1", "unet_stage2",
                     "enhancer_text_encoder", "enhancer_unet", "enhancer_vae_encoder", "enhancer_vae_decoder"):
            self.mods[role] = torch.jit.load(os.path.join(model_dir, self.files[role]), map_location="cpu").eval()
        self.tok = {}
        for role, entry in self.manifest["tokenizers"].items():
            with open(os.path.join(model_dir, entry["file"]), encoding="utf-8") as f:
                model = json.load(f)["model"]
            with open(os.path.join(model_dir, entry["config_file"]), encoding="utf-8") as f:
                pad_token = json.load(f)["pad_token"]
            tok = ClipBPE(model["vocab"], [tuple(m) for m in model["merges"]], pad_token, entry["max_length"])
            assert (tok.bos_id, tok.eos_id, tok.pad_id) == (entry["bos_id"], entry["eos_id"], entry["pad_id"])
            self.tok[role] = tok
        self.d = self.manifest["defaults"]
        self.sched = self.manifest["schedulers"]
        self.perturb = set(p for p in perturb.split(",") if p)

    # -- helpers --------------------------------------------------------------------------------------------

    def encode_text(self, role, text):
        ids = torch.tensor([self.tok[role].encode(text)], dtype=torch.int64)
        return self.mods[role](ids)

    def text_pair(self, role, prompt, negative):
        """[uncond; cond] = [negative; prompt], each encoded on its own (batch 1)."""
        return torch.cat([self.encode_text(role, negative), self.encode_text(role, prompt)], 0)

    def guided(self, unet, x, t, extra, w, rescale=0.0):
        out = unet(torch.cat([x, x], 0), torch.full((2,), float(t)), *extra)
        u, c = out.chunk(2)
        if "cfg_order" in self.perturb:  # test hook: the halves swapped (a CFG-order bug)
            u, c = c, u
        g = u + w * (c - u)
        if rescale > 0 and "no_rescale" not in self.perturb:  # test hook: guidance rescale dropped
            g = g * (rescale * c.std() / (g.std() + 1e-12) + (1 - rescale))
        return g

    # -- stage 1: DPM-Solver++(2M) --------------------------------------------------------------------------

    def stage1(self, ctx, seed, steps, w):
        d1 = self.d["stage1"]
        lat_hw = (d1["height"] // 8, d1["width"] // 8)
        x = cpu_randn((1, 4, d1["num_frames"]) + lat_hw, seed)
        cfg = self.sched[d1["scheduler"]]["config"]
        ac = alphas_cumprod(cfg)
        ts = dpm_timesteps(cfg.get("num_train_timesteps", 1000), steps)
        if "timestep" in self.perturb:  # test hook: every stage-1 timestep off by 20
            ts = [t - 20 for t in ts]
        # VE sigma sqrt((1 - a)/a) per timestep, then the final sigma 0; VP alpha = 1/sqrt(s^2+1), sigma_vp = s*alpha
        ve = [math.sqrt((1 - ac[t]) / ac[t]) for t in ts] + [0.0]
        alpha = [1 / math.sqrt(s * s + 1) for s in ve]
        svp = [s * a for s, a in zip(ve, alpha)]
        lam = [math.log(a) - math.log(s) if s > 0 else math.inf for a, s in zip(alpha, svp)]
        unet = self.mods["unet_stage1"]
        m_prev = None
        n = len(ts)
        for i, t in enumerate(ts):
            eps = self.guided(unet, x, t, [ctx], w)
            m0 = (x - svp[i] * eps) / alpha[i]  # data prediction x_theta
            last = i == n - 1
            if ve[i + 1] == 0:  # lower_order_final with final sigma 0: the jump to sigma = 0 gives x0
                x = m0
            else:
                h = lam[i + 1] - lam[i]
                phi = math.expm1(-h)  # e^{-h} - 1
                first = m_prev is None or (last and n < 15)
                if first:
                    x = (svp[i + 1] / svp[i]) * x - alpha[i + 1] * phi * m0
                else:
                    r = (lam[i] - lam[i - 1]) / h
                    D1 = (m0 - m_prev) / r
                    x = (svp[i + 1] / svp[i]) * x - alpha[i + 1] * phi * m0 - 0.5 * alpha[i + 1] * phi * D1
            m_prev = m0
        return self.mods["vae_decoder"](x).clamp(-1, 1)

    # -- stage 2: one DDIM window ---------------------------------------------------------------------------

    def stage2_window(self, ctx, cond8, gen, steps, w, eta):
        d2 = self.d["stage2"]
        cfg = self.sched[d2["scheduler"]]["config"]
        ac = alphas_cumprod(cfg)
        n_train = cfg.get("num_train_timesteps", 1000)
        final_ac = 1.0 if cfg.get("set_alpha_to_one", True) else ac[0]
        _, _, _, H, W = cond8.shape
        fr = d2["window_frames"]
        x = torch.randn((1, 4, fr, H // 8, W // 8), generator=gen)
        cond2 = torch.cat([cond8, cond8], 0)
        unet = self.mods["unet_stage2"]
        for t in ddim_timesteps(n_train, steps, cfg.get("steps_offset", 0)):
            eps = self.guided(unet, x, t, [ctx, cond2], w)
            a_t = ac[t]
            prev = t - n_train // steps
            a_p = ac[prev] if prev >= 0 else final_ac
            x0 = (x - math.sqrt(1 - a_t) * eps) / math.sqrt(a_t)  # eq. 12 "predicted x0"
            std = eta * math.sqrt((1 - a_p) / (1 - a_t)) * math.sqrt(1 - a_t / a_p)  # eq. 16
            x_prev = math.sqrt(a_p) * x0 + math.sqrt(max(0.0, 1 - a_p - std * std)) * eps
            if eta > 0:
                # diffusers' T2V pipeline steps on [B*F, C, H, W]: the noise is drawn in that layout
                raw = torch.randn((fr, 4, H // 8, W // 8), generator=gen)
                xi = raw.reshape(1, fr, 4, H // 8, W // 8).permute(0, 2, 1, 3, 4)
                if "noise_layout" in self.perturb:  # test hook: the same draw read as [1, C, F, H, W] (not folded)
                    xi = raw.reshape(1, 4, fr, H // 8, W // 8)
                x_prev = x_prev + std * xi
            x = x_prev
        return self.mods["vae_decoder"](x).clamp(-1, 1)

    # -- stage 3 --------------------------------------------------------------------------------------------

    def stage3(self, prompt, preview_u8, seeds, steps, chunk_frames=None, overlap_frames=None, layout="pad"):
        d3 = self.d["stage3"]
        chunk_frames = chunk_frames or d3["chunk_frames"]
        overlap_frames = d3["overlap_frames"] if overlap_frames is None else overlap_frames
        size, canvas_w = d3["height"], d3["canvas_width"]
        out_w = max(canvas_w, size) if layout == "pad" else size
        nfr, h, w = preview_u8.shape[0], preview_u8.shape[1], preview_u8.shape[2]
        post = torch.Generator().manual_seed(seeds["stage3"])
        enc = self.mods["enhancer_vae_encoder"]
        parts = []
        for s in range(0, nfr, 8):  # encode batches of 8 frames; posterior noise drawn per batch in order
            u8 = preview_u8[s : s + 8]
            v = u8.permute(3, 0, 1, 2).unsqueeze(0).float() / 127.5 - 1.0  # [1, 3, n, h, w] in [-1, 1]
            n = v.shape[2]
            if (h, w) != (size, size):
                flat = v.permute(0, 2, 1, 3, 4).reshape(n, 3, h, w)
                flat = F.interpolate(flat, size=(size, size), mode="bicubic", align_corners=False, antialias=True)
                v = flat.reshape(1, n, 3, size, size).permute(0, 2, 1, 3, 4)
            if out_w > size:
                left = (out_w - size) // 2
                v = F.pad(v, (left, out_w - size - left, 0, 0), value=-1.0)
            mean, std = enc(v.contiguous())
            parts.append(mean + std * torch.randn(mean.shape, generator=post))  # posterior sample (G6)
        lat = torch.cat(parts, 2)
        table = LogSnrTable(self.sched[d3["scheduler"]]["config"])
        t0 = d3["noise_level"] - 1
        sig = table.sdedit_sigmas(steps, t0)
        L = lat.shape[2]
        frame_shape = (lat.shape[0], lat.shape[1], 1, lat.shape[3], lat.shape[4])
        field = lambda stream: torch.cat([cpu_randn(frame_shape, shared_noise_seed(seeds["stage3"], stream, f)) for f in range(L)], 2)
        z = table.alphas[t0] * lat + table.sigmas[t0] * field(0)  # SDEdit forward noising, one field per video
        caption = prompt + d3["prompt_suffix"] + ""
        ctx = self.text_pair("enhancer_text_encoder", caption, "")
        unet = self.mods["enhancer_unet"]
        w, rescale = d3["guidance_scale"], d3["guidance_rescale"]
        chunks = stage3_chunks(L, chunk_frames, overlap_frames)
        rng = Pcg32(seeds["blend"])

        def denoise(x, sigma):
            # cuts: one draw per boundary, in order; chunk k owns [p_k, p_{k+1})
            pos = [0]
            for k in range(1, len(chunks)):
                start, prev_end = chunks[k][0], chunks[k - 1][1]
                ov = prev_end - start
                lo = max(0, pos[-1] + 1 - start) if ov > 0 else 0
                hi = ov - 1 if ov > 0 else 0
                r = lo + rng.uniform_int(hi - lo + 1)
                if "blend_cut" in self.perturb:  # test hook: a different cut inside the same overlap
                    r = lo + (r - lo + 1) % (hi - lo + 1)
                pos.append(start + r)
            pos.append(L)
            t = round(table.sigma_to_t(sigma))  # half to even
            c_in = 1 / math.sqrt(sigma * sigma + 1)
            a_t, s_t = table.alphas[t], table.sigmas[t]
            pieces = []
            for k, (cs, ce) in enumerate(chunks):
                x_in = x[:, :, cs:ce] * c_in
                v = self.guided(unet, x_in, t, [ctx], w, rescale)
                x0 = a_t * x_in - s_t * v  # v-prediction
                pieces.append(x0[:, :, pos[k] - cs : pos[k + 1] - cs])
            return torch.cat(pieces, 2)

        x = z * sig[0]  # x = z * sigma_0 as the official code (G12)
        old, h_last = None, None
        for i in range(len(sig) - 1):
            den = denoise(x, sig[i])
            if sig[i + 1] == 0:
                x = den
            else:
                h = math.log(sig[i]) - math.log(sig[i + 1])  # eta = 1
                x = (sig[i + 1] / sig[i]) * math.exp(-h) * x + (-math.expm1(-2 * h)) * den
                if old is not None:
                    x = x + 0.5 * (-math.expm1(-2 * h)) * (h / h_last) * (den - old)
                x = x + field(i + 1) * (sig[i + 1] * math.sqrt(-math.expm1(-2 * h)))
                h_last = h
            old = den
        dec = self.mods["enhancer_vae_decoder"]
        frames = [to_rgb(dec(x[:, :, s : s + 8].contiguous())) for s in range(0, L, 8)]
        return torch.cat(frames, 0)

    # -- the whole run --------------------------------------------------------------------------------------

    def generate(self, prompt, negative, n, seed, steps1, steps2, steps3, enhance, chunk_frames=None, overlap_frames=None):
        d1, d2 = self.d["stage1"], self.d["stage2"]
        seeds = derived_seeds(seed)
        gen2 = torch.Generator().manual_seed(seeds["stage2"])
        ctx77 = self.text_pair("text_encoder", prompt, negative)
        video = self.stage1(ctx77, seeds["stage1"], steps1, d1["guidance_scale"])
        anchor = video[:, :, 0]  # [1, 3, H, W], frame 0 of stage 1 forever
        tokens = self.mods["apm_image_encoder"](torch.cat([torch.zeros_like(anchor), anchor], 0))  # [grey; anchor]
        ctx93 = torch.cat([ctx77, tokens], 1)
        plan = stage2_plan(n, d2["window_frames"], d2["conditioning_frames"])
        preview = [to_rgb(video)[: plan[0][1]]]
        marks = [time.perf_counter()]  # stage 1 done (its frames exist), as the Node side's first preview frame
        cond8 = video[:, :, -d2["conditioning_frames"] :]
        for keep_start, keep_count in plan[1:]:
            win = self.stage2_window(ctx93, cond8, gen2, steps2, d2["guidance_scale"], d2["eta"])
            cond8 = win[:, :, -d2["conditioning_frames"] :]
            preview.append(to_rgb(win[:, :, keep_start : keep_start + keep_count]))
        preview = torch.cat(preview, 0)
        marks.append(time.perf_counter())  # stage 2 done, as the Node side's last preview frame
        final = self.stage3(prompt, preview, seeds, steps3, chunk_frames, overlap_frames) if enhance else None
        self.marks = marks
        return preview, final


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--model-dir", default=os.path.join(REPO, "models", "tiny"))
    p.add_argument("--prompt", default="a red circle bouncing to the right on a blue background")
    p.add_argument("--negative", default="")
    p.add_argument("--frames", type=int, default=20)
    p.add_argument("--seed", type=int, default=33)
    p.add_argument("--steps1", type=int, default=2)
    p.add_argument("--steps2", type=int, default=2)
    p.add_argument("--steps3", type=int, default=2)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--no-enhance", action="store_true")
    p.add_argument("--chunk-frames", type=int, default=None, help="stage-3 chunk (default: manifest)")
    p.add_argument("--overlap-frames", type=int, default=None, help="stage-3 overlap (default: manifest)")
    p.add_argument("--perturb", default="",
                   help="test hook (deliberate bugs): comma list of timestep, cfg_order, noise_layout, no_rescale, blend_cut")
    p.add_argument("--out", default=None)
    p.add_argument("--serve", action="store_true")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    # As the Node addon by default: no graph-executor optimization passes (same kernels, no fusion).
    torch._C._set_graph_executor_optimize(False)
    t0 = time.perf_counter()
    drv = Driver(a.model_dir, a.perturb)
    load_s = time.perf_counter() - t0

    def run(req):
        o = {**vars(a), **req}  # per-request overrides (server mode): frames, seed, steps1..3, perturb, out
        drv.perturb = set(x for x in str(o["perturb"]).split(",") if x)
        with torch.inference_mode():
            t = time.perf_counter()
            preview, final = drv.generate(o["prompt"], o["negative"], o["frames"], o["seed"], o["steps1"], o["steps2"],
                                          o["steps3"], not o["no_enhance"], o["chunk_frames"], o["overlap_frames"])
            secs = time.perf_counter() - t
        out = o["out"]
        if out:
            os.makedirs(out, exist_ok=True)
            with open(os.path.join(out, "preview.rgb"), "wb") as f:
                f.write(preview.numpy().tobytes())
            if final is not None:
                with open(os.path.join(out, "final.rgb"), "wb") as f:
                    f.write(final.numpy().tobytes())
        res = {"seconds": secs, "stage_marks": [m - t for m in drv.marks], "load_seconds": load_s, "threads": torch.get_num_threads(), "torch": torch.__version__,
               "preview_shape": list(preview.shape), "final_shape": None if final is None else list(final.shape)}
        print(json.dumps(res), flush=True)

    if not a.serve:
        run({})
        return
    print(json.dumps({"ready": True, "load_seconds": load_s, "threads": torch.get_num_threads()}), flush=True)
    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        req = json.loads(line)
        if req.get("quit"):
            break
        try:
            run(req)
        except Exception as e:  # report and keep serving
            print(json.dumps({"error": f"{type(e).__name__}: {e}"}), flush=True)


if __name__ == "__main__":
    main()
