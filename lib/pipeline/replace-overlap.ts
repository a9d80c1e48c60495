/**
 * Overlap replacement in a stage-2 window: an addition of this library, not in the paper nor the official code
 * (option `stage2.replaceOverlap`, off unless the model's manifest turns it on).
 *
 * A stage-2 window denoises 16 latent frames whose positions 0..7 stand for the 8 conditioning frames (CAM's
 * short-term memory) and are dropped at the end (G4). Officially those positions start from noise like the rest,
 * and the model re-draws them: the embedded default model re-draws them in a whole-frame tone of its own, 41 grey
 * levels (|ΔR| + |ΔG| + |ΔB| of the frame means) off the frames they copy, the new frames continue the copy, and
 * the jump at the seam is what the scene-cut detector reports (models/train/README.md, "Run 13", "Run 14").
 *
 * With replacement (the "replacement method" of imputation with diffusion models, Song et al. 2021, used for
 * video extension by Ho et al. 2022, "Video Diffusion Models" §3.1), the network sees at each of the first
 * round(share · steps) steps t, in the overlap positions, the conditioning frames' own latents noised to that
 * step's level:
 *
 *   z_known = E(cond)                                   (the stage-2 VAE encoder's posterior mean, scaled)
 *   x[:, :, 0:Fc] ← √ᾱ_t · z_known + √(1 − ᾱ_t) · ε_t,  ε_t ~ N(0, I) fresh per step from the run's generator
 *
 * and the 16 − Fc new positions are denoised jointly with them. In training, the window's noisy input is exactly
 * this (the true window noised, its first Fc frames being the conditioning frames), so the input stays in the
 * model's training distribution. Only the network's input is replaced: the sampler's own state in positions
 * 0..Fc−1 is updated with the network's predictions (made on the replaced input, so it is drawn toward the known
 * latents) and is what the network sees in the steps after the last replaced one; those positions are dropped at
 * the end and only the new positions are kept. (Updating the replaced sample instead, so that the free steps
 * continue from the network's own estimate of the overlap, was measured worse: 6 and 4 cuts and 10 and 3 still
 * windows at 0.9 on seeds 33 and 34, against 2 and 3 cuts and 0 and 2 still windows.)
 *
 * Measured on the default model (24 benchmark prompts, 240 frames, 20 steps, seed 33): share 0 (official) 18 cuts,
 * 0.5 24 cuts, 0.9 2 cuts, 1 3 cuts but two videos whose background turns to texture or whose object fades;
 * with the last 2 of 20 steps free (0.9) neither degraded (models/train/README.md "Run 14"): its default is 0.9.
 * @module
 */
import { InvalidArgumentError } from '../errors.js';
import type { Generator } from '../tensor.js';
import { Tensor, TensorScope } from '../tensor.js';
import type { TorchModule } from '../module.js';

/** The conditioning frames' latents: the posterior mean of `encoder` (a `vae_encoder` returning (mean, std)). */
export async function encodeKnownFrames(encoder: TorchModule, condFrames: Tensor): Promise<Tensor> {
  const out = await encoder.forward([condFrames]);
  const parts = Array.isArray(out) ? out : [out];
  const mean = Array.isArray(out) && out[0] instanceof Tensor ? out[0] : undefined;
  for (const t of parts) if (t instanceof Tensor && t !== mean) t.dispose(); // std (and anything unexpected)
  if (mean === undefined) throw new InvalidArgumentError('vae_encoder must return (mean, std) for `stage2.replaceOverlap`');
  return mean;
}

/**
 * `x` with its first `known.shape[2]` frames replaced by `known` noised to ᾱ (a new tensor; the caller owns it).
 * `x` is [B, C, F, h, w], `known` [B, C, Fc, h, w] with Fc < F; the noise is drawn from `generator`.
 */
export async function replaceKnownFrames(x: Tensor, known: Tensor, alphaCumprod: number, generator: Generator): Promise<Tensor> {
  const [b, c, f, h, w] = x.shape;
  const [kb, kc, fc, kh, kw] = known.shape;
  if (x.shape.length !== 5 || known.shape.length !== 5 || kb !== b || kc !== c || kh !== h || kw !== w || !(fc! < f!)) {
    throw new InvalidArgumentError(`Expected [B, C, F, h, w] latents and [B, C, Fc < F, h, w] known latents for \`replaceKnownFrames\` but received [${x.shape.join(', ')}] and [${known.shape.join(', ')}]`);
  }
  if (!(alphaCumprod > 0 && alphaCumprod <= 1)) throw new InvalidArgumentError(`Expected ᾱ in (0, 1] for \`replaceKnownFrames\` but received ${alphaCumprod}`);
  using scope = new TensorScope();
  const eps = scope.track(await generator.randn(known.shape, { device: known.device, dtype: known.dtype }));
  const noised = scope.track(await Tensor.combine([known, eps], [Math.sqrt(alphaCumprod), Math.sqrt(1 - alphaCumprod)]));
  const rest = scope.track(await x.narrow(2, fc!, f! - fc!));
  return await Tensor.cat([noised, rest], 2);
}
