"""shop-rules, in Python (componentize-py).

The example policy of policies-examples/: the same rules, settings and messages as
the Rust (../rust/src/lib.rs) and JavaScript (../js/policy.js) versions; all three
must decide ../fixtures.toml identically. Rules, first match decides:

1. an agent may not run a statement the gateway could not parse;
2. the table `secrets` is reserved to the groups in `secret_readers`;
3. an agent may write only the tables in `agent_write_tables`;
4. an agent acting for a person writes only when that person is in one of
   `agent_sponsor_groups` (when set);
5. a DELETE on a table in `approval_tables` needs approval by `approvers`;
6. everything else is allowed.

plan-masks masks e-mail columns (native `email` mask) for `email_masked_groups`.
Build: bash policies-examples/build.sh python
"""

import wit_world
from componentize_py_types import Err

from portcullis_policy import (
    MaskCellsFromRows, SettingsError, acting_for_groups, allow, deny, in_any_group, is_agent,
    log_info, parse_settings, require_approval, route, string_list, t,
)

SECRET_TABLE = "secrets"
KEYS = ["agent_write_tables", "agent_sponsor_groups", "approval_tables", "approvers",
        "secret_readers", "email_masked_groups"]


class Settings:
    """The validated settings (same messages as the other languages)."""

    def __init__(self, text: str):
        s = parse_settings(text, KEYS)
        self.agent_write_tables = string_list(s, "agent_write_tables", [])
        self.agent_sponsor_groups = string_list(s, "agent_sponsor_groups", [])
        self.approval_tables = string_list(s, "approval_tables", ["orders"])
        self.approvers = string_list(s, "approvers", ["group:dba"])
        self.secret_readers = string_list(s, "secret_readers", [])
        self.email_masked_groups = string_list(s, "email_masked_groups", ["analysts"])
        for a in self.approvers:
            if not (a.startswith("group:") or a.startswith("user:")):
                raise SettingsError(f'approver "{a}" must start with "group:" or "user:"')
        if self.approval_tables and not self.approvers:
            raise SettingsError("approvers must not be empty when approval_tables is set")


_settings = Settings("{}")


# MaskCellsFromRows: contract 0.3.0's packed `mask_cells`, answered through mask_rows.
class WitWorld(MaskCellsFromRows, wit_world.WitWorld):
    def metadata(self) -> t.Metadata:
        return t.Metadata(name="shop-rules", version="0.1.0",
                          hooks=[t.Hook.AUTHORIZE, t.Hook.MASK, t.Hook.APPROVE])

    def configure(self, settings: str) -> None:
        global _settings
        try:
            _settings = Settings(settings)
        except SettingsError as e:
            raise Err(str(e))
        log_info(f"shop-rules: agents may write {len(_settings.agent_write_tables)} table(s)")

    def authorize(self, req: t.Request) -> t.Decision:
        s = _settings
        st = req.statement
        who = req.identity
        agent = is_agent(who)
        if agent and st.kind == t.StatementKind.UNPARSED:
            return deny("agents may not run statements the gateway cannot parse")
        for tbl in st.tables:
            if tbl.name == SECRET_TABLE and not in_any_group(who, s.secret_readers):
                groups = ", ".join(s.secret_readers) if s.secret_readers else "nobody"
                return deny(f"table {tbl.name} is restricted to members of: {groups}")
        if agent:
            for tbl in st.tables:
                if tbl.access != t.Access.READ and tbl.name not in s.agent_write_tables:
                    return deny(f"agents may not write to table {tbl.name}")
        writes = any(tbl.access != t.Access.READ for tbl in st.tables)
        if (agent and who.acting_for is not None and writes and s.agent_sponsor_groups
                and not set(acting_for_groups(who)) & set(s.agent_sponsor_groups)):
            return deny("agents may write only for members of: "
                        + ", ".join(s.agent_sponsor_groups))
        if st.kind == t.StatementKind.DELETE:
            for tbl in st.tables:
                if tbl.access == t.Access.WRITE and tbl.name in s.approval_tables:
                    return require_approval(f"DELETE on {tbl.name} needs approval", s.approvers)
        return allow()

    def plan_masks(self, ctx: t.ResultContext) -> t.MaskPlan:
        columns = []
        if in_any_group(ctx.identity, _settings.email_masked_groups):
            for c in ctx.columns:
                p = c.provenance
                if isinstance(p, t.Provenance_Direct):
                    sources = [p.value]
                elif isinstance(p, t.Provenance_Derived):
                    sources = p.value
                else:
                    sources = []
                if any(src.column == "email" for src in sources):
                    columns.append(t.ColumnMask(index=c.index, mask=t.MaskFunction_Email()))
        return t.MaskPlan(columns=columns, refuse=None)

    def mask_rows(self, ctx, rows):
        # Only native masks are planned, so the gateway never asks; pass rows through.
        return rows

    def approve_hook(self, req: t.ApprovalRequest) -> t.ApprovalRoute:
        return route(req.approvers if req.approvers else _settings.approvers)
