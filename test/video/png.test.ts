import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { inflateSync, crc32 as zlibCrc32 } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { InvalidArgumentError } from '../../lib/errors.js';
import { crc32, encodePng, encodePngSync, type PngFilter } from '../../lib/video/png.js';
import { decodeToRgb, hasFfmpeg, makeFrame, noiseFrame, tempDir } from './video-helpers.js';

describe('crc32', () => {
  it('matches the standard check values', () => {
    expect(crc32(Buffer.from('123456789'))).toBe(0xcbf43926);
    expect(crc32(Buffer.from('IEND'))).toBe(0xae426082);
    expect(crc32(new Uint8Array(0))).toBe(0);
  });

  it('agrees with zlib.crc32 on random data, including chained calls', () => {
    const data = noiseFrame(37, 11, 5);
    expect(crc32(data)).toBe(zlibCrc32(data));
    expect(crc32(data.subarray(500), crc32(data.subarray(0, 500)))).toBe(zlibCrc32(data));
  });
});

describe('encodePng structure', () => {
  it('writes signature, IHDR (RGB8, no interlace), IDAT and IEND with valid CRCs', async () => {
    const png = await encodePng(makeFrame(5, 3), 5, 3);
    expect([...png.subarray(0, 8)]).toEqual([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
    const chunks: { type: string; data: Buffer }[] = [];
    let offset = 8;
    while (offset < png.length) {
      const length = png.readUInt32BE(offset);
      const type = png.toString('latin1', offset + 4, offset + 8);
      const data = png.subarray(offset + 8, offset + 8 + length);
      expect(png.readUInt32BE(offset + 8 + length)).toBe(crc32(png.subarray(offset + 4, offset + 8 + length)));
      chunks.push({ type, data });
      offset += 12 + length;
    }
    expect(chunks.map((c) => c.type)).toEqual(['IHDR', 'IDAT', 'IEND']);
    const ihdr = chunks[0]!.data;
    expect([ihdr.readUInt32BE(0), ihdr.readUInt32BE(4), ihdr[8], ihdr[9], ihdr[10], ihdr[11], ihdr[12]]).toEqual([5, 3, 8, 2, 0, 0, 0]);
    // Each scanline: filter byte + 15 bytes.
    expect(inflateSync(chunks[1]!.data).length).toBe(3 * (1 + 15));
  });

  it('async and sync encoders give identical bytes', async () => {
    const frame = makeFrame(17, 9, 3);
    expect((await encodePng(frame, 17, 9, { filter: 'sub', level: 9 })).equals(encodePngSync(frame, 17, 9, { filter: 'sub', level: 9 }))).toBe(true);
  });

  it('rejects bad sizes and options with the house message shape', async () => {
    await expect(encodePng(new Uint8Array(10), 2, 2)).rejects.toThrow(/^Expected a Uint8Array of 12 bytes .* for `data` but received 10 bytes$/);
    await expect(encodePng(new Uint8Array(0), 0, 2)).rejects.toThrow(/Expected a positive integer for `width` but received 0/);
    await expect(encodePng(new Uint8Array(12), 2, 2, { level: 11 })).rejects.toBeInstanceOf(InvalidArgumentError);
    await expect(encodePng(new Uint8Array(12), 2, 2, { filter: 'paeth' as PngFilter })).rejects.toThrow(/for `filter`/);
  });
});

describe.runIf(hasFfmpeg)('encodePng decodes exactly (read back by ffmpeg)', () => {
  let dir = '';
  let cleanup: () => Promise<void> = async () => undefined;
  beforeAll(async () => ({ dir, cleanup } = await tempDir('png')));
  afterAll(() => cleanup());

  const cases: [number, number, PngFilter][] = [
    [1, 1, 'none'],
    [7, 5, 'sub'],
    [64, 33, 'up'],
    [31, 17, 'none'],
    [130, 3, 'sub'],
  ];
  it.each(cases)('%ix%i filter=%s: ffmpeg decodes to the same RGB bytes', async (width, height, filter) => {
    for (const frame of [makeFrame(width, height, 9), noiseFrame(width, height, width + height)]) {
      const file = join(dir, `${width}x${height}-${filter}.png`);
      await writeFile(file, await encodePng(frame, width, height, { filter }));
      const decoded = await decodeToRgb(file);
      expect(decoded.length).toBe(frame.length);
      expect(Buffer.compare(decoded, Buffer.from(frame))).toBe(0);
    }
  });
});
