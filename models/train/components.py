"""One trainer per component. Each writes ``<out>/<name>.pt`` when done (skipped if present) and checkpoints to
``<out>/ckpt_<name>.pt`` every ``ckpt_every`` steps, so a killed run resumes where it stopped.

Step counts are fixed (reproducible); ``budget_s`` is only a safety stop that is logged when it triggers.
"""
import math
import os
from typing import Dict, Optional

import numpy as np
import torch
import torch.nn.functional as F

from ..configs_aux import build_aux_model
from . import common as C


def _finish_path(out: str, name: str) -> str:
    return os.path.join(out, f"{name}.pt")


def load_vae(out: str):
    vae = build_aux_model("vae", C.NET_CONFIG)
    vae.load_state_dict(torch.load(_finish_path(out, "vae"), map_location="cpu"))
    return vae.eval().requires_grad_(False)


@torch.no_grad()
def encode(vae, video: torch.Tensor, sample: bool = True) -> torch.Tensor:
    mean, std = vae.video_encoder()(video)
    return mean + std * torch.randn_like(std) if sample else mean


# ------------------------------------------------------------------------------------------------ VAE
def jitter_objects(rng: np.random.Generator, x: torch.Tensor, m: torch.Tensor, amount: float) -> torch.Tensor:
    """``x`` [B, 3, H, W] in [-1, 1] with one random offset per frame and channel, ``U(-amount, amount)``, added to
    the object's pixels in proportion to their coverage ``m`` [B, 1, H, W], clamped (session 17): objects in colours
    off the world's palette, so that a decoder cannot learn to snap every object back to a palette colour."""
    if amount <= 0:
        return x
    d = torch.from_numpy(rng.uniform(-amount, amount, size=(x.shape[0], 3, 1, 1)).astype(np.float32)).to(x.device)
    return (x + m * d).clamp(-1.0, 1.0)


def edge_l1(rec: torch.Tensor, x: torch.Tensor, wgt: torch.Tensor) -> torch.Tensor:
    """Weighted L1 between the horizontal and vertical pixel differences of ``rec`` and ``x`` [B, 3, H, W] (a
    gradient-difference loss, Mathieu et al. 2016, "Deep multi-scale video prediction beyond mean square error"
    §3.2): zero for an exact copy (or one offset by a constant), and it charges a rounded corner along the two
    edges it cuts short, where a blurred one pays little L1. ``wgt`` [B, 1, H, W]: each difference takes the
    larger weight of its two pixels."""
    out = 0.0
    for dim in (2, 3):
        n = x.shape[dim] - 1
        d_rec = rec.narrow(dim, 1, n) - rec.narrow(dim, 0, n)
        d_x = x.narrow(dim, 1, n) - x.narrow(dim, 0, n)
        w = torch.maximum(wgt.narrow(dim, 1, n), wgt.narrow(dim, 0, n))
        out = out + ((d_rec - d_x).abs() * w).mean() / w.mean()
    return out


def _with_edge(loss: torch.Tensor, logged: Dict[str, float], rec: torch.Tensor, x: torch.Tensor,
               wgt: torch.Tensor, edge_weight: float) -> torch.Tensor:
    """``loss`` + ``edge_weight`` x ``edge_l1`` (logged as ``edge``); ``loss`` itself when the weight is 0."""
    if edge_weight <= 0:
        return loss
    edge = edge_l1(rec, x, wgt)
    logged["edge"] = edge.item()
    return loss + edge_weight * edge


