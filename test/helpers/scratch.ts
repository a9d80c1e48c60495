/**
 * Scratch directories for tests: created under the OS temp directory and removed when the test that made
 * them finishes (passed or failed), so a test run leaves nothing behind in /tmp.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { onTestFinished } from 'vitest';

/** A fresh directory `<tmp>/<prefix>XXXXXX`, removed with its contents once the calling test finishes. */
export function scratchDir(prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  onTestFinished(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}
