#!/usr/bin/python3
"""Golden values for the TypeScript diffusion core (lib/schedulers, lib/noise-source.ts).

Everything here is written from the published equations (DDIM: Song et al. 2021 eq. 12/16; DPM-Solver++:
Lu et al. 2022 first-order update and Algorithm 2; DPM-Solver++(2M) SDE in sigma form; the MS-Vid2Vid-XL
logsnr_cosine_interp schedule of spec §1.9) and the timestep rules of diffusers 0.27 as documented in the
spec. It deliberately does NOT import diffusers or k-diffusion. numpy supplies linspace/arange/round
semantics (the reference semantics for timesteps); torch supplies only the seeded CPU normal generator.

All loops run in float64 on a deterministic dummy sample with a deterministic dummy model:
    model(x, t) = x * t / (t + 1)
Noise (where used) is torch.randn(..., generator) in float32, then converted to float64, exactly as the
TypeScript side draws it (Tensor.randn / Generator.randn generate on CPU, then convert).

Run (Debian python with torch 1.13):
    /usr/bin/python3 models/golden/make_sampler_golden.py
Writes test/fixtures/golden/samplers.json (and prints a summary).
"""
import json
import math
import os
import sys

import numpy as np
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT = os.path.join(ROOT, "test", "fixtures", "golden", "samplers.json")
torch.set_default_dtype(torch.float64)

# ---------------------------------------------------------------- schedules (VP, discrete)

def betas_for(schedule, n=1000, start=0.0001, end=0.02):
    if schedule == "linear":
        return torch.linspace(start, end, n, dtype=torch.float64)
    if schedule == "scaled_linear":
        return torch.linspace(start ** 0.5, end ** 0.5, n, dtype=torch.float64) ** 2
    if schedule == "squaredcos_cap_v2":
        abar = lambda u: math.cos((u + 0.008) / 1.008 * math.pi / 2) ** 2
        return torch.tensor([min(1 - abar((i + 1) / n) / abar(i / n), 0.999) for i in range(n)], dtype=torch.float64)
    raise ValueError(schedule)


def alphas_cumprod(betas):
    out, acc = [], 1.0
    for b in betas.tolist():
        acc *= 1.0 - b
        out.append(acc)
    return torch.tensor(out, dtype=torch.float64)


def ddim_timesteps(n_train, n, spacing, offset):
    if spacing == "linspace":
        return np.linspace(0, n_train - 1, n).round()[::-1].astype(np.int64).tolist()
    if spacing == "leading":
        r = n_train // n
        return ((np.arange(0, n) * r).round()[::-1].astype(np.int64) + offset).tolist()
    if spacing == "trailing":
        return (np.round(np.arange(n_train, 0, -n_train / n)).astype(np.int64) - 1).tolist()
    raise ValueError(spacing)


def dpm_timesteps(n_train, n, spacing, offset):
    if spacing == "linspace":
        return np.linspace(0, n_train - 1, n + 1).round()[::-1][:-1].astype(np.int64).tolist()
    if spacing == "leading":
        r = n_train // (n + 1)
        return ((np.arange(0, n + 1) * r).round()[::-1][:-1].astype(np.int64) + offset).tolist()
    if spacing == "trailing":
        return (np.arange(n_train, 0, -n_train / n).round().astype(np.int64) - 1).tolist()
    raise ValueError(spacing)

# ---------------------------------------------------------------- stage-3 schedule (spec §1.9)

def logsnr_table(n=1000, lmin=-15.0, lmax=15.0, smin=2.0, smax=4.0):
    u = np.linspace(1, 0, n)
    a, b = math.atan(math.exp(-0.5 * lmin)), math.atan(math.exp(-0.5 * lmax))
    lam_cos = -2 * np.log(np.tan(a + u * (b - a)))
    lam = u * (lam_cos + 2 * math.log(1 / smin)) + (1 - u) * (lam_cos + 2 * math.log(1 / smax))
    sig = np.sqrt(1 / (1 + np.exp(lam)))
    lo, hi = sig.min(), sig.max()
    sig = lo + (sig - lo) * (1 - lo) / (hi - lo)
    alp = np.sqrt(np.maximum(0, 1 - sig ** 2))
    with np.errstate(divide="ignore"):
        log_ve = np.where(alp > 0, np.log(sig / np.where(alp > 0, alp, 1)), np.inf)
    return sig, alp, log_ve


def t_to_sigma(log_ve, t):
    lo, hi = math.floor(t), math.ceil(t)
    w = t - lo
    v = (1 - w) * log_ve[lo] + w * log_ve[hi]
    return math.exp(v) if math.isfinite(v) else math.inf


