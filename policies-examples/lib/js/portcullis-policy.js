// Thin helpers for Portcullis policies written in JavaScript (componentize-js).
//
// The component model maps the WIT contract (wit/policy.wit) to plain values:
// records are objects with camelCase keys, enums are kebab-case strings
// ('agent', 'unparsed', 'read'), variants are { tag, val } objects, options are a
// value or undefined, and an exported `result<_, string>` is "return = ok,
// throw = err". These helpers build the common values so policies stay short.
// Types for editors: ./portcullis-policy.d.ts.
//
//   import { allow, deny, requireApproval, inAnyGroup } from '../lib/js/portcullis-policy.js';

import { actingFor } from 'portcullis:policy/context@0.4.0';

/**
 * The `request` record from the JSON the gateway passes to `authorize-json` (contract
 * 0.4.0, world `policy-json`): the objects `authorize` would get from the bindings.
 * The JSON already has their shape except for two fields JSON cannot carry:
 * `sessionId` (a decimal string, made a BigInt) and `binary` parameters (arrays of
 * bytes, made Uint8Arrays). An absent option is an absent key (reads as undefined).
 * ./portcullis-entry.js uses it; policies do not need to.
 */
export function requestFromJson(text) {
  const req = JSON.parse(text);
  req.sessionId = BigInt(req.sessionId);
  const params = req.params;
  if (params !== undefined) {
    for (const p of params) {
      if (p.tag === 'binary') p.val = Uint8Array.from(p.val);
    }
  }
  return req;
}

const UTF8 = new TextEncoder();
const ALLOW_JSON = UTF8.encode('{"tag":"allow"}');

/**
 * A `decision` as the UTF-8 JSON `authorize-json` answers with. Whatever the gateway
 * cannot read back as a decision fails the call (the statement is denied), as a
 * malformed decision does through `authorize`.
 */
export function decisionToJson(decision) {
  if (decision !== null && typeof decision === 'object' && decision.tag === 'allow') {
    return ALLOW_JSON;
  }
  return UTF8.encode(JSON.stringify(decision));
}

// A copy of a list as an array. The interpreter runs a spread (`[...xs]`) through the
// iterator protocol, one call per element; slicing an array is native. On the
// approval path this was a measurable share of the call (BENCHMARKS.md).
function copyList(xs) {
  return Array.isArray(xs) ? xs.slice() : Array.from(xs);
}

/** Let the statement run (subject to the other policies). */
export function allow() {
  return { tag: 'allow' };
}

/** Refuse the statement; SQLSTATE 42501 unless given. */
export function deny(message, sqlstate) {
  return { tag: 'deny', val: { message, sqlstate } };
}

/** Hold the statement for approval by `group:x` / `user:y` approvers. */
export function requireApproval(reason, approvers) {
  return { tag: 'require-approval', val: { reason, approvers: copyList(approvers) } };
}

/** Route an approval request to reviewers. */
export function route(approvers, { approvals = 1, ttlSeconds = 3600, channel } = {}) {
  return {
    tag: 'route',
    val: { approvers: copyList(approvers), requiredApprovals: approvals, ttlSeconds, channel },
  };
}

/** True when the identity is in at least one of `groups`. */
export function inAnyGroup(identity, groups) {
  const mine = identity.groups;
  for (let i = 0; i < groups.length; i++) {
    if (mine.includes(groups[i])) return true;
  }
  return false;
}

/**
 * The groups of the person the identity acts for ([] when it acts for no one), asked
 * through the `context` import (contract 0.2.0): the `identity` record only names them.
 */
export function actingForGroups(identity) {
  if (identity.actingFor == null) return [];
  const person = actingFor();
  return person == null ? [] : copyList(person.groups);
}

/** True for an AI agent. */
export function isAgent(identity) {
  return identity.kind === 'agent';
}

/** A settings problem; `configure` rethrows its message (the component's `err`). */
export class SettingsError extends Error {}

/**
 * Parses settings JSON into an object, rejecting anything but an object and any key
 * not in `known` (a misspelt key must fail at load time, not silently never apply).
 */
export function parseSettings(text, known) {
  let value;
  try {
    value = text.trim() ? JSON.parse(text) : {};
  } catch (e) {
    throw new SettingsError(`settings are not valid JSON: ${e.message}`);
  }
  if (value === null) value = {};
  if (typeof value !== 'object' || Array.isArray(value)) {
    throw new SettingsError('settings must be a JSON object');
  }
  for (const key of Object.keys(value)) {
    if (!known.includes(key)) throw new SettingsError(`unknown setting "${key}"`);
  }
  return value;
}

/** `settings[key]` as a list of strings (or `fallback` when absent). */
export function stringList(settings, key, fallback) {
  if (!(key in settings)) return [...fallback];
  const v = settings[key];
  if (!Array.isArray(v) || !v.every((x) => typeof x === 'string')) {
    throw new SettingsError(`setting "${key}" must be a list of strings`);
  }
  return [...v];
}

/**
 * Answers `mask-cells` (contract 0.3.0) with a `maskRows(ctx, rows)` function: unpacks
 * the packed batch into rows of strings / undefined, masks them, packs the answer. A
 * string thrown by `maskRows` fails the result as before:
 *
 *   export function maskCells(ctx, batch) { return maskCellsViaRows(maskRows, ctx, batch); }
 */
export function maskCellsViaRows(maskRows, ctx, batch) {
  const width = batch.columns;
  const bytes = batch.data instanceof Uint8Array ? batch.data : Uint8Array.from(batch.data);
  const decoder = new TextDecoder('utf-8', { fatal: true });
  const rows = [];
  let row = [];
  let at = 0;
  for (const n of batch.lengths) {
    if (n < 0) {
      row.push(undefined);
    } else {
      row.push(decoder.decode(bytes.subarray(at, at + n)));
      at += n;
    }
    if (row.length === width) {
      rows.push(row);
      row = [];
    }
  }
  const encoder = new TextEncoder();
  const parts = [];
  const lengths = [];
  let total = 0;
  for (const r of maskRows(ctx, rows)) {
    for (const v of r) {
      if (v === undefined || v === null) {
        lengths.push(-1);
      } else {
        const b = encoder.encode(v);
        parts.push(b);
        lengths.push(b.length);
        total += b.length;
      }
    }
  }
  const data = new Uint8Array(total);
  let off = 0;
  for (const b of parts) {
    data.set(b, off);
    off += b.length;
  }
  return { columns: width, data, lengths: Int32Array.from(lengths) };
}
