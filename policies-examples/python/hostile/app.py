"""A deliberately misbehaving Python policy, FOR TESTS ONLY: never deploy it.

It proves the sandbox contains a Python guest the way it contains a Rust one.
Settings: {"behaviour": "allow" | "loop" | "alloc" | "count", "trigger": "<text>"}. With a
trigger it misbehaves in authorize only for statements whose SQL contains the text
and allows the others, so a test can break one statement and check that the next
one works. loop spins forever (CPU deadline); alloc grows a list of 1 MiB strings
until the memory cap stops it; count denies with "call N", N counting this
instance's authorize calls (shows that warm instances are reused).
"""

import json

import wit_world
from componentize_py_types import Err
from wit_world.imports import types as t

_behaviour = "allow"
_trigger = None
_calls = 0


class WitWorld(wit_world.WitWorld):
    def metadata(self):
        return t.Metadata(name="hostile-python", version="0.1.0", hooks=[t.Hook.AUTHORIZE])

    def configure(self, settings):
        global _behaviour, _trigger
        s = json.loads(settings or "{}")
        if s.get("behaviour", "allow") not in ("allow", "loop", "alloc", "count"):
            raise Err(f"unknown behaviour {s.get('behaviour')!r}")
        _behaviour = s.get("behaviour", "allow")
        _trigger = s.get("trigger")

    def authorize(self, req):
        global _calls
        _calls += 1
        if _behaviour == "count":
            return t.Decision_Deny(t.Denial(message=f"call {_calls}", sqlstate=None))
        if _trigger is None or _trigger in req.statement.sql:
            if _behaviour == "loop":
                n = 0
                while True:
                    n += 1
            if _behaviour == "alloc":
                hoard = []
                while True:
                    hoard.append(bytearray(1 << 20))
        return t.Decision_Allow()

    def plan_masks(self, ctx):
        return t.MaskPlan(columns=[], refuse=None)

    def mask_rows(self, ctx, rows):
        return rows

    def mask_cells(self, ctx, batch):
        return batch

    def approve_hook(self, req):
        return t.ApprovalRoute_AutoReject("hostile test policy")
