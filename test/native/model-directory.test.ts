// models/tiny through the addon: every component's forward against the manifest's shapes and dtypes, and the
// validation errors of readManifest / ModelDirectory.load on broken copies of the directory.
import { cpSync, mkdtempSync, readFileSync, rmSync, truncateSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { afterAll, describe, expect, it } from 'vitest';

import { ModelLoadError } from '../../lib/errors.js';
import { disposeOutput, type ModuleOutput } from '../../lib/module.js';
import { Tensor } from '../../lib/tensor.js';
import { ManifestError, ManifestVersionError } from '../../lib/models/manifest-error.js';
import {
  COMPONENT_ROLES,
  readManifest,
  resolveShape,
  sha256File,
  type ComponentEntry,
  type TensorSpec,
} from '../../lib/models/manifest.js';
import { checkLibtorchVersion, ModelDirectory } from '../../lib/models/model-directory.js';
import type { ModelManifest } from '../../lib/models/manifest-types.js';
import { torchInfo } from '../../lib/device.js';
import { ClipTokenizer } from '../../lib/models/tokenizer.js';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const tinyDir = join(root, 'models', 'tiny');
const scratch: string[] = [];

afterAll(() => scratch.forEach((d) => rmSync(d, { recursive: true, force: true })));

/** A fresh copy of models/tiny whose manifest (as JSON) can be edited. */
function copyTiny(): { dir: string; manifest: Record<string, any>; save: () => void } {
  const dir = mkdtempSync(join(tmpdir(), 'st2v-tiny-'));
  scratch.push(dir);
  cpSync(tinyDir, dir, { recursive: true });
  const manifest = JSON.parse(readFileSync(join(dir, 'manifest.json'), 'utf8')) as Record<string, any>;
  return { dir, manifest, save: () => writeFileSync(join(dir, 'manifest.json'), JSON.stringify(manifest, null, 2)) };
}

async function inputFor(spec: TensorSpec, dims: Record<string, number>, seed: number): Promise<Tensor> {
  const shape = resolveShape(spec.shape, dims);
  if (spec.dtype === 'int64') {
    const n = shape.reduce((a, b) => a * b, 1);
    return Tensor.fromArray(BigInt64Array.from({ length: n }, (_, i) => BigInt((i * 37 + seed) % 600)), shape);
  }
  if (spec.name === 'timestep') return Tensor.full(shape, 501, { dtype: spec.dtype });
  const x = await Tensor.randn(shape, seed, { dtype: spec.dtype });
  if (spec.name === 'image' || spec.name === 'video' || spec.name === 'cond_frames') {
    const clamped = await x.clamp(-1, 1);
    x.dispose();
    return clamped;
  }
  return x;
}

async function expectOutputs(entry: ComponentEntry, out: ModuleOutput, dims: Record<string, number>): Promise<void> {
  const outs = Array.isArray(out) ? out : [out];
  expect(outs.length).toBe(entry.outputs.length);
  for (const [i, spec] of entry.outputs.entries()) {
    const t = outs[i];
    expect(t).toBeInstanceOf(Tensor);
    const tensor = t as Tensor;
    expect(tensor.shape, `${entry.role}.${spec.name}`).toEqual(resolveShape(spec.shape, dims));
    expect(tensor.dtype).toBe(spec.dtype);
    const values = await tensor.toFloat32Array();
    expect(values.every(Number.isFinite), `${entry.role}.${spec.name} finite`).toBe(true);
    expect(await tensor.maxAbs()).toBeGreaterThan(0);
  }
}

describe('models/tiny manifest', () => {
  it('is valid, hashes match, and carries the official constants', async () => {
    const m = await readManifest(tinyDir);
    expect(m.formatVersion).toBe(1);
    expect(Object.keys(m.components).sort()).toEqual([...COMPONENT_ROLES].sort());
    expect(m.components.unet_stage2?.inputs.map((t) => t.name)).toEqual(['sample', 'timestep', 'encoder_hidden_states', 'cond_frames']);
    expect(m.components.unet_stage2?.inputs[2]?.shape).toEqual(['B', 93, 64]);
    expect(m.components.vae_encoder?.outputs.map((t) => t.shape)).toEqual([
      ['B', 4, 'F', 'H/8', 'W/8'],
      ['B', 4, 'F', 'H/8', 'W/8'],
    ]);
    const d = m.defaults;
    expect([d.fps, d.latentScale]).toEqual([8, 0.18215]);
    expect(d.stage1).toEqual({ height: 64, width: 64, numFrames: 16, numInferenceSteps: 50, guidanceScale: 9 });
    expect([d.stage2.windowFrames, d.stage2.conditioningFrames, d.stage2.numInferenceSteps, d.stage2.guidanceScale, d.stage2.eta, d.stage2.seed]).toEqual([16, 8, 50, 7.5, 1, 33]);
    expect([d.stage3.numInferenceSteps, d.stage3.guidanceScale, d.stage3.guidanceRescale, d.stage3.noiseLevel, d.stage3.startTimestep]).toEqual([30, 7.5, 0.2, 600, 599]);
    expect([d.stage3.chunkFrames, d.stage3.overlapFrames, d.stage3.height, d.stage3.solver, d.stage3.predictionType]).toEqual([24, 8, 128, 'dpmpp_2m_sde', 'v_prediction']);
    expect(m.schedulers.stage2).toMatchObject({ timestepSpacing: 'leading', stepsOffset: 1, setAlphaToOne: false, betaSchedule: 'scaled_linear', betaStart: 0.00085, betaEnd: 0.012 });
    expect(m.schedulers.stage1).toMatchObject({ timestepSpacing: 'linspace', solverOrder: 2, lowerOrderFinal: true, stepsOffset: 1 });
    expect(m.schedulers.stage3).toMatchObject({ scaleMin: 2, scaleMax: 4, zeroTerminalSnr: true, predictionType: 'v_prediction', numTrainTimesteps: 1000 });
    expect(m.tokenizers.text_encoder).toMatchObject({ maxLength: 77, padId: 0 });
    expect(m.tokenizers.enhancer_text_encoder.padId).toBe(0);
    const file = m.components.text_encoder as ComponentEntry;
    expect(await sha256File(file.path)).toBe(m.files[file.file]?.sha256);
  });
});

describe('ModelDirectory (models/tiny through the addon)', () => {
  it('loads every component; each forward gives the manifest shapes and dtypes', async () => {
    await using models = await ModelDirectory.load(tinyDir, { device: 'cpu' });
    expect(models.roles).toEqual([...COMPONENT_ROLES]);
    for (const role of COMPONENT_ROLES) {
      const entry = models.entry(role);
      const module = models.module(role);
      expect(module.inputNames).toEqual(entry.inputs.map((t) => t.name));
      // the export's check dims, and for the small components a second binding (batch 1) to show the dims are
      // symbolic (the UNets are skipped there: a new shape costs them another profiling run)
      const bindings = role.includes('unet') ? [entry.exampleDims] : [entry.exampleDims, { ...entry.exampleDims, B: 1 }];
      for (const dims of bindings) {
        const inputs = await Promise.all(entry.inputs.map((spec, i) => inputFor(spec, dims, 11 + i)));
        const out = await module.forward(inputs);
        await expectOutputs(entry, out, dims);
        disposeOutput(out);
        inputs.forEach((t) => t.dispose());
      }
    }
    expect(models.unetStage2).toBe(models.module('unet_stage2'));
    // tokenizer → text encoder, as the pipeline will call them
    const tok = await ClipTokenizer.fromManifest(models.manifest, 'enhancer_text_encoder');
    using ids = await tok.toTensor(['', 'a red ball']);
    expect([ids.shape, ids.dtype]).toEqual([[2, 77], 'int64']);
    using ctx = await models.enhancerTextEncoder.forwardTensor({ input_ids: ids });
    expect(ctx.shape).toEqual([2, 77, 64]);
    expect(models.enhancerVaeDecoder.inputNames).toEqual(['latents']);
  });

  it('loads a subset of roles, rejects bad options, and disposes', async () => {
    const models = await ModelDirectory.load(tinyDir, { roles: ['text_encoder', 'vae_decoder'], verifyHashes: false });
    expect(models.roles).toEqual(['text_encoder', 'vae_decoder']);
    expect(() => models.unetStage1).toThrow(/unet_stage1.*not loaded/);
    const enc = models.textEncoder;
    models.dispose();
    expect(enc.disposed).toBe(true);
    expect(models.disposed).toBe(true);
    expect(() => models.textEncoder).toThrow(/dispose/);
    await expect(ModelDirectory.load(tinyDir, { roles: ['unet_stage3' as never] })).rejects.toMatchObject({ code: 'ERR_INVALID_ARG' });
    await expect(ModelDirectory.load(tinyDir, { dtype: 'int64' })).rejects.toMatchObject({ code: 'ERR_INVALID_ARG' });
  });
});

describe('model directory validation errors', () => {
  it('missing manifest → ModelLoadError naming manifest.json and the export command', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'st2v-empty-'));
    scratch.push(dir);
    const err = await ModelDirectory.load(dir).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ModelLoadError);
    expect((err as ModelLoadError).path).toBe(join(dir, 'manifest.json'));
    expect((err as Error).message).toMatch(/No manifest\.json .*python3 -m models\.export/);
  });

  it('missing component file → ModelLoadError naming the file and component', async () => {
    const { dir } = copyTiny();
    unlinkSync(join(dir, 'vae_decoder.pt'));
    const err = await ModelDirectory.load(dir, { roles: ['text_encoder'] }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ModelLoadError);
    expect((err as ModelLoadError).path).toBe(join(dir, 'vae_decoder.pt'));
    expect((err as Error).message).toMatch(/component vae_decoder.*missing.*re-export/);
  });

  it('sha256 mismatch → ModelLoadError (skippable with verifyHashes: false); size mismatch always caught', async () => {
    const { dir } = copyTiny();
    const cfgPath = join(dir, 'tokenizer_config.json');
    writeFileSync(cfgPath, readFileSync(cfgPath, 'utf8').replace('"right"', '"RIGHT"'));
    const err = await readManifest(dir).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ModelLoadError);
    expect((err as ModelLoadError).path).toBe(cfgPath);
    expect((err as Error).message).toMatch(/sha256 of .*tokenizer_config\.json.*verifyHashes: false/);
    await expect(readManifest(dir, { verifyHashes: false })).resolves.toMatchObject({ name: 'tiny' });

    const unet = join(dir, 'unet_stage1.pt');
    truncateSync(unet, 1000);
    const sizeErr = await readManifest(dir, { verifyHashes: false }).catch((e: unknown) => e);
    expect(sizeErr).toBeInstanceOf(ModelLoadError);
    expect((sizeErr as Error).message).toMatch(/unet_stage1\.pt \(component unet_stage1\) has 1000 bytes/);
  });

  it('truncated TorchScript file (manifest updated to match) → ModelLoadError from the loader naming the file', async () => {
    const { dir, manifest, save } = copyTiny();
    const unet = join(dir, 'unet_stage1.pt');
    truncateSync(unet, 4096);
    manifest.files['unet_stage1.pt'] = { sha256: await sha256File(unet), bytes: 4096 };
    save();
    const err = await ModelDirectory.load(dir, { roles: ['text_encoder', 'unet_stage1'] }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ModelLoadError);
    expect((err as ModelLoadError).path).toBe(unet);
    expect((err as Error).message).toMatch(/Cannot load TorchScript file .*unet_stage1\.pt/);
  });

  it('schema disagreeing with the manifest → ManifestError naming the file and component', async () => {
    const { dir, manifest, save } = copyTiny();
    const entry = manifest.components.find((c: { role: string }) => c.role === 'unet_stage1');
    entry.inputs[2].name = 'context';
    save();
    const err = await ModelDirectory.load(dir, { roles: ['unet_stage1'] }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ManifestError);
    expect((err as ManifestError).role).toBe('unet_stage1');
    expect((err as ManifestError).path).toBe(join(dir, 'unet_stage1.pt'));
    expect((err as Error).message).toMatch(/forward\(sample, timestep, encoder_hidden_states\).*\(sample, timestep, context\).*re-export/);

    // a file swapped for another component's (hash entry updated): vae_decoder pointing at the encoder
    const swapped = copyTiny();
    const dec = swapped.manifest.components.find((c: { role: string }) => c.role === 'vae_decoder');
    dec.file = 'vae_encoder.pt';
    swapped.save();
    const err2 = await ModelDirectory.load(swapped.dir, { roles: ['vae_decoder'] }).catch((e: unknown) => e);
    expect(err2).toBeInstanceOf(ManifestError);
    expect((err2 as Error).message).toMatch(/vae_encoder\.pt \(component vae_decoder\) has forward\(video\)/);
  });

  it('newer format version → ManifestVersionError naming the version and the fix', async () => {
    const { dir, manifest, save } = copyTiny();
    manifest.format_version = 2;
    save();
    const err = await ModelDirectory.load(dir).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ManifestVersionError);
    expect(err).toBeInstanceOf(ManifestError);
    expect((err as ManifestVersionError).formatVersion).toBe(2);
    expect((err as Error).message).toMatch(/format_version 2.*reads format_version ≤ 1.*Upgrade streamingt2v/);
  });

  it('min_libtorch newer than the running libtorch → ModelLoadError naming both and the fix, before any module is loaded; a malformed one → ManifestError', async () => {
    const { dir, manifest, save } = copyTiny();
    manifest.min_libtorch = '99.0';
    save();
    const err = await ModelDirectory.load(dir, { verifyHashes: false }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ModelLoadError);
    expect((err as Error).message).toBe(
      `${dir} needs libtorch >= 99.0 (its files use newer operators, e.g. fused attention), but this addon runs libtorch ${torchInfo().torch}: ` +
        're-export it with `python3 -m models.export --attention math`, or build the addon against torch >= 99.0 (see README "How libtorch is found")',
    );
    manifest.min_libtorch = 'two';
    save();
    await expect(ModelDirectory.load(dir, { verifyHashes: false })).rejects.toThrow(/`min_libtorch` must be a "major\.minor" string, not "two"/);
    const m = { minLibtorch: '2.0', path: 'p', dir: 'd' } as unknown as ModelManifest;
    expect(() => checkLibtorchVersion(m, '2.11.0+cu130')).not.toThrow();
    expect(() => checkLibtorchVersion(m, '2.0.1')).not.toThrow();
    expect(() => checkLibtorchVersion(m, '1.13.1')).toThrow(ModelLoadError);
    expect(() => checkLibtorchVersion({ ...m, minLibtorch: '1.13' }, '1.13.0')).not.toThrow();
    expect(() => checkLibtorchVersion({ ...m, minLibtorch: undefined }, '1.0.0')).not.toThrow();
  });

  it('prompt_words: read as promptWords (absent: undefined, an open vocabulary); anything but a non-empty list of lowercase words → ManifestError naming it', async () => {
    const { dir, manifest, save } = copyTiny();
    expect((await readManifest(dir, { verifyHashes: false })).promptWords).toBeUndefined();
    manifest.prompt_words = ['a', 'red', 'circle', 'été'];
    save();
    const m = await readManifest(dir, { verifyHashes: false });
    expect(m.promptWords).toEqual(['a', 'red', 'circle', 'été']);
    expect(Object.isFrozen(m.promptWords)).toBe(true);
    const cases: [unknown, string][] = [
      ['red', 'not "red"'],
      [[], 'not an empty list'],
      [['a', 'Red'], 'not a list holding "Red"'],
      [['a', 'red circle'], 'not a list holding "red circle"'],
      [['a', 7], 'not a list holding 7'],
      [['a', 'x2'], 'not a list holding "x2"'],
    ];
    for (const [value, text] of cases) {
      manifest.prompt_words = value;
      save();
      const err = await readManifest(dir, { verifyHashes: false }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(ManifestError);
      expect((err as Error).message).toContain(`\`prompt_words\` must be a non-empty list of lowercase words (letters only), ${text}`);
    }
  });

  it('unknown role, missing required role, bad scheduler config, unsafe path → ManifestError', async () => {
    const a = copyTiny();
    a.manifest.components[0].role = 'text_encoder_xl';
    a.save();
    await expect(readManifest(a.dir)).rejects.toThrow(/unknown component role `text_encoder_xl`/);

    const b = copyTiny();
    b.manifest.components = b.manifest.components.filter((c: { role: string }) => c.role !== 'enhancer_unet');
    b.save();
    await expect(readManifest(b.dir)).rejects.toThrow(/no `enhancer_unet` component, which is required/);
    await expect(readManifest(b.dir, { requiredRoles: ['text_encoder'] })).resolves.toMatchObject({ name: 'tiny' });

    const c = copyTiny();
    c.manifest.schedulers.stage2.config.beta_schedule = 'cosine';
    c.save();
    const err = await readManifest(c.dir).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ManifestError);
    expect((err as Error).message).toMatch(/schedulers\.stage2\.config` is invalid: .*beta_schedule/);

    const d = copyTiny();
    d.manifest.components[0].file = '../text_encoder.pt';
    d.save();
    await expect(readManifest(d.dir)).rejects.toThrow(/relative file name inside the model directory/);
  });

  it('defaults.stage2.replace_overlap: optional (0 when absent), a share in [0, 1], anything else → ManifestError', async () => {
    expect((await readManifest(tinyDir, { verifyHashes: false })).defaults.stage2.replaceOverlap).toBe(0);
    const on = copyTiny();
    on.manifest.defaults.stage2.replace_overlap = 0.5;
    on.save();
    expect((await readManifest(on.dir, { verifyHashes: false })).defaults.stage2.replaceOverlap).toBe(0.5);
    const bad = copyTiny();
    bad.manifest.defaults.stage2.replace_overlap = true;
    bad.save();
    const err = await readManifest(bad.dir, { verifyHashes: false }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ManifestError);
    expect((err as Error).message).toMatch(/`defaults\.stage2\.replace_overlap` must be a number in \[0, 1\]/);
  });

  it('defaults.stage2.cut_retries: optional (0 when absent), an integer in [0, 10], anything else → ManifestError', async () => {
    expect((await readManifest(tinyDir, { verifyHashes: false })).defaults.stage2.cutRetries).toBe(0);
    const on = copyTiny();
    on.manifest.defaults.stage2.cut_retries = 2;
    on.save();
    expect((await readManifest(on.dir, { verifyHashes: false })).defaults.stage2.cutRetries).toBe(2);
    for (const value of [1.5, 11, -1, '2']) {
      const bad = copyTiny();
      bad.manifest.defaults.stage2.cut_retries = value;
      bad.save();
      const err = await readManifest(bad.dir, { verifyHashes: false }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(ManifestError);
      expect((err as Error).message).toMatch(/`defaults\.stage2\.cut_retries` must be an integer in \[0, 10\]/);
    }
  });
});
