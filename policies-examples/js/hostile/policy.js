// A deliberately misbehaving JavaScript policy, FOR TESTS ONLY: never deploy it.
//
// It proves the sandbox contains a JavaScript guest the way it contains a Rust one.
// Settings: {"behaviour": "allow" | "loop" | "alloc" | "count" | "describe" | "bad-decision",
// "trigger": "<text>"}. With a
// trigger it misbehaves in authorize only for statements whose SQL contains the text
// and allows the others. loop spins forever (CPU deadline); alloc keeps 1 MiB
// buffers until the memory cap stops it; count denies with "call N", N counting this
// instance's authorize calls (shows that warm instances are reused); describe denies
// with a canonical description of the request it was given, types included (shows
// that `authorize-json` hands the policy the same objects as `authorize`);
// bad-decision returns a denial whose message is a number, which neither `authorize`
// nor `authorize-json` can carry (the call fails, the statement is denied).

let behaviour = 'allow';
let trigger;
let calls = 0;

export function metadata() {
  return { name: 'hostile-js', version: '0.1.0', hooks: ['authorize'] };
}

export function configure(text) {
  const s = JSON.parse(text || '{}');
  const b = s.behaviour ?? 'allow';
  if (!['allow', 'loop', 'alloc', 'count', 'describe', 'bad-decision'].includes(b)) throw `unknown behaviour ${b}`;
  behaviour = b;
  trigger = s.trigger;
}

export function authorize(req) {
  calls += 1;
  if (behaviour === 'count') return { tag: 'deny', val: { message: `call ${calls}` } };
  if (behaviour === 'describe') return { tag: 'deny', val: { message: describe(req) } };
  if (trigger === undefined || req.statement.sql.includes(trigger)) {
    if (behaviour === 'bad-decision') return { tag: 'deny', val: { message: 7 } };
    if (behaviour === 'loop') {
      let n = 0;
      for (;;) n++;
    }
    if (behaviour === 'alloc') {
      const hoard = [];
      for (;;) {
        const b = new Uint8Array(1 << 20);
        b.fill(1);
        hoard.push(b);
      }
    }
  }
  return { tag: 'allow' };
}

// A value with its types, by type tag (the bindings build their values in another
// realm, so `instanceof` and prototypes differ even for plain objects); an absent key
// and an undefined one read alike, as they do for a policy.
function describe(v) {
  if (v === undefined) return 'undefined';
  if (v === null) return 'null';
  switch (typeof v) {
    case 'bigint': return `bigint:${v}`;
    case 'string': return JSON.stringify(v);
    case 'number': case 'boolean': return `${typeof v}:${v}`;
    default: break;
  }
  const tag = Object.prototype.toString.call(v).slice(8, -1);
  if (Array.isArray(v)) return `[${v.map(describe).join(',')}]`;
  if (ArrayBuffer.isView(v) || tag.endsWith('Array')) return `${tag}:[${Array.from(v).join(',')}]`;
  if (tag !== 'Object') return `${tag}:${String(v)}`;
  const keys = Object.keys(v).filter((k) => v[k] !== undefined).sort();
  return `{${keys.map((k) => `${k}=${describe(v[k])}`).join(',')}}`;
}

export function planMasks(_ctx) {
  return { columns: [], refuse: undefined };
}

export function maskCells(_ctx, batch) {
  return batch;
}

export function maskRows(_ctx, rows) {
  return rows;
}

export function approveHook(_req) {
  return { tag: 'auto-reject', val: 'hostile test policy' };
}
