// shop-rules, in JavaScript (componentize-js).
//
// The example policy of policies-examples/: the same rules, settings and messages as
// the Rust (../rust/src/lib.rs) and Python (../python/app.py) versions; all three
// must decide ../fixtures.toml identically. Rules, first match decides:
//   1. an agent may not run a statement the gateway could not parse;
//   2. the table `secrets` is reserved to the groups in `secret_readers`;
//   3. an agent may write only the tables in `agent_write_tables`;
//   4. an agent acting for a person writes only when that person is in one of
//      `agent_sponsor_groups` (when set);
//   5. a DELETE on a table in `approval_tables` needs approval by `approvers`;
//   6. everything else is allowed.
// planMasks masks e-mail columns (native `email` mask) for `email_masked_groups`.
// Build: bash policies-examples/build.sh js

import log from 'log'; // the world-level import is a default import
import {
  SettingsError, actingForGroups, allow, deny, inAnyGroup, isAgent, maskCellsViaRows,
  parseSettings, requireApproval, route, stringList,
} from './portcullis-policy.js'; // staged beside this file by build.mjs

const SECRET_TABLE = 'secrets';
const KEYS = ['agent_write_tables', 'agent_sponsor_groups', 'approval_tables', 'approvers',
  'secret_readers', 'email_masked_groups'];

function validate(text) {
  const s = parseSettings(text, KEYS);
  const v = {
    agentWriteTables: stringList(s, 'agent_write_tables', []),
    agentSponsorGroups: stringList(s, 'agent_sponsor_groups', []),
    approvalTables: stringList(s, 'approval_tables', ['orders']),
    approvers: stringList(s, 'approvers', ['group:dba']),
    secretReaders: stringList(s, 'secret_readers', []),
    emailMaskedGroups: stringList(s, 'email_masked_groups', ['analysts']),
  };
  for (const a of v.approvers) {
    if (!a.startsWith('group:') && !a.startsWith('user:')) {
      throw new SettingsError(`approver "${a}" must start with "group:" or "user:"`);
    }
  }
  if (v.approvalTables.length > 0 && v.approvers.length === 0) {
    throw new SettingsError('approvers must not be empty when approval_tables is set');
  }
  return v;
}

let settings = validate('{}');

export function metadata() {
  return { name: 'shop-rules', version: '0.1.0', hooks: ['authorize', 'mask', 'approve'] };
}

export function configure(text) {
  try {
    settings = validate(text);
  } catch (e) {
    throw e instanceof SettingsError ? e.message : String(e);
  }
  log('info', `shop-rules: agents may write ${settings.agentWriteTables.length} table(s)`);
}

export function authorize(req) {
  const s = settings;
  const st = req.statement;
  const who = req.identity;
  const agent = isAgent(who);
  if (agent && st.kind === 'unparsed') {
    return deny('agents may not run statements the gateway cannot parse');
  }
  for (const t of st.tables) {
    if (t.name === SECRET_TABLE && !inAnyGroup(who, s.secretReaders)) {
      const groups = s.secretReaders.length ? s.secretReaders.join(', ') : 'nobody';
      return deny(`table ${t.name} is restricted to members of: ${groups}`);
    }
  }
  if (agent) {
    for (const t of st.tables) {
      if (t.access !== 'read' && !s.agentWriteTables.includes(t.name)) {
        return deny(`agents may not write to table ${t.name}`);
      }
    }
  }
  const writes = st.tables.some((t) => t.access !== 'read');
  if (agent && who.actingFor != null && writes && s.agentSponsorGroups.length > 0) {
    const groups = actingForGroups(who);
    if (!s.agentSponsorGroups.some((g) => groups.includes(g))) {
      return deny(`agents may write only for members of: ${s.agentSponsorGroups.join(', ')}`);
    }
  }
  if (st.kind === 'delete') {
    for (const t of st.tables) {
      if (t.access === 'write' && s.approvalTables.includes(t.name)) {
        return requireApproval(`DELETE on ${t.name} needs approval`, s.approvers);
      }
    }
  }
  return allow();
}

export function planMasks(ctx) {
  const columns = [];
  if (inAnyGroup(ctx.identity, settings.emailMaskedGroups)) {
    for (const c of ctx.columns) {
      const p = c.provenance;
      const sources = p.tag === 'direct' ? [p.val] : p.tag === 'derived' ? p.val : [];
      if (sources.some((src) => src.column === 'email')) {
        columns.push({ index: c.index, mask: { tag: 'email' } });
      }
    }
  }
  return { columns, refuse: undefined };
}

// Contract 0.3.0's packed batch, answered through maskRows.
export function maskCells(ctx, batch) {
  return maskCellsViaRows(maskRows, ctx, batch);
}

export function maskRows(_ctx, rows) {
  // Only native masks are planned, so the gateway never asks; pass rows through.
  return rows;
}

export function approveHook(req) {
  return route(req.approvers.length ? req.approvers : settings.approvers);
}
