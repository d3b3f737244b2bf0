// Builds a JavaScript policy into a component with componentize-js:
//   node build.mjs <source.js> <out.wasm>
// HTTP and fetch-event support are disabled, so the component imports no wasi:http
// (policies have no network); the remaining WASI imports (cli, io, clocks, random,
// filesystem) are satisfied by the gateway's closed WASI context.
import { componentize } from '@bytecodealliance/componentize-js';
import { copyFile, mkdtemp, rename, rm, writeFile } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import { tmpdir } from 'node:os';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const [source, out] = process.argv.slice(2);
if (!source || !out) {
  console.error('usage: node build.mjs <source.js> <out.wasm>');
  process.exit(2);
}
// componentize-js only sees the source file's directory, so stage the source and the
// helper module (../lib/js/portcullis-policy.js, imported as './portcullis-policy.js')
// side by side.
const stage = await mkdtemp(join(tmpdir(), 'portcullis-js-'));
const staged = join(stage, basename(source));
await copyFile(resolve(source), staged);
await copyFile(resolve(here, '../lib/js/portcullis-policy.js'), join(stage, 'portcullis-policy.js'));
let component;
try {
  ({ component } = await componentize({
    sourcePath: staged,
    witPath: resolve(here, '../../wit'),
    worldName: 'policy',
    disableFeatures: ['http', 'fetch-event'],
  }));
} finally {
  await rm(stage, { recursive: true, force: true });
}
const tmp = `${resolve(out)}.tmp.${process.pid}`;
await writeFile(tmp, component);
await rename(tmp, resolve(out));
console.log(`build.mjs: ${out} ${component.length} bytes`);