def sigma_to_t(log_ve, sigma):
    ls = math.log(sigma)
    ks = [k for k in range(len(log_ve)) if ls - log_ve[k] >= 0]
    low = min(ks[-1] if ks else 0, len(log_ve) - 2)
    w = min(max((log_ve[low] - ls) / (log_ve[low] - log_ve[low + 1]), 0.0), 1.0)
    return (1 - w) * low + w * (low + 1)


def sdedit_sigmas(log_ve, steps, t_max, t_min=0):
    count = steps + 1                                  # discard_penultimate_step
    step = -((t_max - t_min + 1) / count)
    length = math.ceil((t_min - 1 - t_max) / step)
    ts = [t_max + k * step for k in range(length)]     # torch.arange semantics, in float64
    sig = [t_to_sigma(log_ve, t) for t in ts] + [0.0]
    return ts[:-1], sig[:-2] + sig[-1:]

# ---------------------------------------------------------------- dummies

def dummy_sample_4d():
    """diffusers' dummy_sample_deter: arange(768) laid out as (C,H,W,B), /768, permuted to (B,C,H,W)."""
    n = 4 * 3 * 8 * 8
    return (torch.arange(n, dtype=torch.float64).reshape(3, 8, 8, 4) / n).permute(3, 0, 1, 2).contiguous()


def dummy_sample_5d():
    """(1, 4, 6, 4, 4) video latent: arange / n − 0.5, row-major."""
    n = 4 * 6 * 4 * 4
    return (torch.arange(n, dtype=torch.float64) / n - 0.5).reshape(1, 4, 6, 4, 4)


def dummy_model(x, t):
    return x * t / (t + 1)


def randn_f32(shape, seed_or_gen):
    g = seed_or_gen if isinstance(seed_or_gen, torch.Generator) else torch.Generator().manual_seed(seed_or_gen)
    return torch.randn(shape, generator=g, dtype=torch.float32).to(torch.float64)

# ---------------------------------------------------------------- shared noise seeds (lib/noise-source.ts)

M64 = (1 << 64) - 1


def splitmix64(z):
    z = (z + 0x9E3779B97F4A7C15) & M64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
    return z ^ (z >> 31)


def frame_seed(seed, stream, frame):
    return splitmix64(splitmix64(splitmix64(seed) ^ stream) ^ frame) & ((1 << 63) - 1)


def shared_noise(seed, stream, shape):
    b, c, f, h, w = shape
    return torch.cat([randn_f32((b, c, 1, h, w), frame_seed(seed, stream, k)) for k in range(f)], dim=2)

# ---------------------------------------------------------------- samplers from the equations

def pred_x0_eps(ptype, x, out, a):
    """a = ᾱ_t. Returns (x̂₀, ε̂)."""
    sa, sb = math.sqrt(a), math.sqrt(1 - a)
    if ptype == "epsilon":
        return (x - sb * out) / sa, out
    if ptype == "sample":
        return out, (x - sa * out) / sb
    if ptype == "v_prediction":
        return sa * x - sb * out, sa * out + sb * x
    raise ValueError(ptype)


def run_ddim(cfg, n, eta, seed=None, clip=None):
    ac = alphas_cumprod(betas_for(cfg["beta_schedule"], 1000, cfg["beta_start"], cfg["beta_end"])).tolist()
    ts = ddim_timesteps(1000, n, cfg["spacing"], cfg["offset"])
    final = 1.0 if cfg["set_alpha_to_one"] else ac[0]
    gen = torch.Generator().manual_seed(seed) if seed is not None else None
    x = dummy_sample_4d()
    trace = []
    for t in ts:
        out = dummy_model(x, t)
        a = ac[t]
        prev = t - 1000 // n
        ap = ac[prev] if prev >= 0 else final
        x0, eps = pred_x0_eps(cfg["prediction_type"], x, out, a)
        if clip is not None:
            x0 = x0.clamp(-clip, clip)
        std = eta * math.sqrt(max(0.0, (1 - ap) / (1 - a) * (1 - a / ap)))        # eq. 16
        x = math.sqrt(ap) * x0 + math.sqrt(max(0.0, 1 - ap - std ** 2)) * eps      # eq. 12
        if eta > 0:
            x = x + std * randn_f32(tuple(x.shape), gen)
        trace.append([x.sum().item(), x0.sum().item()])
    return ts, x, trace


