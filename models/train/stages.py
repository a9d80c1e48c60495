"""Stage-1 and stage-2 trainers (recipe 2), on the precomputed latent dataset (``latents.py``).

Objective (both stages): v-prediction on the ModelScope schedule (scaled_linear betas 0.00085..0.012, 1000
steps), timesteps uniform, x0-error weight min(SNR, 5) + 1 per sample (see ``diffusion_loss``) and 1 + 3 x (object
present) per latent cell. (Upstream ModelScope predicts epsilon; the manifest of the trained model says v.)
AdamW, linear warm-up then cosine decay to 10 %, gradient clipping 1.0, EMA weights exported.

* ``stage1``: text encoder + stage-1 UNet jointly, 10 % empty captions (classifier-free guidance).
* ``stage1_more``: the stage-1 UNet only, continued from ``stage1.pt`` with the text encoder frozen (stage 2
  was trained with that text encoder, so it must not move any more); runs beside stage 2.
* ``stage2``: Stage2UNet (base UNet from ``stage1.pt``, CAM copied from it as ControlNet.from_unet) + APM image
  encoder, on windows of the clips: CAM input = the window's first 8 frames as pixels (half of the time the VAE
  decode of their latents, which looks like generated frames), anchor = frame 0 of the clip. Dropout: 10 % caption
  and anchor together (the pipeline's unconditional half), 5 % each alone. The APM gates ``alpha`` start at 0
  (as upstream) and learn at 20x the base rate: in recipe 1 they had not moved after 681 steps (run 2: |alpha|
  up to 0.77). The CAM mergers' zero-initialised output projections have the same problem: after run 2's 1091
  steps their weights averaged |w| = 0.005 and removing CAM changed the frames by < 1 grey level, so CAM was not
  in use. The cause: the conditioning frames reach the output only through the frame encoder E_cond (7 SiLU
  convolutions, then the zero-initialised ``conv_out``) and the mergers' zero-initialised ``proj_out`` in series.
  With PyTorch's default initialisation E_cond's output hardly depends on its input (measured: it changes by
  8e-5 between different clips, against a CAM hidden state of ~0.75), and each zero layer's gradient is
  proportional to the other's weights, so the mergers only learn to inject the CAM's copy of the noisy latents.
  ``cam_init="small"`` (run 3, ``--cam-init small``) initialises E_cond from data instead (``init_frame_encoder``:
  He-normal convolutions, ``conv_out`` rescaled to an output std of 0.5 on real frames); ``proj_out`` stays zero,
  so the stage-2 UNet still starts as the stage-1 UNet. ``merger_lr_mult`` (``--cam-lr-mult``) raises the
  mergers' rate. Every 100 steps ``cam_gain`` is logged: the loss at t = 700 with the conditioning frames of
  another sample of the batch minus the loss with the right ones (same noise, eval mode): > 0 once CAM is used
  (``python3 -m models.train.cam_probe`` measures it on a checkpoint or an exported model).
"""
import os
from dataclasses import replace
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np
import torch

from ..apm import APMImageEncoder
from ..configs_aux import build_aux_model
from .. import world
from ..configs_unet import UNet3DConfig, get_config, widths_of, with_widths
from ..stage2 import Stage2UNet
from ..unet3d import UNet3DConditionModel
from . import common as C
from . import latents as L
from . import drift as D
from . import shape_pair as SP
from . import tone as T
from .components import _finish_path, load_vae

MIN_SNR_GAMMA = 5.0
#: What the stage-1/2 UNets predict (the exported manifest's scheduler configs say the same).
PREDICTION = "v_prediction"


