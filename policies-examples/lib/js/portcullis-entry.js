// The module a JavaScript policy is built from (world `policy-json`, contract 0.4.0):
// every export of ./policy.js, plus `authorizeJson`, which the gateway calls instead
// of `authorize`: the request arrives as one JSON string, the decision goes back as
// JSON bytes. The generated bindings lift a record field by field and encode every
// returned string character by character, in interpreted JavaScript; JSON.parse,
// JSON.stringify, TextEncoder and a byte copy run natively, at a fraction of the
// cost. The policy still sees the same objects (requestFromJson) and its `authorize`
// decides. Build scripts stage this file beside the policy (as policy.js) and the
// helper module.

import * as policy from './policy.js';
import { decisionToJson, requestFromJson } from './portcullis-policy.js';

export * from './policy.js';

/** `authorize`, with the request and the decision as JSON. */
export function authorizeJson(text) {
  return decisionToJson(policy.authorize(requestFromJson(text)));
}
