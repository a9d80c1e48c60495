#!/usr/bin/env node
// The test command (`npm test`): vitest (TypeScript + native tests) and the Python model tests
// (Debian's /usr/bin/python3 with python3-torch), then ONE summary line `N passed, N failed`.
// Python tests are skipped visibly (and counted as skipped) when no torch-enabled python exists.
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, rmSync } from 'node:fs';

const args = process.argv.slice(2);
const only = args.includes('--ts-only') ? 'ts' : args.includes('--py-only') ? 'py' : 'all';
let passed = 0;
let failed = 0;
let skipped = 0;

if (only !== 'py') {
  const report = '.vitest.json';
  rmSync(report, { force: true });
  const r = spawnSync('npx', ['vitest', 'run', '--reporter=default', '--reporter=json', `--outputFile=${report}`], { stdio: 'inherit' });
  if (existsSync(report)) {
    const j = JSON.parse(readFileSync(report, 'utf8'));
    passed += j.numPassedTests;
    failed += j.numFailedTests;
    skipped += j.numPendingTests + (j.numTodoTests ?? 0);
    // a suite that failed to load counts as a failure even if it has no tests
    if (j.numFailedTestSuites > 0 && j.numFailedTests === 0) failed += j.numFailedTestSuites;
  } else {
    failed += 1;
    console.error(`vitest produced no report (exit ${r.status})`);
  }
}

if (only !== 'ts') {
  const python = process.env.TORCH_TEST_PYTHON ?? '/usr/bin/python3';
  const probe = spawnSync(python, ['-c', 'import torch'], { encoding: 'utf8' });
  if (probe.status !== 0) {
    console.log(`SKIPPED: Python model tests (${python} cannot import torch; apt-get install python3-torch)`);
    skipped += 1;
  } else {
    const r = spawnSync(python, ['-m', 'unittest', 'discover', '-s', 'models/tests', '-t', '.', '-v'], { encoding: 'utf8' });
    process.stdout.write(r.stdout);
    process.stdout.write(r.stderr);
    const ran = /Ran (\d+) tests?/.exec(r.stderr);
    const total = ran ? Number(ran[1]) : 0;
    const fails = Number(/failures=(\d+)/.exec(r.stderr)?.[1] ?? 0) + Number(/errors=(\d+)/.exec(r.stderr)?.[1] ?? 0);
    const skips = Number(/skipped=(\d+)/.exec(r.stderr)?.[1] ?? 0);
    if (!ran) failed += 1;
    passed += total - fails - skips;
    failed += fails;
    skipped += skips;
    if (r.status !== 0 && fails === 0) failed += 1;
  }
}

console.log(`${passed} passed, ${failed} failed, ${skipped} skipped`);
process.exit(failed === 0 ? 0 : 1);
