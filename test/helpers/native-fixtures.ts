// Reference values written by models/fixtures/make_native_fixtures.py (Debian torch 1.13).
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const fixturesDir = join(dirname(fileURLToPath(import.meta.url)), '..', 'fixtures', 'native');

export interface NativeReference {
  torch: string;
  affine: { x: number[]; scale: number; y: number[] };
  mini_unet: { params: number; sample_shape: number[]; ctx_shape: number[]; timestep: number; sample: number[]; ctx: number[]; out: number[] };
  randn: { seed: number; shape: number[]; values: number[] }[];
  stream: { seed: number; draws: number[][] };
  resize: { input: number[]; shape: number[]; cases: { mode: 'bilinear' | 'bicubic' | 'nearest'; size: [number, number]; antialias: boolean; out: number[] }[] };
}

export const reference: NativeReference = JSON.parse(readFileSync(join(fixturesDir, 'reference.json'), 'utf8')) as NativeReference;

/** max |a - b| over two equal-length arrays. */
export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`length mismatch ${a.length} vs ${b.length}`);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs((a[i] as number) - (b[i] as number)));
  return m;
}