def diffusion_loss(predict: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], z0: torch.Tensor,
                   w: torch.Tensor, ac: torch.Tensor, prediction: str = PREDICTION,
                   motion_weight: float = 0.0, terminal_p: float = 0.0) -> torch.Tensor:
    """Diffusion loss with per-timestep weight λ_t on the x0 error, λ_t = min(SNR_t, γ) + 1 (γ = 5).

    With α = sqrt(ᾱ_t), σ = sqrt(1 - ᾱ_t), SNR = α²/σ², z_t = α z0 + σ ε (q(z_t | z0)):
    * ``v_prediction``: target v = α ε - σ z0 (Salimans & Ho 2022); ||v̂ - v||² = (SNR + 1) ||x̂0 - x0||², so the
      weight is (min(SNR, γ) + 1) / (SNR + 1).
    * ``epsilon``: ||ε̂ - ε||² = SNR ||x̂0 - x0||², weight (min(SNR, γ) + 1) / SNR.
    Min-SNR-γ (Hang et al. 2023) caps the easy low-noise steps; the +1 keeps weight on the x0 error at high noise,
    where epsilon prediction alone (λ = SNR -> 0) leaves the text-driven layout unlearnt (recipe-2 diagnostics:
    x0 error 0.68 at t = 800 after 400 epsilon steps). Cells are weighted by ``w`` (object cells count more).

    ``motion_weight`` = μ > 0 (run 4, v-prediction only) adds μ (min(SNR, γ) + 1) ||Δx̂0 - Δx0||², Δ the difference
    of neighbouring frames (x̂0 = α z_t - σ v̂), cells weighted by the larger ``w`` of the two frames: the x0 error
    of the frame-to-frame change, which a blurred, direction-averaged prediction pays for in full.

    ``terminal_p`` = p > 0 (stage1_centred) trains the sampler's first step as it really is: each sample is, with
    probability p, put at the last timestep T - 1 = 999 with z_t = ε, pure noise, instead of α_T z0 + σ_T ε. The
    ModelScope schedule does not reach zero SNR (α_999 = 0.068; Lin et al. 2023, "Common diffusion noise schedules
    and sample steps are flawed"), and the UNet learns to read the clip from that leak: on run 4's stage 1 the
    frame-to-frame variation of x̂0 at t = 990 correlated 0.84 with the true clip's. Sampling starts from pure
    noise, so the first step then reads a motion out of the noise and the caption's direction never had to be
    learnt (swapping it changed the x0 error by < 0.1 %). With the pure-noise samples the best first-step
    prediction is E[x0 | caption], which on centred clips moves in the caption's direction. ``terminal_p`` may
    also be a tensor [B] of per-sample shares (stage2_turn: a higher one for the turn clips)."""
    b = z0.shape[0]
    t = torch.randint(0, ac.numel(), (b,)).to(z0.device)   # drawn on the CPU generator on every device
    noise = torch.randn_like(z0)
    pure = None
    tp = torch.as_tensor(terminal_p, dtype=torch.float32).expand(b)     # a share, or one per sample
    if bool((tp > 0).any()):
        pure = (torch.rand(b) < tp).to(z0.device)
        t = torch.where(pure, torch.full_like(t, ac.numel() - 1), t)
    a = ac.to(z0.device)[t]
    al, sg = a.sqrt().view(-1, 1, 1, 1, 1), (1 - a).sqrt().view(-1, 1, 1, 1, 1)
    zt = al * z0 + sg * noise
    if pure is not None:
        zt = torch.where(pure.view(-1, 1, 1, 1, 1), noise, zt)
    out = predict(zt, t.float())
    snr = a / (1 - a)
    if prediction == "v_prediction":
        target, denom = al * noise - sg * z0, snr + 1
        if pure is not None:     # the v whose x0 estimate alpha z_t - sigma v is z0 when z_t = eps
            target = torch.where(pure.view(-1, 1, 1, 1, 1), (al * zt - z0) / sg, target)
    elif prediction == "epsilon":
        target, denom = noise, snr
        if pure is not None:     # the eps whose x0 estimate (z_t - sigma eps) / alpha is z0
            target = torch.where(pure.view(-1, 1, 1, 1, 1), (zt - al * z0) / sg, target)
    else:
        raise ValueError(prediction)
    per = ((out - target).pow(2) * w).flatten(1).sum(1) / w.flatten(1).sum(1)
    loss = (per * (snr.clamp(max=MIN_SNR_GAMMA) + 1) / denom).mean()
    if motion_weight > 0:
        if prediction != "v_prediction":
            raise ValueError("motion_weight needs v_prediction")
        x0 = al * zt - sg * out
        wm = torch.maximum(w[:, :, 1:], w[:, :, :-1])
        dm = ((x0.diff(dim=2) - z0.diff(dim=2)).pow(2) * wm).flatten(1).sum(1) / wm.flatten(1).sum(1)
        loss = loss + motion_weight * (dm * (snr.clamp(max=MIN_SNR_GAMMA) + 1)).mean()
    return loss


