#!/usr/bin/env node
// prebuildify 6 always shells out to node-gyp; this shim (passed as --node-gyp) turns its
// arguments into a cmake-js rebuild. `--target` (a Node version for node-gyp, a CMake target for
// cmake-js) and `--devdir` are dropped; cmake-js builds against node-api-headers (N-API 8).
'use strict';
const { execFileSync } = require('node:child_process');

const out = ['rebuild'];
for (const arg of process.argv.slice(2)) {
  if (arg.startsWith('--arch=')) out.push('--arch', arg.slice('--arch='.length));
  else if (arg === '--debug') out.push('--debug');
}
execFileSync(process.execPath, [require.resolve('cmake-js/bin/cmake-js'), ...out], { stdio: 'inherit' });