def run_dpm(cfg, n, final_sigmas="zero"):
    ac = alphas_cumprod(betas_for(cfg["beta_schedule"], 1000, cfg["beta_start"], cfg["beta_end"])).tolist()
    ts = dpm_timesteps(1000, n, cfg["spacing"], cfg["offset"])
    ve = [math.sqrt((1 - ac[t]) / ac[t]) for t in ts] + [0.0 if final_sigmas == "zero" else math.sqrt((1 - ac[0]) / ac[0])]
    alpha = [1 / math.sqrt(s * s + 1) for s in ve]
    sig = [s * a for s, a in zip(ve, alpha)]
    lam = [math.log(a) - math.log(s) if s > 0 else math.inf for a, s in zip(alpha, sig)]
    x = dummy_sample_4d()
    m1 = None
    trace = []
    for i, t in enumerate(ts):
        out = dummy_model(x, t)
        x0, _ = pred_x0_eps(cfg["prediction_type"], x, out, alpha[i] ** 2)
        last = i == len(ts) - 1
        first_order = m1 is None or (last and ((n < 15) or final_sigmas == "zero"))
        if ve[i + 1] == 0:
            xn = x0
        else:
            h = lam[i + 1] - lam[i]
            if first_order:   # DPM-Solver++ first order: x_t = σ_t/σ_s x − α_t (e^{−h} − 1) x̂₀
                xn = (sig[i + 1] / sig[i]) * x - alpha[i + 1] * (math.exp(-h) - 1) * x0
            else:             # Algorithm 2 (2M), midpoint form
                r0 = (lam[i] - lam[i - 1]) / h
                d1 = (x0 - m1) / r0
                xn = (sig[i + 1] / sig[i]) * x - alpha[i + 1] * (math.exp(-h) - 1) * x0 \
                    - 0.5 * alpha[i + 1] * (math.exp(-h) - 1) * d1
        m1 = x0
        x = xn
        trace.append([x.sum().item(), x0.sum().item()])
    return ts, ve, x, trace


def stage3_denoiser(sig_vp, alp, log_ve):
    def denoise(x, sigma):
        c_in = 1 / math.sqrt(sigma * sigma + 1)
        t = round(sigma_to_t(log_ve, sigma))        # Python round = half to even, like torch.round
        x_in = x * c_in
        v = dummy_model(x_in, t)
        return alp[t] * x_in - sig_vp[t] * v, t
    return denoise


def run_sde(sigmas, denoise, eta, seed=None, shape=None, start_scale=None):
    x = dummy_sample_5d() * (start_scale if start_scale is not None else 1.0)
    old, h_last = None, None
    trace, ts_used = [], []
    for i in range(len(sigmas) - 1):
        s, sn = sigmas[i], sigmas[i + 1]
        d, t = denoise(x, s)
        ts_used.append(t)
        if sn == 0:
            x = d
        else:
            h = math.log(s) - math.log(sn)
            eh = eta * h
            x = (sn / s) * math.exp(-eh) * x + (1 - math.exp(-h - eh)) * d
            if old is not None:
                x = x + 0.5 * (1 - math.exp(-h - eh)) * (h / h_last) * (d - old)
            if eta > 0:
                x = x + shared_noise(seed, i + 1, shape) * sn * math.sqrt(1 - math.exp(-2 * eh))
            h_last = h
        old = d
        trace.append([x.sum().item(), d.sum().item()])
    return x, trace, ts_used


def run_euler(sigmas, denoise):
    x = dummy_sample_5d() * sigmas[0]
    trace = []
    for i in range(len(sigmas) - 1):
        s, sn = sigmas[i], sigmas[i + 1]
        d, _ = denoise(x, s)
        x = x + (x - d) / s * (sn - s)
        trace.append([x.sum().item(), d.sum().item()])
    return x, trace


def flat(x):
    return [float(v) for v in x.reshape(-1).tolist()]


PROBE_STRIDE = 37


def summary(x):
    """sum, Σ|x|, Σx² and every PROBE_STRIDE-th element (row-major) of a final sample."""
    v = flat(x)
    return {"sum": math.fsum(v), "abs_sum": math.fsum(abs(a) for a in v), "sq_sum": math.fsum(a * a for a in v),
            "probe_stride": PROBE_STRIDE, "probe": v[::PROBE_STRIDE], "numel": len(v)}