def train_vae(out: str, steps: int = 3500, budget_s: float = 500, seed: int = 1, batch: int = 8,
              lr: float = 2e-3, kl_weight: float = 1e-4, object_weight: float = 8.0, ckpt_every: int = 500,
              stop_at: Optional[int] = None, edge_weight: float = 0.0, jitter: float = 0.0) -> None:
    """Per-frame AutoencoderKL on world frames. Many small steps train this tiny VAE much faster than few big
    ones: each step is ``batch`` random 32x32 crops (3/4 from 64x64 renders, 1/4 from 128x128 renders, the stage-3
    scale; the same VAE serves as the enhancer VAE), every 4th step 4 whole 64x64 frames instead.
    Loss: L1 + MSE (object pixels weighted 1 + object_weight) + kl_weight·KL, plus ``edge_weight`` x ``edge_l1``;
    ``jitter`` > 0 draws the object in off-palette colours (``jitter_objects``). Afterwards the latent scale is folded into quant_conv/post_quant_conv so that
    encoder outputs (x0.18215 inside the module) have unit standard deviation, as the diffusion models expect."""
    final = _finish_path(out, "vae")
    if os.path.exists(final):
        return
    rng = C.seed_all(seed)
    vae = build_aux_model("vae", C.NET_CONFIG)
    with torch.no_grad():  # start nearly deterministic: Adam moves a bias by ~lr per step, too slow to get there
        vae.quant_conv.bias[4:].fill_(-8.0)
    loop = C.TrainLoop(out, "vae", {"vae": vae}, [{"params": list(vae.parameters())}], lr, 50, steps, budget_s,
                       stop_at, rng, ckpt_every=ckpt_every, log_every=100, adam=True)
    enc, dec = vae.encoder, vae.decoder
    n_lo = batch * 3 // 4

    def step():
        if loop.step % 4 == 3:
            x, m = C.to_device(*C.world_frames_masks(rng, 4, 64))
        else:
            lo, lm = C.world_frames_masks(rng, n_lo, 64)
            hi, hm = C.world_frames_masks(rng, batch - n_lo, 128)
            oy, ox, hy, hx = (int(v) for v in rng.integers(0, 33, size=4))
            x = torch.cat([lo[:, :, oy:oy + 32, ox:ox + 32], hi[:, :, 2 * hy:2 * hy + 32, 2 * hx:2 * hx + 32]], 0)
            m = torch.cat([lm[:, :, oy:oy + 32, ox:ox + 32], hm[:, :, 2 * hy:2 * hy + 32, 2 * hx:2 * hx + 32]], 0)
            x, m = C.to_device(x, m)
        x = jitter_objects(rng, x, m, jitter)
        wgt = 1.0 + object_weight * m      # the object is small but it is what the video is about
        mean, logvar = vae.quant_conv(enc(x)).chunk(2, 1)
        logvar = logvar.clamp(-30, 20)
        z = mean + torch.exp(0.5 * logvar) * torch.randn_like(mean)
        rec = dec(vae.post_quant_conv(z))
        l1 = ((rec - x).abs() * wgt).mean() / wgt.mean()
        mse = ((rec - x).pow(2) * wgt).mean() / wgt.mean()
        kl = 0.5 * (mean.pow(2) + logvar.exp() - 1 - logvar).mean()
        logged = {"l1": l1.item(), "mse": mse.item(), "kl": kl.item()}
        return _with_edge(l1 + mse + kl_weight * kl, logged, rec, x, wgt, edge_weight), logged
    loop.run(step)
    step = loop.step
    log = loop.log
    vae.eval()
    # fold the latent scale: mean' = k·mean, logvar' = logvar + 2 ln k, post_quant_conv(z'/k)
    with torch.no_grad():
        x, _, _, _ = C.world_clips(np.random.default_rng(seed + 1000), 16, 8, 64, (0, 600))
        x = C.to_device(x)
        mean, _ = vae.video_encoder()(x)
        k = 1.0 / float(mean.std())
        vae.quant_conv.weight[:4] *= k
        vae.quant_conv.bias[:4] *= k
        vae.quant_conv.bias[4:] += 2 * math.log(k)
        vae.post_quant_conv.weight /= k
        mean2, std2 = vae.video_encoder()(x)
        rec = vae.video_decoder()(mean2)
        log.write(step, note="latent scale folded", k=k, latent_mean=float(mean2.mean()), latent_std=float(mean2.std()),
                  posterior_std=float(std2.mean()), eval_l1=float((rec - x).abs().mean()))
    C.save_final(C.cpu_state(vae), final)


