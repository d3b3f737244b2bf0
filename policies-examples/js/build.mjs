// Builds a JavaScript policy into a component with componentize-js:
//   node build.mjs <source.js> <out.wasm>
// HTTP and fetch-event support are disabled, so the component imports no wasi:http
// (policies have no network); the remaining WASI imports (cli, io, clocks, random,
// filesystem) are satisfied by the gateway's closed WASI context.
// PORTCULLIS_JS_WEVAL=/path/to/weval builds ahead of time with that weval 0.5.0
// (`cargo install weval --version 0.5.0 --locked`): about 9% faster per call, 60%
// larger, two minutes per build (BENCHMARKS.md). The path must exist: without it
// componentize-js would download weval from the network.
import { componentize } from '@bytecodealliance/componentize-js';
import { copyFile, mkdtemp, rename, rm, writeFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { tmpdir } from 'node:os';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const [source, out] = process.argv.slice(2);
if (!source || !out) {
  console.error('usage: node build.mjs <source.js> <out.wasm>');
  process.exit(2);
}
// componentize-js only sees the entry file's directory, so stage the source (as
// policy.js), the helper module (../lib/js/portcullis-policy.js, imported as
// './portcullis-policy.js') and the entry module (../lib/js/portcullis-entry.js: the
// policy's exports plus `authorizeJson`, world `policy-json`) side by side.
const stage = await mkdtemp(join(tmpdir(), 'portcullis-js-'));
const staged = join(stage, 'portcullis-entry.js');
await copyFile(resolve(source), join(stage, 'policy.js'));
await copyFile(resolve(here, '../lib/js/portcullis-policy.js'), join(stage, 'portcullis-policy.js'));
await copyFile(resolve(here, '../lib/js/portcullis-entry.js'), staged);
const weval = process.env.PORTCULLIS_JS_WEVAL;
if (weval && !existsSync(weval)) {
  console.error(`build.mjs: PORTCULLIS_JS_WEVAL=${weval}: no such file`);
  process.exit(1);
}
let component;
try {
  ({ component } = await componentize({
    sourcePath: staged,
    witPath: resolve(here, '../../wit'),
    worldName: 'policy-json',
    disableFeatures: ['http', 'fetch-event'],
    ...(weval ? { enableAot: true, wevalBin: weval } : {}),
  }));
} finally {
  await rm(stage, { recursive: true, force: true });
}
const tmp = `${resolve(out)}.tmp.${process.pid}`;
await writeFile(tmp, component);
await rename(tmp, resolve(out));
console.log(`build.mjs: ${out} ${component.length} bytes`);
