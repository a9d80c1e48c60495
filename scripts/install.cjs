#!/usr/bin/env node
// npm install / npm ci hook: use a matching prebuild when there is one, else build with cmake-js.
// A source build is forced (prebuilds ignored) when STREAMINGT2V_BUILD_FROM_SOURCE=1, or when the
// user points at a specific libtorch (Torch_DIR / TORCH_DIR / TORCH_PYTHON): a CPU prebuild linked
// against Debian's libtorch must never shadow the user's own (e.g. CUDA) torch.
'use strict';
const { execFileSync } = require('node:child_process');
const path = require('node:path');

const root = path.join(__dirname, '..');
const forced = ['STREAMINGT2V_BUILD_FROM_SOURCE', 'Torch_DIR', 'TORCH_DIR', 'TORCH_PYTHON'].filter((k) => process.env[k]);

function run(args) {
  execFileSync(process.execPath, args, { cwd: root, stdio: 'inherit' });
}

function prebuildLoads() {
  try {
    // node-gyp-build's own check: loads build/Release or a prebuild for this platform.
    run([require.resolve('node-gyp-build/bin.js').replace(/bin\.js$/, 'build-test.js')]);
    return true;
  } catch {
    return false;
  }
}

if (forced.length === 0 && prebuildLoads()) {
  console.log('streamingt2v: using the existing native addon (prebuild or earlier build)');
} else {
  if (forced.length > 0) console.log(`streamingt2v: source build forced by ${forced.join(', ')}`);
  run([require.resolve('cmake-js/bin/cmake-js'), forced.length > 0 ? 'rebuild' : 'compile']);
}