def train_vae_decoder(out: str, steps: int = 4000, budget_s: float = 780, seed: int = 6, batch: int = 6,
                      lr: float = 1e-3, object_weight: float = 8.0, ckpt_every: int = 500,
                      stop_at: Optional[int] = None, edge_weight: float = 0.0, jitter: float = 0.0) -> None:
    """Decoder-only fine-tuning of the trained VAE (-> ``vae_ft.pt``): encoder and quant_conv stay frozen, so the
    latents the diffusion models were trained on do not change; post_quant_conv + decoder learn to reconstruct
    whole frames from the posterior mean (what the pipeline decodes). Every 4th step uses two 128x128 frames
    (the enhancer's scale). Runs on the second core while stage 1 trains. Loss as in ``train_vae`` without KL
    (``edge_weight`` and ``jitter`` as there)."""
    final = _finish_path(out, "vae_ft")
    if os.path.exists(final):
        return
    rng = C.seed_all(seed)
    vae = build_aux_model("vae", C.NET_CONFIG)
    vae.load_state_dict(torch.load(_finish_path(out, "vae"), map_location="cpu"))
    vae.encoder.requires_grad_(False)
    vae.quant_conv.requires_grad_(False)
    params = list(vae.post_quant_conv.parameters()) + list(vae.decoder.parameters())
    loop = C.TrainLoop(out, "vae_ft", {"vae": vae}, [{"params": params}], lr, 20, steps, budget_s, stop_at, rng,
                       ckpt_every=ckpt_every, log_every=100, adam=True)

    def step():
        x, m = C.world_frames_masks(rng, 2, 128) if loop.step % 4 == 3 else C.world_frames_masks(rng, batch, 64)
        x, m = C.to_device(x, m)
        x = jitter_objects(rng, x, m, jitter)
        wgt = 1.0 + object_weight * m
        with torch.no_grad():
            mean, _ = vae.quant_conv(vae.encoder(x)).chunk(2, 1)
        rec = vae.decoder(vae.post_quant_conv(mean))
        l1 = ((rec - x).abs() * wgt).mean() / wgt.mean()
        mse = ((rec - x).pow(2) * wgt).mean() / wgt.mean()
        logged = {"l1": l1.item(), "mse": mse.item()}
        return _with_edge(l1 + mse, logged, rec, x, wgt, edge_weight), logged
    loop.run(step)
    C.save_final(C.cpu_state(vae.eval()), final)


# stages 1 and 2: see stages.py (recipe 2, on precomputed latents)


# ------------------------------------------------------------------------------------------------ stage 3
#: The enhancer's training losses (``enhancer_loss``; ``all.py --enhancer-loss``).
ENHANCER_LOSSES = ("x0", "min_snr")


def _check_enhancer_loss(kind: str) -> None:
    if kind not in ENHANCER_LOSSES:
        raise ValueError(f"enhancer loss must be {' or '.join(ENHANCER_LOSSES)}, not {kind!r}")


def enhancer_loss(x0: torch.Tensor, target: torch.Tensor, alpha: torch.Tensor, sigma: torch.Tensor,
                  kind: str = "x0") -> torch.Tensor:
    """The enhancer's training loss on its x0 estimate: "x0" = plain MSE; "min_snr" = each sample's squared error
    weighted by min(alpha^2 / sigma^2, 5) + 1 (``alpha``, ``sigma`` broadcast per sample), then the mean."""
    _check_enhancer_loss(kind)
    err = (x0 - target) ** 2
    if kind == "min_snr":
        err = err * (torch.clamp((alpha / sigma) ** 2, max=5.0) + 1.0)
    return err.mean()