def main():
    sd = dict(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012)
    golden = {"generator": "models/golden/make_sampler_golden.py", "torch": torch.__version__, "numpy": np.__version__}

    golden["timesteps"] = {
        "ddim_leading_50_offset1": ddim_timesteps(1000, 50, "leading", 1),
        "ddim_linspace_25": ddim_timesteps(1000, 25, "linspace", 0),
        "ddim_trailing_30": ddim_timesteps(1000, 30, "trailing", 0),
        "ddim_leading_7_offset0": ddim_timesteps(1000, 7, "leading", 0),
        "dpm_linspace_50": dpm_timesteps(1000, 50, "linspace", 0),
        "dpm_linspace_9": dpm_timesteps(1000, 9, "linspace", 0),
        "dpm_leading_20_offset1": dpm_timesteps(1000, 20, "leading", 1),
        "dpm_trailing_25": dpm_timesteps(1000, 25, "trailing", 0),
    }
    idx = [0, 1, 250, 499, 998, 999]
    golden["alphas_cumprod"] = {"index": idx}
    for name, (s, e) in {"linear": (0.0001, 0.02), "scaled_linear": (0.00085, 0.012), "squaredcos_cap_v2": (0, 0)}.items():
        ac = alphas_cumprod(betas_for(name, 1000, s, e))
        golden["alphas_cumprod"][name] = [ac[i].item() for i in idx]

    sig_vp, alp, log_ve = logsnr_table()
    t3, s3 = sdedit_sigmas(log_ve, 30, 599)
    tidx = [0, 1, 300, 599, 998, 999]
    golden["logsnr"] = {
        "index": tidx,
        "sigmas_vp": [float(sig_vp[i]) for i in tidx],
        "alphas": [float(alp[i]) for i in tidx],
        "sigma_ve_at": {str(t): t_to_sigma(log_ve, t) for t in [0, 300, 599, 18.5, 412.25]},
        "t_at_sigma": {repr(s): sigma_to_t(log_ve, s) for s in [0.5, 1.0, 2.0, 4.0, 0.01]},
        "sdedit_30_from_599": {"timesteps": t3, "sigmas": s3},
    }

    loops = {}
    base = dict(sd, spacing="leading", offset=1, set_alpha_to_one=False)
    for ptype in ["epsilon", "v_prediction", "sample"]:
        ts, x, tr = run_ddim(dict(base, prediction_type=ptype), 10, 0.0)
        loops["ddim_eta0_" + ptype] = {"timesteps": ts, "final": summary(x), "trace": tr}
    ts, x, tr = run_ddim(dict(base, prediction_type="epsilon", set_alpha_to_one=True, spacing="trailing", offset=0), 10, 0.0)
    loops["ddim_eta0_trailing_alpha1"] = {"timesteps": ts, "final": summary(x), "trace": tr}
    ts, x, tr = run_ddim(dict(base, prediction_type="epsilon"), 10, 0.0, clip=0.25)
    loops["ddim_eta0_clip"] = {"timesteps": ts, "final": summary(x), "trace": tr}
    ts, x, tr = run_ddim(dict(base, prediction_type="epsilon"), 10, 1.0, seed=33)
    loops["ddim_eta1_seed33"] = {"timesteps": ts, "final": summary(x), "trace": tr, "seed": 33}

    dpm = dict(sd, spacing="linspace", offset=1)
    for ptype in ["epsilon", "v_prediction"]:
        for n in [10, 20]:
            ts, ve, x, tr = run_dpm(dict(dpm, prediction_type=ptype), n)
            loops[f"dpm_{ptype}_{n}"] = {"timesteps": ts, "sigmas": ve, "final": summary(x), "trace": tr}
    ts, ve, x, tr = run_dpm(dict(dpm, prediction_type="epsilon"), 20, final_sigmas="sigma_min")
    loops["dpm_epsilon_20_sigma_min"] = {"timesteps": ts, "sigmas": ve, "final": summary(x), "trace": tr}

    den = stage3_denoiser(sig_vp, alp, log_ve)
    shape = (1, 4, 6, 4, 4)
    x, tr, used = run_sde(s3, den, 0.0, start_scale=s3[0])
    loops["sde_eta0_stage3"] = {"sigmas": s3, "model_timesteps": used, "final": summary(x), "trace": tr}
    x, tr, used = run_sde(s3, den, 1.0, seed=0, shape=shape, start_scale=s3[0])
    loops["sde_eta1_stage3_seed0"] = {"sigmas": s3, "model_timesteps": used, "final": summary(x), "trace": tr, "seed": 0}
    x, tr = run_euler(s3, den)
    loops["euler_stage3"] = {"sigmas": s3, "final": summary(x), "trace": tr}
    golden["loops"] = loops

    golden["shared_noise"] = {
        "seeds": {f"{s}:{st}:{f}": str(frame_seed(s, st, f)) for s in [0, 7] for st in [0, 1, 30] for f in [0, 5, 71]},
        "sum_seed0_stream1_frames6": shared_noise(0, 1, shape).sum().item(),
        "first_values_seed0_stream1": flat(shared_noise(0, 1, shape))[:8],
    }

    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w") as f:
        json.dump(golden, f, indent=1)
        f.write("\n")
    print(f"wrote {OUT}: {len(loops)} loops", file=sys.stderr)


if __name__ == "__main__":
    main()