@torch.no_grad()
def ddim_sample(call: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], z: torch.Tensor, steps: int,
                guidance: float, prediction: str = PREDICTION, known: Optional[torch.Tensor] = None,
                replace_steps: int = 0, guidance_from: int = 0, init: Optional[torch.Tensor] = None,
                start: int = 0) -> torch.Tensor:
    """Deterministic DDIM (η = 0) on the ModelScope schedule with classifier-free guidance, for probes and previews.

    ``call(z2, t2)`` runs the network on the batch doubled as [unconditional; conditional] and returns the two
    predictions in that order; guided = u + g (c - u). Timesteps 999, 999 - 1000/steps, ..., then ᾱ = 1.
    v-prediction: x̂0 = α z - σ v, ε̂ = σ z + α v; epsilon: x̂0 = (z - σ ε) / α. Step: z = √ᾱ_prev x̂0 + √(1-ᾱ_prev) ε̂.
    ``known`` [B, C, Fc, h, w] with ``replace_steps`` = k: in each of the first k network calls the input's first Fc
    frames are √ᾱ_t known + √(1-ᾱ_t) ε (ε fresh, seeded 100 + step) while the step updates z as it was — the
    pipeline's ``stage2.replaceOverlap`` (lib/pipeline/replace-overlap.ts). ``guidance_from`` = k: the first k
    network calls are unguided (the conditional prediction alone, g = 1); guidance ``guidance`` from call k on.
    ``start`` = k > 0 with ``init`` (SDEdit, session 20's probe): the first k steps are skipped and the sampler
    starts from √ᾱ_t init + √(1-ᾱ_t) z at the k-th timestep t (``z`` is then the noise)."""
    if start and (init is None or not 0 < start < steps):
        raise ValueError(f"start must be in [1, {steps - 1}] and needs init, got start={start}")
    ac = C.ddpm_alphas_cumprod()
    ts = list(range(999, -1, -1000 // steps))
    if start:
        z = ac[ts[start]].sqrt() * init + (1 - ac[ts[start]]).sqrt() * z
    for i, t in enumerate(ts):
        if i < start:
            continue
        zin = z
        if known is not None and i < replace_steps:
            eps = torch.randn(known.shape, generator=torch.Generator().manual_seed(100 + i)).to(known.device)
            zin = torch.cat([ac[t].sqrt() * known + (1 - ac[t]).sqrt() * eps, z[:, :, known.shape[2]:]], 2)
        out_u, out_c = call(torch.cat([zin, zin]), torch.full((2 * z.shape[0],), float(t))).chunk(2)
        out = out_u + (guidance if i >= guidance_from else 1.0) * (out_c - out_u)
        a, a_prev = ac[t], (ac[ts[i + 1]] if i + 1 < len(ts) else torch.tensor(1.0))
        if prediction == "v_prediction":
            x0, eps = a.sqrt() * z - (1 - a).sqrt() * out, (1 - a).sqrt() * z + a.sqrt() * out
        elif prediction == "epsilon":
            eps = out
            x0 = (z - (1 - a).sqrt() * eps) / a.sqrt()
        else:
            raise ValueError(prediction)
        z = a_prev.sqrt() * x0 + (1 - a_prev).sqrt() * eps
    return z


def _check_share(flag: str, v: Optional[float]) -> None:
    if v is not None and not 0.0 <= v <= 1.0:
        raise ValueError(f"{flag} must be in [0, 1], not {v!r}")


def _text_cond(text: torch.nn.Module, caps: List[str], frozen: bool) -> torch.Tensor:
    if frozen:
        with torch.no_grad():
            return text(C.token_ids(caps))
    return text(C.token_ids(caps))


def train_stage1(out: str, steps: int = 2000, budget_s: float = 900, seed: int = 2, batch: int = 8,
                 lr: float = 1e-3, p_uncond: float = 0.1, stop_at: Optional[int] = None, more: bool = False,
                 motion_weight: float = 0.0, centred: bool = False, text_lr_mult: float = 0.0,
                 xattn_lr_mult: float = 1.0, terminal_p: float = 0.0, vertical_p: Optional[float] = None,
                 centred_from: str = "stage1_more", boundary_weight: float = 0.0,
                 channels: Optional[Tuple[int, ...]] = None, pair_p: float = 0.0, pair_weight: float = 0.0,
                 dir_pair_p: float = 0.0, dir_pair_weight: float = 0.0, dir_pair_t_from: int = 500) -> None:
    """Stage 1 (``more=False``: text encoder + UNet from scratch -> stage1.pt; ``more=True``: UNet only, continued
    from stage1.pt with the text encoder frozen -> stage1_more.pt; ``centred=True`` (with ``more``): continued
    from ``centred_from`` (stage1_more.pt, or stage1.pt in recipe 3) on the centred first windows
    (``latents._plan``) -> stage1_centred.pt).

    ``centred`` only: ``text_lr_mult`` > 0 trains the text encoder too, at that multiple of the rate (its EMA is
    then saved as ``text_encoder`` and replaces stage 1's for both stages); ``xattn_lr_mult`` multiplies the rate
    of the spatial cross-attention layers (``attentions.*.attn2``: the only path from the caption to the frames);
    ``terminal_p``: see ``diffusion_loss``; ``vertical_p``: the share of windows whose caption says up or down
    (``LatentSet.windows``; default: uniform clips, about half); ``boundary_weight`` B: the loss weight of a latent
    cell on the object's outline grows by B (``latents.boundary_cells``; session 14's squares experiment).
    ``channels`` (``more=False`` only): the UNet's block widths instead of the config's (``configs_unet.with_widths``;
    session 18's wider stage 1); a continuation, and stage 2 started from it, take the width of the UNet they
    start from. ``pair_p``, ``pair_weight`` (``centred`` only; session 18): the share of square and circle windows
    that get a partner of the other shape, and the weight of the pair loss on them (``shape_pair.py``).
    ``dir_pair_p``, ``dir_pair_weight``, ``dir_pair_t_from`` (``centred`` only; session 20): the same for direction
    pairs (every window; the partner moves the opposite way), timesteps from ``dir_pair_t_from`` to 999."""
    _check_share("vertical_p", vertical_p)
    name = "stage1_centred" if centred else "stage1_more" if more else "stage1"
    if centred and not more:
        raise ValueError("centred continues stage1_more: pass more=True")
    if centred_from not in ("stage1", "stage1_more"):
        raise ValueError(f"centred_from must be 'stage1' or 'stage1_more', not {centred_from!r}")
    if not centred and (text_lr_mult or xattn_lr_mult != 1.0 or terminal_p or vertical_p is not None
                        or boundary_weight or pair_p or pair_weight or dir_pair_p or dir_pair_weight):
        raise ValueError("text_lr_mult / xattn_lr_mult / terminal_p / vertical_p / boundary_weight / pair_p / "
                         "pair_weight / dir_pair_p / dir_pair_weight are options of stage1_centred")
    SP.check_options(pair_p, pair_weight)
    SP.check_options(dir_pair_p, dir_pair_weight, ("dir_pair_p", "dir_pair_weight"))
    if not 0 <= dir_pair_t_from <= 999:
        raise ValueError(f"dir_pair_t_from must be in [0, 999], not {dir_pair_t_from!r}")
    if boundary_weight < 0:
        raise ValueError(f"boundary_weight must be >= 0, not {boundary_weight}")
    if channels is not None and more:
        raise ValueError(f"channels set the width of a new stage-1 UNet; {name} continues one and keeps its width")
    cfg = get_config(C.NET_CONFIG).unet
    cfg = with_widths(cfg, channels) if channels is not None else cfg
    if os.path.exists(_finish_path(out, name)):
        return
    rng = C.seed_all(seed + (200 if centred else 100 if more else 0))
    data = L.load(out, centred=centred)
    text = build_aux_model("clip_text", C.NET_CONFIG)
    if more:
        s1 = torch.load(_finish_path(out, "stage1"), map_location="cpu")
        text.load_state_dict(s1["text_encoder"])
        from_more = centred and centred_from != "stage1"
        base = torch.load(_finish_path(out, centred_from), map_location="cpu") if from_more else s1
        unet = UNet3DConditionModel(widths_of(cfg, base["unet_stage1"]))
        unet.load_state_dict(base["unet_stage1"])
        text.eval().requires_grad_(False)
    else:
        unet = UNet3DConditionModel(cfg)
    if boundary_weight:
        data.w = data.w + boundary_weight * L.boundary_cells(data)
    text_trains = not more or text_lr_mult > 0
    if more and text_trains:
        text.train().requires_grad_(True)
    emas = {"unet": C.EMA(unet, 0.995), **({"text": C.EMA(text, 0.995)} if text_trains else {})}
    if centred:     # own rate groups; stage1 / stage1_more keep their one group (their checkpoints resume)
        xattn = [p for k, p in unet.named_parameters() if ".attentions." in k and ".attn2." in k]
        ids_x = {id(p) for p in xattn}
        groups = [{"params": [p for p in unet.parameters() if id(p) not in ids_x]},
                  {"params": xattn, "lr_mult": xattn_lr_mult}]
        if text_trains:
            groups.append({"params": list(text.parameters()), "lr_mult": text_lr_mult})
    else:
        groups = [{"params": list(unet.parameters()) + ([] if more else list(text.parameters()))}]
    loop = C.TrainLoop(out, name, {"unet": unet, "text": text}, groups, lr * (0.5 if more else 1.0),
                 20 if more else 100, steps, budget_s, stop_at, rng, emas)
    ac = C.ddpm_alphas_cumprod()

    encoder = load_vae(out).to(C.DEVICE).video_encoder() if pair_p > 0 or dir_pair_p > 0 else None

    def pair_term(kind, share, t_from, z0, w, ids, offs, true_caps):
        """(L_pair, pairs) of one kind of pair (shape_pair.py) on the step's windows; (None, 0) without picks."""
        picks = SP.pick(rng, data, ids, share, kind) if share > 0 else []
        if not picks:
            return None, 0
        zb, wb, caps_b, _ = SP.partners(data, encoder, ids, offs, picks, kind)
        zb, wb = C.to_device(zb, wb)
        own = [true_caps[j] for j in picks]         # the true captions: a pair is never unconditional
        pair = SP.pair_loss(unet, z0[picks], zb, torch.maximum(w[picks], wb),
                            _text_cond(text, own, not text_trains), _text_cond(text, caps_b, not text_trains), ac,
                            t_from)
        return pair, len(picks)

    def step():
        z0, w, ids, offs = data.windows(rng, batch, vertical_p=vertical_p)
        z0, w = C.to_device(z0, w)
        true_caps = data.captions(ids)
        caps, _ = C.drop_captions(rng, true_caps, p_uncond)
        ctx = _text_cond(text, caps, not text_trains)
        loss = diffusion_loss(lambda zt, t: unet(zt, t, ctx), z0, w, ac, motion_weight=motion_weight,
                              terminal_p=terminal_p)
        info = {}
        for kind, share, weight, t_from, key in (("shape", pair_p, pair_weight, 0, "pair"),
                                                 ("direction", dir_pair_p, dir_pair_weight, dir_pair_t_from, "dir_pair")):
            pair, n = pair_term(kind, share, t_from, z0, w, ids, offs, true_caps)
            if pair is not None:
                loss = loss + weight * pair
                info.update({key: pair.item(), key + "s": n})
        return loss, info
    loop.run(step)
    res = {"unet_stage1": emas["unet"].state_dict()}         # EMA state dicts are CPU tensors
    if text_trains:
        res["text_encoder"] = emas["text"].state_dict()
    C.save_final(res, _finish_path(out, name))


def init_frame_encoder(enc: torch.nn.Module, data: L.LatentSet, rng: np.random.Generator, target_std: float = 0.5,
                       n: int = 8) -> float:
    """Data-dependent initialisation of the CAM frame encoder E_cond (run 3; ``cam_init="small"``).

    With PyTorch's default initialisation the 7 SiLU convolutions shrink the signal so much that E_cond's output
    hardly depends on the frames (run 3, first attempt: the output changed by 8e-5 between different clips,
    against a CAM hidden state of ~0.75), and with the upstream zero ``conv_out`` nothing reaches the mergers at
    all. Here: He-normal weights and zero biases for the SiLU convolutions, a linear He-normal ``conv_out``
    rescaled so that the output's standard deviation across ``n`` real clips' frames is ``target_std`` (of the
    order of the hidden state it is added to). Returns the measured input dependence (mean |E(a) - E(b)| of two
    different batches of frames) after the rescale."""
    convs = [enc.conv_in, *enc.blocks]
    for conv in convs:
        torch.nn.init.kaiming_normal_(conv.weight, nonlinearity="relu")
        torch.nn.init.zeros_(conv.bias)
    torch.nn.init.kaiming_normal_(enc.conv_out.weight, nonlinearity="linear")
    torch.nn.init.zeros_(enc.conv_out.bias)
    ids = rng.integers(0, data.z.shape[0], size=2 * n)
    frames = torch.stack([data.render(int(i), 0, 1)[:, 0] for i in ids]).to(enc.conv_out.weight.device)
    with torch.no_grad():
        std = float(enc(frames[:n]).std(0).mean())
        enc.conv_out.weight.mul_(target_std / max(std, 1e-8))
        return float((enc(frames[:n]) - enc(frames[n:])).abs().mean())


def cond_swap_errors(model: torch.nn.Module, z0: torch.Tensor, w: torch.Tensor, ctx: torch.Tensor,
                     cond: torch.Tensor, ac: torch.Tensor, t: int,
                     parts: Optional[Dict[str, slice]] = None) -> Dict[str, Tuple[float, float]]:
    """The cell-weighted v-prediction error at timestep ``t`` (noise seeded by ``t``) with each sample's own
    conditioning frames and with the next sample's (``cond.roll(1, 0)``), per frame range of ``parts``
    (default: all frames): ``{part: (own, swapped)}``. Two network calls whatever the number of parts."""
    parts = parts if parts is not None else {"all": slice(None)}
    with torch.no_grad():
        noise = torch.randn(z0.shape, generator=torch.Generator().manual_seed(t)).to(z0.device)
        al, sg = float(ac[t].sqrt()), float((1 - ac[t]).sqrt())
        zt, target = al * z0 + sg * noise, al * noise - sg * z0
        tt = torch.full((z0.shape[0],), float(t), device=z0.device)
        own = (model(zt, tt, ctx, cond) - target) ** 2 * w
        swapped = (model(zt, tt, ctx, cond.roll(1, 0)) - target) ** 2 * w
        out = {}
        for name, frames in parts.items():
            ws = w[:, :, frames].sum()
            out[name] = (float(own[:, :, frames].sum() / ws), float(swapped[:, :, frames].sum() / ws))
        return out


def cam_gain(model: torch.nn.Module, z0: torch.Tensor, w: torch.Tensor, ctx: torch.Tensor, cond: torch.Tensor,
             ac: torch.Tensor, t: int = 700) -> float:
    """How much the stage-2 UNet uses its conditioning frames: the v-prediction loss (weighted as in
    ``diffusion_loss``'s cells) at timestep ``t`` with each sample's conditioning frames replaced by the next
    sample's, minus the loss with its own, on the same noise, in eval mode (the temporal convolutions' dropout
    would otherwise make two calls differ). 0 when CAM is ignored, > 0 when it is used."""
    was_training = model.training
    model.eval()
    try:
        own, swapped = cond_swap_errors(model, z0, w, ctx, cond, ac, t)["all"]
        return swapped - own
    finally:
        model.train(was_training)


def caption_direction_gain(model: torch.nn.Module, z0: torch.Tensor, w: torch.Tensor, ctx_own: torch.Tensor,
                           ctx_other: torch.Tensor, cond: torch.Tensor, ac: torch.Tensor,
                           frames: slice = slice(L.TURN_AT, None)) -> float:
    """How much the stage-2 UNet's first sampling step follows the caption's direction: the relative x0 error
    (swapped - own) / own on ``frames`` (the new frames) at t = T - 1 from pure noise (z_t = ε, noise seeded),
    with the own caption's context ``ctx_own`` and another direction's ``ctx_other``, in eval mode. 0: the
    direction word is ignored; > 0: the prediction moves the caption's way."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            t = ac.numel() - 1
            zt = torch.randn(z0.shape, generator=torch.Generator().manual_seed(t)).to(z0.device)
            al, sg = float(ac[t].sqrt()), float((1 - ac[t]).sqrt())
            tt = torch.full((z0.shape[0],), float(t), device=z0.device)
            errs = []
            for ctx in (ctx_own, ctx_other):
                x0 = al * zt - sg * model(zt, tt, ctx, cond)
                e = ((x0 - z0) ** 2 * w)[:, :, frames].sum() / w[:, :, frames].sum()
                errs.append(float(e))
            return (errs[1] - errs[0]) / max(errs[0], 1e-12)
    finally:
        model.train(was_training)


def _check_same_widths(unet: UNet3DConfig, state: dict, prefix: str, path: str) -> None:
    """A stage-2 continuation loads weights into a model built at its base stage-1 UNet's widths: weights of
    another width get a ``ValueError`` that names both widths instead of a size-mismatch trace."""
    got = widths_of(unet, state, prefix).block_out_channels
    if got != tuple(unet.block_out_channels):
        raise ValueError(f"{path}: its UNet has block widths {got}, the stage-1 UNet stage 2 starts from "
                         f"{tuple(unet.block_out_channels)}; train both at one width (--unet-channels)")


def train_stage2(out: str, steps: int = 1500, budget_s: float = 2100, seed: int = 3, batch: int = 8,
                 lr: float = 5e-4, alpha_lr_mult: float = 20.0, merger_lr_mult: float = 1.0,
                 stop_at: Optional[int] = None, cam_init: str = "zero", base: str = "stage1",
                 motion_weight: float = 0.0, turn: bool = False, turn_p: float = 0.3,
                 terminal_p: float = 0.0, turn_terminal_p: Optional[float] = None,
                 turn_base_unet: Optional[str] = None, vertical_p: Optional[float] = None,
                 tone_p: float = 0.0, tone_gain: float = T.GAIN, tone_offset: float = T.OFFSET,
                 drift_p: float = 0.0, drift_size: float = D.SIZE, drift_colour: float = D.COLOUR,
                 fresh: bool = False, pair_p: float = 0.0, pair_weight: float = 0.0) -> None:
    """Stage 2 (CAM + APM) -> stage2.pt; see the module docstring. ``base``: the stage-1 result whose UNet starts
    the base UNet and the CAM ("stage1" as in run 2, "stage1_more" once that has finished, "stage1_centred").
    ``fresh`` (with ``turn``; recipe 3): stage2_turn.pt starts from ``base`` as stage2.pt does, with the turn
    set from its first step, instead of continuing stage2.pt.

    ``turn=True`` (session 6) continues ``stage2.pt`` -> ``stage2_turn.pt``: a share ``turn_p`` of each batch comes
    from the turn set (``latents.turn_pre``: the conditioning frames move another way than the caption, the new
    frames the caption's way), so that the caption, not only the conditioning frames, decides where the new frames
    go. Every 100 steps ``turn_dir_gain`` is logged (``caption_direction_gain``). ``terminal_p``: see
    ``diffusion_loss`` (the noisy new frames leak their motion at t = 999 as stage 1's did);
    ``turn_terminal_p`` (default: ``terminal_p``): the same share for the turn clips alone. Only at pure noise
    must the direction come from the caption (at any t < 999 the noisy new frames show it), so run 6 raised it
    for the turn clips: with 0.3 x 0.15 of the samples both turned and at pure noise, the stage-2 probe's new
    frames followed the caption in 4 and 3 of 24 windows at steps 500 and 1000. ``turn_base_unet`` (e.g.
    "stage1_centred"): replace the continued stage 2's base UNet by that stage-1 result's UNet (CAM, mergers and
    APM stay stage 2's); run 5's stage1_centred UNet reads the direction at the first step, and this hybrid
    followed the caption in 14 of 24 turn windows before any training, but put the object 16 px from where
    the conditioning frames had it. ``vertical_p``: the share of windows (main and turn set) whose caption says up
    or down (``LatentSet.windows``; default: uniform clips, about half); session 8 found run 7's stage 2 reading
    left/right from the caption but not up/down, and the turn gain is logged per axis (``turn_dir_gain_vertical``,
    ``turn_dir_gain_horizontal``). ``tone_p`` (session 10): the share of windows (main and turn set) given one
    random global colour transform over all 16 frames, conditioning frames and target alike (``tone.py``; its
    ranges ``tone_gain``, ``tone_offset``). ``drift_p`` (session 16): the share of the other windows whose object
    gets a radius and colour of its own (the whole clip and the anchor), half of them with the conditioning frames
    drifted further, so that the window keeps the object's appearance and the anchor pulls a drift back
    (``drift.py``; its ranges ``drift_size``, ``drift_colour``). ``pair_p``, ``pair_weight`` (session 19): the
    shape-pair loss of ``shape_pair.py`` on a share of the main set's square and circle windows that are not
    re-toned, the partner with its own conditioning frames, anchor and caption (not with ``drift_p``, whose
    windows have no partner render)."""
    if cam_init not in ("zero", "small"):
        raise ValueError(f"cam_init must be 'zero' or 'small', not {cam_init!r}")
    if base not in ("stage1", "stage1_more", "stage1_centred"):
        raise ValueError(f"base must be 'stage1', 'stage1_more' or 'stage1_centred', not {base!r}")
    if fresh and not turn:
        raise ValueError("fresh starts stage2_turn from the base UNet: pass turn=True")
    for flag, v in (("tone_p", tone_p), ("drift_p", drift_p), ("turn_p", turn_p), ("terminal_p", terminal_p),
                    ("turn_terminal_p", turn_terminal_p), ("vertical_p", vertical_p)):
        _check_share(flag, v)
    SP.check_options(pair_p, pair_weight)
    if pair_p > 0 and drift_p > 0:
        raise ValueError("pair_p and drift_p cannot be combined: a drifted window has no partner render")
    name = "stage2_turn" if turn else "stage2"
    if os.path.exists(_finish_path(out, name)):
        return
    rng = C.seed_all(seed + (300 if turn else 0))
    data = L.load(out)
    tdata = L.load(out, turn=True) if turn else None
    vae = load_vae(out)
    net = get_config(C.NET_CONFIG)
    s1 = torch.load(_finish_path(out, "stage1"), map_location="cpu")
    text = build_aux_model("clip_text", C.NET_CONFIG)
    text.load_state_dict(s1["text_encoder"])
    text.eval().requires_grad_(False).to(C.DEVICE)
    vae.to(C.DEVICE)
    unet_weights = torch.load(_finish_path(out, base), map_location="cpu")["unet_stage1"]
    net = replace(net, unet=widths_of(net.unet, unet_weights))     # the width of the stage-1 UNet it starts from
    model = Stage2UNet(net)
    missing, unexpected = model.base_model.load_state_dict(unet_weights, strict=False)
    assert not unexpected, unexpected
    model.cam.copy_from_unet(model.base_model)
    apm = APMImageEncoder(net.clip, net.resampler)
    if turn and not fresh:
        s2 = torch.load(_finish_path(out, "stage2"), map_location="cpu")
        _check_same_widths(net.unet, s2["unet_stage2"], "base_model.", _finish_path(out, "stage2"))
        model.load_state_dict(s2["unet_stage2"])
        apm.load_state_dict(s2["apm_image_encoder"])
        if turn_base_unet:
            base_sd = torch.load(_finish_path(out, turn_base_unet), map_location="cpu")["unet_stage1"]
            _check_same_widths(net.unet, base_sd, "", _finish_path(out, turn_base_unet))
            _, unexpected = model.base_model.load_state_dict(base_sd, strict=False)
            assert not unexpected, unexpected
        dep = None
    else:
        dep = init_frame_encoder(model.cam.controlnet_cond_embedding, data, rng) if cam_init == "small" else None
    alphas = [p for n, p in model.named_parameters() if n.endswith(".alpha")]
    mergers = [p for n, p in model.named_parameters() if "cross_attention_merger" in n]
    rest = [p for n, p in model.named_parameters() if not n.endswith(".alpha") and "cross_attention_merger" not in n]
    rest += list(apm.parameters())
    emas = {"model": C.EMA(model, 0.995), "apm": C.EMA(apm, 0.995)}
    loop = C.TrainLoop(out, name, {"model": model, "apm": apm},
                 [{"params": rest}, {"params": alphas, "lr_mult": alpha_lr_mult},
                  {"params": mergers, "lr_mult": merger_lr_mult}], lr, 50, steps, budget_s,
                 stop_at, rng, emas)
    if turn:     # also on a resume: a run may change these between its phases
        start = (f"started from {base}'s UNet (frame encoder input dependence {dep})" if fresh
                 else "continued from stage2.pt")
        loop.log.write(loop.step, note=f"{start if loop.step == 0 else 'resumed'}; "
                                       f"{steps} steps; turn share {turn_p}, terminal_p {terminal_p}, "
                                       f"turn clips' terminal_p {turn_terminal_p}; base UNet from "
                                       f"{turn_base_unet or (base if fresh else 'stage2.pt')}; tone share {tone_p} "
                                       f"(gain {tone_gain}, offset {tone_offset}); drift share {drift_p} "
                                       f"(size {drift_size}, colour {drift_colour}); lr {lr}")
    elif loop.step == 0:
        loop.log.write(0, note=f"frame encoder input dependence after init: {dep}; base UNet from {base}; {len(missing)} new tensors (CAM mergers, APM mixers); "
                                f"{len(alphas)} APM gates; CAM frame encoder conv_out init {cam_init}; "
                                f"merger lr x{merger_lr_mult}")
    ac = C.ddpm_alphas_cumprod()
    dec = vae.video_decoder()

    def draw():
        """(z0, w, true conditioning pixels, captions, anchors, turn-set ids, re-toned windows, sources) of one
        batch: ``batch - k`` windows of the main set and, with ``turn``, k = min(Binomial(batch, turn_p), batch - 1)
        clips of the turn set (at least one window of the main set: an all-turn batch would leave it empty)."""
        k = min(int(rng.binomial(batch, turn_p)), batch - 1) if turn else 0
        z0, w, ids, offs = data.windows(rng, batch - k, vertical_p=vertical_p)
        cond = torch.stack([data.render(i, o, 8) for i, o in zip(ids, offs)])
        caps, anchor, tids = data.captions(ids), data.anchor[torch.from_numpy(ids)], []
        src = [(data, i, o) for i, o in zip(ids, offs)]
        if k:
            tz, tw, tids, toffs = tdata.windows(rng, k, vertical_p=vertical_p)
            z0, w = torch.cat([z0, tz]), torch.cat([w, tw])
            cond = torch.cat([cond, torch.stack([tdata.render(i, 0, 8) for i in tids])])
            caps, anchor = caps + tdata.captions(tids), torch.cat([anchor, tdata.anchor[torch.from_numpy(tids)]])
            src += [(tdata, i, o) for i, o in zip(tids, toffs)]
        sel = np.zeros(0, dtype=np.int64)
        if tone_p > 0:      # re-toned windows: render all 16 frames, transform, re-encode (tone.py)
            sel = np.nonzero(rng.random(batch) < tone_p)[0]
            if len(sel):
                video = torch.stack([src[j][0].render(src[j][1], src[j][2], 16) for j in sel])
                video = T.apply_tone(video, *T.random_tone(rng, len(sel), tone_gain, tone_offset))
                with torch.no_grad():
                    z0[torch.from_numpy(sel)] = vae.video_encoder()(video.to(C.DEVICE))[0].cpu()
                cond[torch.from_numpy(sel)] = video[:, :, :8]
        return z0, w, cond, caps, anchor.clone(), tids, sel, src

    def drifted(z0, cond, anchor, src, toned, drop_anchor):
        """Draws the drifted windows (drift.py) among those not re-toned: the clip's object (all 16 frames and the
        anchor) gets an appearance of its own, (k1, d1), ``z0`` becomes their encoding (one encoder pass for the
        batch); in half of them the conditioning frames drift further, (k1 k2, d1 + d2), and where the anchor is
        dropped the 16 frames drift with them. Fills ``z0``, ``cond``, ``anchor`` in place -> bool [B]: the
        windows whose conditioning frames are not the target's frames 0-7."""
        pick = rng.random(batch) < drift_p
        pick[toned] = False
        k1, d1 = D.random_drift(rng, batch, drift_size, drift_colour)
        k2, d2 = D.random_drift(rng, batch, drift_size, drift_colour)
        extra = rng.random(batch) < 0.5
        own = pick & extra & ~drop_anchor
        rows = np.nonzero(pick)[0]
        videos = []
        for j in rows:
            ds, i, o = src[j]
            pre = ds.pre[i] if ds.pre is not None else None
            look = (float(k1[j]), d1[j])
            anchor[j] = D.render_drifted(ds.scenes[i], 0, 1, *look)[:, 0]
            cond_look = (float(k1[j] * k2[j]), d1[j] + d2[j])
            target_look = cond_look if extra[j] and drop_anchor[j] else look   # no anchor: follow the frames
            video = D.render_drifted(ds.scenes[i], ds.starts[i], 16, *target_look, pre, offset=o)
            videos.append(video)
            cond[j] = (D.render_drifted(ds.scenes[i], ds.starts[i], 8, *cond_look, pre, offset=o) if own[j]
                       else video[:, :8])
        if len(rows):
            with torch.no_grad():
                z0[torch.from_numpy(rows)] = vae.video_encoder()(torch.stack(videos).to(C.DEVICE))[0].to(z0)
        return own

    encoder = vae.video_encoder() if pair_p > 0 else None

    def pair_term(z0, w, cond, main_src, rt, toned):
        """(L_pair, pairs) of the step (shape_pair.py): a share ``pair_p`` of the main set's square and circle
        windows, re-toned ones excepted, against partners with their own conditioning frames (true frames 0-7, or
        their round trip where the window's are round-tripped), anchor and caption; never unconditional."""
        ids = [i for _, i, _ in main_src]
        offs = [o for _, _, o in main_src]
        picks = [j for j in SP.pick(rng, data, ids, pair_p) if j not in toned]
        if not picks:
            return None, 0
        zb, wb, caps_b, video_b = SP.partners(data, encoder, ids, offs, picks)
        zb, wb = C.to_device(zb, wb)
        with torch.no_grad():
            cond_b = C.to_device(video_b[:, :, :8])
            trip = torch.tensor([k for k, j in enumerate(picks) if rt[j]], dtype=torch.long)
            if len(trip):
                cond_b[trip] = dec(zb[trip][:, :, :8]).clamp(-1, 1)
            anchors = C.to_device(torch.cat([data.anchor[torch.tensor([ids[j] for j in picks])],
                                             SP.partner_anchors(data, ids, picks)]))
        m, pj = len(picks), torch.tensor(picks, dtype=torch.long)
        image = apm(anchors)
        ctx_a = torch.cat([_text_cond(text, data.captions([ids[j] for j in picks]), True), image[:m]], 1)
        ctx_b = torch.cat([_text_cond(text, caps_b, True), image[m:]], 1)
        both = torch.cat([cond[pj], cond_b])
        pair = SP.pair_loss(lambda zt, t, c: model(zt, t, c, both), z0[pj], zb, torch.maximum(w[pj], wb),
                            ctx_a, ctx_b, ac)
        return pair, m

    def step():
        z0, w, cond, caps, anchor, tids, toned, src = draw()
        rt = rng.random(batch) < 0.5
        u = rng.random(batch)       # drawn in this order since run 2 (a run resumed or repeated draws the same)
        drop_cap = (u < 0.15)
        drop_anchor = (u < 0.10) | ((u >= 0.15) & (u < 0.20))
        own = (drifted(z0, cond, anchor, src, toned, drop_anchor) if drift_p > 0
               else np.zeros(batch, dtype=bool))
        z0, w = C.to_device(z0, w)
        with torch.no_grad():
            cond = C.to_device(cond)
            if (rt & ~own).any():       # the round trip of the target's frames 0-7: their latents decoded
                sel = torch.from_numpy(np.nonzero(rt & ~own)[0]).to(z0.device)
                cond[sel] = dec(z0[sel][:, :, :8]).clamp(-1, 1)
            if (rt & own).any():        # conditioning frames drifted away from the target: their own round trip
                sel = torch.from_numpy(np.nonzero(rt & own)[0]).to(z0.device)
                cond[sel] = dec(vae.video_encoder()(cond[sel])[0]).clamp(-1, 1)
        caps = [("" if d else c) for c, d in zip(caps, drop_cap)]
        anchor[torch.from_numpy(drop_anchor)] = 0.0
        anchor = C.to_device(anchor)
        ctx = torch.cat([_text_cond(text, caps, True), apm(anchor)], 1)
        tp = torch.full((batch,), float(terminal_p))
        if len(tids):     # the turn clips are the batch's last ones
            tp[batch - len(tids):] = terminal_p if turn_terminal_p is None else turn_terminal_p
        loss = diffusion_loss(lambda zt, t: model(zt, t, ctx, cond), z0, w, ac, motion_weight=motion_weight,
                              terminal_p=tp)
        gate = float(torch.stack([a.detach().abs() for a in alphas]).mean()) if alphas else 0.0
        info = {"apm_gate_abs": gate}
        if pair_p > 0:
            pair, n = pair_term(z0, w, cond, src[:batch - len(tids)], rt, set(toned.tolist()))
            if n:
                loss = loss + pair_weight * pair
                info.update(pair=pair.item(), pairs=n)
        if loop.step == 0 or (loop.step + 1) % 100 == 0:  # logged with steps 1, 100, 200, ...
            info["cam_gain"] = cam_gain(model, z0, w, ctx, cond, ac)
            if len(tids):       # the turn clips of the batch: own caption vs the conditioning frames' direction
                ta = C.to_device(tdata.anchor[torch.from_numpy(tids)])
                with torch.no_grad():
                    img = apm(ta)
                    own = torch.cat([_text_cond(text, tdata.captions(tids), True), img], 1)
                    other = torch.cat([_text_cond(text, [world.caption(tdata.pre[i]) for i in tids], True), img], 1)
                n = len(tids)
                info["turn_dir_gain"] = caption_direction_gain(model, z0[-n:], w[-n:], own, other, cond[-n:], ac)
                vert = torch.from_numpy(tdata.vertical_clips()[tids]).to(z0.device)
                for axis, sel in (("vertical", vert), ("horizontal", ~vert)):
                    if sel.any():
                        info[f"turn_dir_gain_{axis}"] = caption_direction_gain(
                            model, z0[-n:][sel], w[-n:][sel], own[sel], other[sel], cond[-n:][sel], ac)
        return loss, info
    loop.run(step)
    C.save_final({"unet_stage2": emas["model"].state_dict(), "apm_image_encoder": emas["apm"].state_dict()},
               _finish_path(out, name))