def train_enhancer(out: str, steps: int = 600, budget_s: float = 840, seed: int = 4, batch: int = 4,
                   frames: int = 4, lr: float = 5e-4, p_uncond: float = 0.1, ckpt_every: int = 100, stop_at: Optional[int] = None,
                   loss: str = "x0", init: Optional[str] = None) -> None:
    """Vid2VidUNet + its tiny OpenCLIP text encoder as a 2x SDEdit enhancer: latents of bicubic-upsampled 64x64
    renders are noised to t in [0, 640) on the logsnr_cosine_interp schedule and the v-parameterised model is
    trained so that its x0 estimate (alpha·x_t - sigma·v) is the latent of the true 128x128 render. Prompts get the
    pipeline's ', ' suffix and pad id 0 (open_clip).

    ``loss``: "x0" (runs 2-22) weighs every timestep's x0 error alike, which leaves the low noise levels, where the
    x0 error is small anyway, almost no gradient: the shipped enhancer did not denoise there at all (session 22: at
    t = 50 its x0 error equalled the noise's), and the SDE sampler's last steps, which run there, left the noise
    in as speckle. "min_snr" weighs each sample's x0 error by min(SNR, 5) + 1 (SNR = alpha^2 / sigma^2), the
    stage-1/2 weighting (``stages.diffusion_loss``; Hang et al. 2023, Min-SNR). ``init``: a torch file with
    ``enhancer_unet`` and ``enhancer_text_encoder`` state dicts to start from (e.g. ``from_export``'s enhancer.pt
    of a shipped model) instead of random weights."""
    _check_enhancer_loss(loss)      # before the VAE and the networks are built
    final = _finish_path(out, "enhancer")
    if os.path.exists(final):
        return
    rng = C.seed_all(seed)
    vae = load_vae(out).to(C.DEVICE)
    text = build_aux_model("openclip_text", C.NET_CONFIG)
    unet = build_aux_model("vid2vid_unet", C.NET_CONFIG)
    if init is not None:
        start = torch.load(init, map_location="cpu")
        unet.load_state_dict(start["enhancer_unet"])
        text.load_state_dict(start["enhancer_text_encoder"])
        print(f"enhancer: started from {init}", flush=True)
    params = list(text.parameters()) + list(unet.parameters())
    emas = {"unet": C.EMA(unet, 0.995), "text": C.EMA(text, 0.995)}
    loop = C.TrainLoop(out, "enhancer", {"unet": unet, "text": text}, [{"params": params}], lr, 30, steps, budget_s,
                       stop_at, rng, emas, ckpt_every=ckpt_every)
    alphas, sigmas = C.to_device(*C.logsnr_cosine_interp())

    def step():
        scenes, starts = [], []
        for _ in range(batch):
            scenes.append(C.world.sample_scene(rng, C.WORLD))
            starts.append(int(rng.integers(0, 400)))
        lo = torch.from_numpy(np.stack([C.world.render(s, t0, frames, 64) for s, t0 in zip(scenes, starts)]))
        hi = torch.from_numpy(np.stack([C.world.render(s, t0, frames, 128) for s, t0 in zip(scenes, starts)]))
        lo, hi = C.to_device(lo.permute(0, 2, 1, 3, 4).contiguous(), hi.permute(0, 2, 1, 3, 4).contiguous())
        caps = [C.world.caption(s) + ", " for s in scenes]
        caps, _ = C.drop_captions(rng, caps, p_uncond)
        z_in = encode(vae, C.upsample2x(lo))
        z_tgt = encode(vae, hi, sample=False)
        t = torch.randint(0, 640, (batch,)).to(C.DEVICE)
        a, s = alphas[t].view(-1, 1, 1, 1, 1), sigmas[t].view(-1, 1, 1, 1, 1)
        xt = a * z_in + s * torch.randn_like(z_in)
        v = unet(xt, t.float(), text(C.token_ids(caps, pad_id=0)))
        x0 = a * xt - s * v
        return enhancer_loss(x0, z_tgt, a, s, loss), {"identity_mse": F.mse_loss(z_in, z_tgt).item(),
                                                      "x0_mse": F.mse_loss(x0, z_tgt).item()}
    loop.run(step)
    ema_u, ema_t = emas["unet"], emas["text"]
    C.save_final({"enhancer_unet": ema_u.state_dict(), "enhancer_text_encoder": ema_t.state_dict()}, final)


