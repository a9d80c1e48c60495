import { chmod, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { InvalidArgumentError, isStreamingT2VError } from '../../lib/errors.js';
import { FfmpegNotFoundError } from '../../lib/video/errors.js';
import { FFMPEG_ENV_VAR, locateFfmpeg } from '../../lib/video/ffmpeg.js';
import { Mp4Writer } from '../../lib/video/mp4-writer.js';
import { hasFfmpeg, tempDir } from './video-helpers.js';

let dir = '';
let cleanup: () => Promise<void> = async () => undefined;
beforeAll(async () => ({ dir, cleanup } = await tempDir('ffmpeg')));
afterAll(() => cleanup());

describe('locateFfmpeg: missing ffmpeg gives a typed error', () => {
  it('an option path that does not exist: FfmpegNotFoundError naming it, with the apt fix, no fallback to PATH', async () => {
    const missing = join(dir, 'no-such-ffmpeg');
    const error = await locateFfmpeg({ ffmpegPath: missing }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(FfmpegNotFoundError);
    const e = error as FfmpegNotFoundError;
    expect(isStreamingT2VError(e)).toBe(true);
    expect(e.code).toBe('ERR_FFMPEG_NOT_FOUND');
    expect(e.nativeCall).toBe('ffmpeg');
    expect(e.tried).toHaveLength(1);
    expect(e.tried[0]).toContain(missing);
    expect(e.tried[0]).toContain('ENOENT');
    expect(e.message).toContain('apt-get install -y --no-install-recommends ffmpeg');
    expect(e.message).toContain(FFMPEG_ENV_VAR);
  });

  it('PATH emptied: says PATH is empty', async () => {
    const error = await locateFfmpeg({ env: { PATH: '' } }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(FfmpegNotFoundError);
    expect((error as FfmpegNotFoundError).tried.join('\n')).toMatch(/PATH is empty/);
  });

  it('PATH without ffmpeg: lists every directory tried', async () => {
    const error = await locateFfmpeg({ env: { PATH: `${dir}:${join(dir, 'sub')}` } }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(FfmpegNotFoundError);
    const tried = (error as FfmpegNotFoundError).tried;
    expect(tried).toHaveLength(2);
    expect(tried[0]).toContain(join(dir, 'ffmpeg'));
    expect(tried[1]).toContain(join(dir, 'sub', 'ffmpeg'));
  });

  it('STREAMINGT2V_FFMPEG pointing nowhere is an error even when PATH has ffmpeg', async () => {
    const missing = join(dir, 'env-ffmpeg');
    const error = await locateFfmpeg({ env: { [FFMPEG_ENV_VAR]: missing, PATH: '/usr/bin:/bin' } }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(FfmpegNotFoundError);
    expect((error as FfmpegNotFoundError).tried[0]).toMatch(new RegExp(`^env ${FFMPEG_ENV_VAR}=.*env-ffmpeg.*ENOENT`));
  });

  it('a file that is not executable, and an executable that is not ffmpeg, are rejected with the reason', async () => {
    const plain = join(dir, 'plain');
    await writeFile(plain, 'not a program');
    const e1 = await locateFfmpeg({ ffmpegPath: plain }).catch((e: unknown) => e);
    expect((e1 as FfmpegNotFoundError).tried[0]).toContain('EACCES');

    const fake = join(dir, 'fake-ffmpeg');
    await writeFile(fake, '#!/bin/sh\necho "hello"\nexit 0\n');
    await chmod(fake, 0o755);
    const e2 = await locateFfmpeg({ ffmpegPath: fake }).catch((e: unknown) => e);
    expect(e2).toBeInstanceOf(FfmpegNotFoundError);
    expect((e2 as FfmpegNotFoundError).tried[0]).toMatch(/did not identify ffmpeg/);
  });

  it('Mp4Writer.open with a missing ffmpeg rejects with FfmpegNotFoundError and spawns nothing', async () => {
    const error = await Mp4Writer.open({ path: join(dir, 'x.mp4'), width: 8, height: 8, env: { PATH: '' } }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(FfmpegNotFoundError);
  });

  it('validates ffmpegPath and probeTimeoutMs', async () => {
    await expect(locateFfmpeg({ ffmpegPath: '' })).rejects.toThrow(/^Expected a non-empty path or command name for `ffmpegPath` but received ""$/);
    await expect(locateFfmpeg({ probeTimeoutMs: -1 })).rejects.toBeInstanceOf(InvalidArgumentError);
  });
});

describe.runIf(hasFfmpeg)('locateFfmpeg with ffmpeg installed', () => {
  it('finds ffmpeg on PATH, with version and libx264', async () => {
    const info = await locateFfmpeg();
    expect(info.source).toBe('path');
    expect(info.path).toMatch(/ffmpeg$/);
    expect(info.version).toMatch(/^[\w.-]+/);
    expect(info.hasLibx264).toBe(true);
  });

  it('option beats env beats PATH', async () => {
    const onPath = await locateFfmpeg();
    const byEnv = await locateFfmpeg({ env: { [FFMPEG_ENV_VAR]: onPath.path, PATH: '' } });
    expect(byEnv).toMatchObject({ source: 'env', path: onPath.path });
    const byOption = await locateFfmpeg({ ffmpegPath: onPath.path, env: { [FFMPEG_ENV_VAR]: join(dir, 'nothing'), PATH: '' } });
    expect(byOption).toMatchObject({ source: 'option', path: onPath.path });
  });

  it('a bare command name in the option is looked up on PATH', async () => {
    const onPath = await locateFfmpeg();
    const info = await locateFfmpeg({ ffmpegPath: 'ffmpeg', env: { PATH: join(onPath.path, '..') } });
    expect(info).toMatchObject({ source: 'option', path: onPath.path });
  });
});
