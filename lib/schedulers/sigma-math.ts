/**
 * Step coefficients of the k-diffusion-style samplers in sigma (VE) space, x = x₀ + σ·ε: Euler and
 * DPM-Solver++(2M) SDE (k-diffusion `sample_euler` / `sample_dpmpp_2m_sde` semantics). Pure math;
 * `euler.ts` and `dpmpp-2m-sde.ts` apply them to tensors.
 *
 * Glossary (code → symbol):
 * - `sigmas[i]` → σ_i (VE), `sigmas[i+1]` → σ_{i+1}; `denoised` → D_i = x̂₀(x_i, σ_i); `oldDenoised` → D_{i−1}.
 * - `h` → h_i = log σ_i − log σ_{i+1} = λ_{i+1} − λ_i (λ = −log σ); `hLast` → h_{i−1}.
 * - `eta` → η (0: ODE, 1: full SDE); `sNoise` → noise multiplier; `noise` → n_i ~ N(0, I).
 *
 * @module
 */
import { InvalidArgumentError } from '../errors.js';

/** x_{i+1} = cX·x_i + cDenoised·D_i + cOldDenoised·D_{i−1} + cNoise·n_i. */
export interface SigmaStepCoefficients {
  readonly cX: number;
  readonly cDenoised: number;
  readonly cOldDenoised: number;
  readonly cNoise: number;
}

/**
 * Euler (Karras et al. 2022, Algorithm 2 without churn): d = (x − D)/σ_i, x_{i+1} = x + d·(σ_{i+1} − σ_i),
 * i.e. x_{i+1} = (σ_{i+1}/σ_i)·x + (1 − σ_{i+1}/σ_i)·D.
 */
export function eulerCoefficients(sigma: number, sigmaNext: number): SigmaStepCoefficients {
  if (!(sigma > 0 && Number.isFinite(sigma))) throw new InvalidArgumentError(`Expected a finite positive sigma but received ${sigma}`);
  const ratio = sigmaNext / sigma;
  return { cX: ratio, cDenoised: 1 - ratio, cOldDenoised: 0, cNoise: 0 };
}

/** Options of DPM-Solver++(2M) SDE. */
export interface Dpmpp2mSdeParams {
  /** η: 1 = SDE (stage 3), 0 = the ODE DPM-Solver++(2M). Default 1. */
  readonly eta?: number | undefined;
  /** Noise multiplier s_noise. Default 1. */
  readonly sNoise?: number | undefined;
  /** Second-order correction: `midpoint` (stage 3) or `heun`. Default `midpoint`. */
  readonly solverType?: 'midpoint' | 'heun' | undefined;
}

/**
 * Coefficients of DPM-Solver++(2M) SDE step i (Lu et al. 2022, arXiv 2211.01095, App. "DPM-Solver++ for
 * the diffusion SDE", in k-diffusion's σ form). `hLast` is h_{i−1}, or undefined on the first step (no
 * D_{i−1} yet, first order).
 *
 * (E1) h = log σ_i − log σ_{i+1}, ηh = η·h.
 * (E2) x ← (σ_{i+1}/σ_i)·e^{−ηh}·x + (1 − e^{−h−ηh})·D_i.
 * (E3) midpoint: + ½(1 − e^{−h−ηh})·(h/h_{i−1})·(D_i − D_{i−1});
 *      heun:     + ((1 − e^{−h−ηh})/(−h−ηh) + 1)·(h/h_{i−1})·(D_i − D_{i−1}).
 * (E4) noise: + σ_{i+1}·√(1 − e^{−2ηh})·s_noise·n_i.
 * (E5) σ_{i+1} = 0: x ← D_i (the final denoising step).
 * With η = 1 (E2)–(E4) are spec §1.9's (σ_{i+1}/σ_i)e^{−h}x + (1−e^{−2h})D_i + ½(1−e^{−2h})(D_i−D_{i−1})h/h_{i−1}
 * + σ_{i+1}√(1−e^{−2h})·n_i.
 */
export function dpmpp2mSdeCoefficients(
  sigma: number,
  sigmaNext: number,
  hLast: number | undefined,
  params: Dpmpp2mSdeParams = {},
): SigmaStepCoefficients & { readonly h: number } {
  const eta = params.eta ?? 1;
  const sNoise = params.sNoise ?? 1;
  const solverType = params.solverType ?? 'midpoint';
  if (!(sigma > 0 && Number.isFinite(sigma))) throw new InvalidArgumentError(`Expected a finite positive sigma but received ${sigma}`);
  if (sigmaNext === 0) return { cX: 0, cDenoised: 1, cOldDenoised: 0, cNoise: 0, h: Infinity }; // (E5)
  const h = Math.log(sigma) - Math.log(sigmaNext); // (E1)
  const etaH = eta * h;
  const oneMinusExp = -Math.expm1(-h - etaH); // 1 − e^{−h−ηh}
  const cX = (sigmaNext / sigma) * Math.exp(-etaH); // (E2)
  let cDenoised = oneMinusExp;
  let cOldDenoised = 0;
  if (hLast !== undefined) {
    const invR = h / hLast; // 1/r with r = h_{i−1}/h_i
    const w = solverType === 'heun' ? (oneMinusExp / (-h - etaH) + 1) * invR : 0.5 * oneMinusExp * invR; // (E3)
    cDenoised += w;
    cOldDenoised = -w;
  }
  const cNoise = eta === 0 ? 0 : sigmaNext * Math.sqrt(-Math.expm1(-2 * etaH)) * sNoise; // (E4)
  return { cX, cDenoised, cOldDenoised, cNoise, h };
}