# the EMA modules of a component's checkpoint (``TrainLoop`` saves ``emas[k]`` as ``ema_<k>``) -> export roles
CHECKPOINT_ROLES = {
    **{n: {"ema_unet": "unet_stage1", "ema_text": "text_encoder"} for n in ("stage1", "stage1_more", "stage1_centred")},
    **{n: {"ema_model": "unet_stage2", "ema_apm": "apm_image_encoder"} for n in ("stage2", "stage2_turn")},
    "enhancer": {"ema_unet": "enhancer_unet", "ema_text": "enhancer_text_encoder"},
}


def checkpoint_weights(out: str, name: str) -> Dict[str, Dict[str, torch.Tensor]]:
    """{role: state_dict} of the EMA weights in ``<out>/ckpt_<name>.pt``, an unfinished (or stopped) component,
    so a run can be exported and probed at a checkpoint. Raises FileNotFoundError/ValueError naming the problem."""
    if name not in CHECKPOINT_ROLES:
        raise ValueError(f"{name}: no checkpoint roles (one of {', '.join(sorted(CHECKPOINT_ROLES))})")
    path = os.path.join(out, f"ckpt_{name}.pt")
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path} does not exist: {name} has not reached its first checkpoint in {out}")
    state = torch.load(path, map_location="cpu")
    roles = {role: state["modules"][k] for k, role in CHECKPOINT_ROLES[name].items() if k in state["modules"]}
    if not roles:
        raise ValueError(f"{path}: none of the EMA modules {sorted(CHECKPOINT_ROLES[name])}")
    print(f"{name}: EMA weights of {path} at step {state['step']}", flush=True)
    return roles


def collect_weights(out: str, from_checkpoints=()) -> Dict[str, Dict[str, torch.Tensor]]:
    """{role: state_dict} for ``python3 -m models.export --weights``; the one trained VAE serves both VAE roles.
    ``from_checkpoints``: components whose EMA weights come from their checkpoint (``checkpoint_weights``), applied
    last, in the given order."""
    vae = load_vae(out)
    enc, dec = vae.video_encoder().state_dict(), vae.video_decoder().state_dict()
    if os.path.exists(_finish_path(out, "vae_ft")):        # fine-tuned decoder (same encoder, same latents)
        ft = build_aux_model("vae", C.NET_CONFIG)
        ft.load_state_dict(torch.load(_finish_path(out, "vae_ft"), map_location="cpu"))
        dec = ft.eval().video_decoder().state_dict()
    s1 = torch.load(_finish_path(out, "stage1"), map_location="cpu")
    s2 = torch.load(_finish_path(out, "stage2_turn" if os.path.exists(_finish_path(out, "stage2_turn")) else "stage2"),
                    map_location="cpu")                 # stage2_turn continues stage 2 (session 6)
    weights = {"vae_encoder": enc, "vae_decoder": dec, "enhancer_vae_encoder": enc, "enhancer_vae_decoder": dec,
               **s1, **s2}
    for name in ("stage1_more", "stage1_centred"):      # the later continuation wins
        if os.path.exists(_finish_path(out, name)):
            weights.update(torch.load(_finish_path(out, name), map_location="cpu"))
    if os.path.exists(_finish_path(out, "enhancer")):
        weights.update(torch.load(_finish_path(out, "enhancer"), map_location="cpu"))
    for name in from_checkpoints:
        weights.update(checkpoint_weights(out, name))
    return weights
