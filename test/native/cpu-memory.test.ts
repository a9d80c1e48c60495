// CPU tensor memory accounting and limit (binding/cpu_memory.cc): exact byte counts, peak, refusal with a
// typed error, and recovery once the limit is lifted.
import { afterEach, describe, expect, it } from 'vitest';

import { cpuMemoryStats, resetCpuPeakMemory, setCpuMemoryLimit } from '../../lib/device.js';
import { InvalidArgumentError, OutOfMemoryError } from '../../lib/errors.js';
import { Tensor } from '../../lib/tensor.js';

afterEach(() => setCpuMemoryLimit(null));

describe('CPU memory accounting', () => {
  it('is installed and counts a new tensor to the byte, and gives the bytes back on dispose', async () => {
    expect(cpuMemoryStats().accounting).toBe(true);
    const before = cpuMemoryStats().allocated;
    const t = await Tensor.full([1000, 1000], 1.5); // float32: exactly 4,000,000 bytes of storage
    expect(cpuMemoryStats().allocated - before).toBe(4_000_000);
    const d = await Tensor.full([10, 10], 0, { dtype: 'float64' });
    expect(cpuMemoryStats().allocated - before).toBe(4_000_800);
    t.dispose();
    d.dispose();
    expect(cpuMemoryStats().allocated).toBe(before);
  });

  it('keeps the peak until it is reset to the current level', async () => {
    resetCpuPeakMemory();
    const base = cpuMemoryStats();
    expect(base.peakAllocated).toBe(base.allocated);
    const t = await Tensor.full([256, 1024], 0); // 1 MiB
    t.dispose();
    const after = cpuMemoryStats();
    expect(after.peakAllocated - base.allocated).toBeGreaterThanOrEqual(1 << 20);
    resetCpuPeakMemory();
    expect(cpuMemoryStats().peakAllocated).toBe(cpuMemoryStats().allocated);
  });
});

describe('CPU memory limit', () => {
  it('refuses an allocation that would pass it with OutOfMemoryError, and works again once lifted', async () => {
    const { allocated, refused } = cpuMemoryStats();
    setCpuMemoryLimit(allocated + (1 << 20));
    expect(cpuMemoryStats().limit).toBe(allocated + (1 << 20));
    const small = await Tensor.full([1024], 1); // 4 KiB fits
    const err = await Tensor.full([1024, 1024], 1).catch((e: unknown) => e); // 4 MiB does not
    expect(err).toBeInstanceOf(OutOfMemoryError);
    expect(err).toMatchObject({ code: 'ERR_OUT_OF_MEMORY' });
    expect((err as Error).message).toMatch(/CPU memory limit: not enough memory: tried to allocate 4194304 bytes/);
    expect(cpuMemoryStats().refused).toBe(refused + 1);
    expect(cpuMemoryStats().allocated).toBe(allocated + 4096); // the refused bytes were never counted
    setCpuMemoryLimit(null);
    const big = await Tensor.full([1024, 1024], 1);
    expect(big.shape).toEqual([1024, 1024]);
    big.dispose();
    small.dispose();
  });

  it('rejects a negative or non-integer limit with InvalidArgumentError', () => {
    expect(() => setCpuMemoryLimit(-1)).toThrow(InvalidArgumentError);
    expect(() => setCpuMemoryLimit(1.5)).toThrow(InvalidArgumentError);
    expect(() => setCpuMemoryLimit('1' as unknown as number)).toThrow(InvalidArgumentError);
    expect(cpuMemoryStats().limit).toBe(0);
  });
});
