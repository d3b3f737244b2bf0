// Builds policy.js into {{name}}.wasm with componentize-js, without the http and
// fetch-event features (a policy has no network). The entry is portcullis-entry.js:
// policy.js's exports plus `authorizeJson` (world `policy-json`), which the gateway
// calls with the request as one JSON string, a fraction of the cost of `authorize`.
import { componentize } from '@bytecodealliance/componentize-js';
import { writeFile } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const { component } = await componentize({
  sourcePath: resolve(here, 'portcullis-entry.js'),
  witPath: resolve(here, 'wit'),
  worldName: 'policy-json',
  disableFeatures: ['http', 'fetch-event'],
});
await writeFile(resolve(here, '{{name}}.wasm'), component);
console.log(`built {{name}}.wasm (${component.length} bytes)`);
