/**
 * A small PNG encoder for RGB8 frames (colour type 2, bit depth 8, no interlace), with zlib from `node:zlib` and
 * our own CRC-32. No npm dependency.
 *
 * Layout written: signature, IHDR, one IDAT, IEND. Each scanline is prefixed by its filter byte (PNG spec §9).
 *
 * @module
 */
import { deflate, deflateSync } from 'node:zlib';
import { promisify } from 'node:util';
import { InvalidArgumentError } from '../errors.js';

const deflateAsync = promisify(deflate);

const SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);

/** CRC-32 (ISO-HDLC, reflected polynomial 0xEDB88320) lookup table, as the PNG spec (Annex D) describes. */
const CRC_TABLE: Uint32Array = (() => {
  const table = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    table[n] = c >>> 0;
  }
  return table;
})();

/**
 * CRC-32 of `bytes` (the checksum PNG chunks and zlib's `crc32` use).
 *
 * @example
 * ```ts
 * crc32(Buffer.from('IEND')); // 0xae426082
 * ```
 */
export function crc32(bytes: Uint8Array, initial = 0): number {
  let c = (initial ^ 0xffffffff) >>> 0;
  for (let i = 0; i < bytes.length; i++) c = (CRC_TABLE[(c ^ (bytes[i] as number)) & 0xff] as number) ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

/** PNG scanline filters this encoder can apply (the same filter on every row). */
export type PngFilter = 'none' | 'sub' | 'up';

/** Options of {@link encodePng}. */
export interface PngOptions {
  /**
   * Scanline filter. `'up'` (each byte minus the byte above) usually compresses video frames best of the three.
   * Default: `'up'`.
   */
  readonly filter?: PngFilter | undefined;
  /** zlib compression level, 0 (store) to 9 (smallest). Default: 6. @example `{ level: 1 }` for speed */
  readonly level?: number | undefined;
}

function chunk(type: string, data: Uint8Array): Buffer {
  const out = Buffer.alloc(12 + data.length);
  out.writeUInt32BE(data.length, 0);
  out.write(type, 4, 'latin1');
  out.set(data, 8);
  out.writeUInt32BE(crc32(out.subarray(4, 8 + data.length)), 8 + data.length);
  return out;
}

function validate(data: Uint8Array, width: number, height: number, options: PngOptions): void {
  for (const [name, v] of [['width', width], ['height', height]] as const) {
    if (!Number.isInteger(v) || v <= 0 || v > 0x7fffffff) {
      throw new InvalidArgumentError(`Expected a positive integer for \`${name}\` but received ${String(v)}`);
    }
  }
  if (!(data instanceof Uint8Array) || data.length !== width * height * 3) {
    throw new InvalidArgumentError(
      `Expected a Uint8Array of ${width * height * 3} bytes (${width}x${height} RGB8) for \`data\` but received ` +
        (data instanceof Uint8Array ? `${data.length} bytes` : String(data)),
    );
  }
  const { filter, level } = options;
  if (filter !== undefined && filter !== 'none' && filter !== 'sub' && filter !== 'up') {
    throw new InvalidArgumentError(`Expected 'none', 'sub' or 'up' for \`filter\` but received ${JSON.stringify(filter)}`);
  }
  if (level !== undefined && !(Number.isInteger(level) && level >= 0 && level <= 9)) {
    throw new InvalidArgumentError(`Expected an integer in [0, 9] for \`level\` but received ${String(level)}`);
  }
}

/** Filtered scanlines: for each row, one filter-type byte then `width*3` filtered bytes. */
function filterScanlines(data: Uint8Array, width: number, height: number, filter: PngFilter): Buffer {
  const stride = width * 3;
  const out = Buffer.alloc(height * (stride + 1));
  const type = filter === 'none' ? 0 : filter === 'sub' ? 1 : 2;
  for (let y = 0; y < height; y++) {
    const src = y * stride;
    const dst = y * (stride + 1);
    out[dst] = type;
    if (type === 0) {
      out.set(data.subarray(src, src + stride), dst + 1);
    } else if (type === 1) {
      for (let x = 0; x < stride; x++) {
        const left = x >= 3 ? (data[src + x - 3] as number) : 0;
        out[dst + 1 + x] = ((data[src + x] as number) - left) & 0xff;
      }
    } else {
      for (let x = 0; x < stride; x++) {
        const up = y > 0 ? (data[src - stride + x] as number) : 0;
        out[dst + 1 + x] = ((data[src + x] as number) - up) & 0xff;
      }
    }
  }
  return out;
}

function assemble(width: number, height: number, compressed: Uint8Array): Buffer {
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr[8] = 8; // bit depth
  ihdr[9] = 2; // colour type: truecolour (RGB)
  ihdr[10] = 0; // compression: deflate
  ihdr[11] = 0; // filter method 0 (adaptive, per-row type byte)
  ihdr[12] = 0; // no interlace
  return Buffer.concat([SIGNATURE, chunk('IHDR', ihdr), chunk('IDAT', compressed), chunk('IEND', new Uint8Array(0))]);
}

/**
 * Encodes an RGB8 image as PNG. Compression runs on the libuv thread pool, so the event loop stays free.
 *
 * @param data `width * height * 3` bytes, rows top to bottom, RGB interleaved.
 * @throws {@link InvalidArgumentError} for bad sizes or options.
 *
 * @example
 * ```ts
 * const png = await encodePng(frame.data, frame.width, frame.height);
 * await writeFile('frame.png', png);
 * ```
 */
export async function encodePng(data: Uint8Array, width: number, height: number, options: PngOptions = {}): Promise<Buffer> {
  validate(data, width, height, options);
  const raw = filterScanlines(data, width, height, options.filter ?? 'up');
  return assemble(width, height, await deflateAsync(raw, { level: options.level ?? 6 }));
}

/** Synchronous {@link encodePng}, for tools and tests; avoid it on hot paths. */
export function encodePngSync(data: Uint8Array, width: number, height: number, options: PngOptions = {}): Buffer {
  validate(data, width, height, options);
  const raw = filterScanlines(data, width, height, options.filter ?? 'up');
  return assemble(width, height, deflateSync(raw, { level: options.level ?? 6 }));
}
