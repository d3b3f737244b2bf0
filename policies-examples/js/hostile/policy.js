// A deliberately misbehaving JavaScript policy, FOR TESTS ONLY: never deploy it.
//
// It proves the sandbox contains a JavaScript guest the way it contains a Rust one.
// Settings: {"behaviour": "allow" | "loop" | "alloc" | "count", "trigger": "<text>"}. With a
// trigger it misbehaves in authorize only for statements whose SQL contains the text
// and allows the others. loop spins forever (CPU deadline); alloc keeps 1 MiB
// buffers until the memory cap stops it; count denies with "call N", N counting this
// instance's authorize calls (shows that warm instances are reused).

let behaviour = 'allow';
let trigger;
let calls = 0;

export function metadata() {
  return { name: 'hostile-js', version: '0.1.0', hooks: ['authorize'] };
}

export function configure(text) {
  const s = JSON.parse(text || '{}');
  const b = s.behaviour ?? 'allow';
  if (!['allow', 'loop', 'alloc', 'count'].includes(b)) throw `unknown behaviour ${b}`;
  behaviour = b;
  trigger = s.trigger;
}

export function authorize(req) {
  calls += 1;
  if (behaviour === 'count') return { tag: 'deny', val: { message: `call ${calls}` } };
  if (trigger === undefined || req.statement.sql.includes(trigger)) {
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
