"""psycopg 3 scenarios for the Portcullis end-to-end tests.

Usage: PORTCULLIS_URI=postgresql://... PORTCULLIS_TAG=unique python3 psycopg_client.py SCENARIO

Runs one scenario against the URI and prints its results as one JSON document
on stdout. The Rust test (tests/tests/psycopg.rs) runs every scenario through
the gateway and straight against PostgreSQL and compares the documents, so the
output contains nothing that legitimately differs between the two (no pids,
no times of day, no user names).
"""

import datetime
import decimal
import json
import os
import sys
import threading
import time
import uuid

import psycopg
from psycopg import sql
from psycopg.types.json import Json, Jsonb

URI = os.environ["PORTCULLIS_URI"]
TAG = os.environ.get("PORTCULLIS_TAG", "t")


def norm(v):
    """Makes a value JSON-friendly and type-revealing."""
    if v is None or isinstance(v, (bool, int, str)):
        return v
    if isinstance(v, float):
        return {"float": repr(v)}
    if isinstance(v, decimal.Decimal):
        return {"decimal": str(v)}
    if isinstance(v, (bytes, bytearray, memoryview)):
        return {"bytes": bytes(v).hex()}
    if isinstance(v, datetime.datetime):
        return {"datetime": v.isoformat()}
    if isinstance(v, (datetime.date, datetime.time, datetime.timedelta)):
        return {type(v).__name__: str(v)}
    if isinstance(v, uuid.UUID):
        return {"uuid": str(v)}
    if isinstance(v, (list, tuple)):
        return [norm(x) for x in v]
    if isinstance(v, dict):
        return {k: norm(x) for k, x in v.items()}
    return {type(v).__name__: str(v)}


def rows(cur):
    return [norm(list(r)) for r in cur.fetchall()]


def all_sets(cur):
    """Every result of a multi-statement execute: [status, rows or None]."""
    out = []
    while True:
        out.append([cur.statusmessage, rows(cur) if cur.description is not None else None])
        if not cur.nextset():
            return out


def describe(cur):
    return [[d.name, d.type_code] for d in (cur.description or [])]


def err(e):
    return {"sqlstate": e.sqlstate, "class": type(e).__name__, "message": e.diag.message_primary}


PARAMS = [
    42,
    -(2**62),
    1.5,
    decimal.Decimal("-12345678901234567890.000123"),
    "héllo\tworld 'quoted' \"dq\"",
    b"\x00\x01\xfe\xff",
    datetime.datetime(2024, 2, 29, 12, 34, 56, 123456, tzinfo=datetime.timezone.utc),
    datetime.date(1999, 12, 31),
    [1, 2, 3],
    ["a", None, "c,d"],
    Jsonb({"a": [1, 2, {"b": None}]}),
    Json([1, "x"]),
    None,
    True,
    uuid.UUID("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"),
]
PARAM_SQL = (
    "select %s::int4, %s::int8, %s::float8, %s::numeric, %s::text, %s::bytea, %s::timestamptz, "
    "%s::date, %s::int4[], %s::text[], %s::jsonb, %s::json, %s::int4, %s::bool, %s::uuid"
)


def scenario_simple(conn):
    out = {}
    cur = conn.cursor()
    # No parameters: psycopg uses the simple query protocol; several statements are allowed.
    cur.execute(
        "create temp table t(id int, v text); insert into t values (1, 'a'), (2, null); "
        "select id, v from t order by id"
    )
    out["multi"] = all_sets(cur)
    cur.execute("select count(*) from customers; select 'second'")
    out["two"] = all_sets(cur)
    # Client-side binding: parameters merged into the text, still simple protocol.
    ccur = psycopg.ClientCursor(conn)
    ccur.execute("select %s, %s, %s, %s", ["it's", 3, None, decimal.Decimal("1.10")])
    out["client_cursor"] = rows(ccur)
    try:
        cur.execute("select 1; select 1/0; select 2")
    except psycopg.Error as e:
        out["error"] = err(e)
    conn.rollback()
    cur.execute("select email from customers where id in (1, 2, 3) order by id")
    out["after_error"] = rows(cur)
    cur.execute("select * from orders order by id limit 20")
    out["orders"] = rows(cur)
    out["orders_desc"] = describe(cur)
    out["rowcount"] = cur.rowcount
    cur.execute("select x from generate_series(1, 50000) x")
    out["big_count"] = len(cur.fetchall())
    return out


def scenario_extended(conn):
    out = {}
    cur = conn.cursor()
    cur.execute(PARAM_SQL, PARAMS)
    out["params"] = rows(cur)
    out["desc"] = describe(cur)
    cur.execute("select id, name, email from customers where id = any(%s) order by id", [[5, 6, 7]])
    out["any"] = rows(cur)
    cur.execute("select %(a)s::int + %(b)s::int as s", {"a": 40, "b": 2})
    out["named"] = rows(cur)
    cur.executemany("select %s::int", [(i,) for i in range(10)], returning=True)
    res = []
    while True:
        res.extend(rows(cur))
        if not cur.nextset():
            break
    out["executemany"] = res
    try:
        cur.execute("select %s::int", ["not an int"])
    except psycopg.Error as e:
        out["bad_param"] = err(e)
    conn.rollback()
    cur.execute(sql.SQL("select {} from {} where id = %s").format(sql.Identifier("name"), sql.Identifier("customers")), [10])
    out["composed"] = rows(cur)
    return out


def scenario_prepared(conn):
    out = {}
    cur = conn.cursor()
    results = []
    for i in range(1, 31):
        cur.execute("select id, amount, status from orders where id = %s", [i], prepare=True)
        results.extend(rows(cur))
    out["explicit"] = results
    # Automatic preparation after prepare_threshold executions.
    conn.prepare_threshold = 2
    auto = []
    for i in range(1, 11):
        cur.execute("select count(*) from orders where customer_id = %s", [i])
        auto.extend(rows(cur))
    out["auto"] = auto
    cur.execute("select count(*) from pg_prepared_statements")
    out["server_prepared_count"] = rows(cur)
    # DEALLOCATE ALL on the server, then psycopg must re-prepare.
    conn.execute("deallocate all")
    again = []
    for i in range(1, 4):
        cur.execute("select id from orders where id = %s", [i], prepare=True)
        again.extend(rows(cur))
    out["after_deallocate"] = again
    return out


def scenario_binary(conn):
    out = {}
    cur = conn.cursor(binary=True)
    cur.execute(PARAM_SQL, PARAMS)
    out["params"] = rows(cur)
    cur.execute(
        "select 1.25::float4, 'NaN'::numeric, '1 day 02:03:04.5'::interval, '23:59:59'::time, "
        "'2024-01-01 00:00:00'::timestamp, array[[1,2],[3,4]], '{\"k\": 1}'::jsonb, '127.0.0.1/32'::inet"
    )
    out["types"] = rows(cur)
    cur.execute("select * from customers order by id")
    out["customers"] = rows(cur)
    cur2 = conn.cursor()
    cur2.execute("select %s::bytea, %s::text", [b"\x00" * 10 + b"x", "text"], binary=True)
    out["binary_flag"] = rows(cur2)
    return out


def scenario_copy(conn):
    out = {}
    cur = conn.cursor()
    cur.execute("create temp table c(id int, name text, amount numeric, at timestamptz)")
    with cur.copy("copy c (id, name, amount, at) from stdin") as copy:
        for i in range(5000):
            copy.write_row(
                (i, None if i % 9 == 0 else f"n\t{i}", decimal.Decimal(i) / 7, datetime.datetime(2024, 1, 1, tzinfo=datetime.timezone.utc))
            )
    cur.execute("select count(*), count(name), sum(id) from c")
    out["loaded"] = rows(cur)
    with cur.copy("copy (select * from c order by id limit 50) to stdout") as copy:
        out["rows_out"] = [norm(list(r)) for r in copy.rows()]
    with cur.copy("copy (select id, name from c order by id limit 20) to stdout (format csv)") as copy:
        out["csv_out"] = b"".join(bytes(b) for b in copy).decode()
    with cur.copy("copy (select id, amount from c order by id limit 20) to stdout (format binary)") as copy:
        copy.set_types(["int4", "numeric"])
        out["binary_out"] = [norm(list(r)) for r in copy.rows()]
    cur.execute("create temp table c2(id int, name text)")
    with cur.copy("copy c2 from stdin (format binary)") as copy:
        copy.set_types(["int4", "text"])
        for i in range(1000):
            copy.write_row((i, f"bin {i}"))
    cur.execute("select count(*), min(name), max(name) from c2")
    out["binary_in"] = rows(cur)
    try:
        with cur.copy("copy c2 from stdin") as copy:
            copy.write(b"1\tok\nnot-int\tbad\n")
    except psycopg.Error as e:
        out["copy_error"] = err(e)
    conn.rollback()
    return out


def scenario_pipeline(conn):
    out = {}
    conn.autocommit = True
    conn.execute("create temp table p(id int primary key, v text)")
    with conn.pipeline():
        curs = []
        for i in range(20):
            curs.append(conn.execute("insert into p values (%s, %s) returning id", [i, f"v{i}"]))
        cur_count = conn.execute("select count(*) from p")
    out["inserted"] = [c.fetchone()[0] for c in curs]
    out["count"] = cur_count.fetchone()[0]
    # An error in the middle of a pipeline.
    results = []
    # Where psycopg raises the error (at the next execute or at sync) depends on when
    # the results arrive, on either path; only the outcome is compared.
    c1 = c3 = None
    try:
        with conn.pipeline() as p:
            c1 = conn.execute("select 'before'")
            conn.execute("insert into p values (1, 'duplicate')")
            c3 = conn.execute("select 'after'")
            p.sync()
    except psycopg.Error as e:
        out["pipeline_error"] = err(e)
    try:
        results.append(norm(c1.fetchone()))
    except psycopg.Error as e:
        results.append(err(e))
    if c3 is None:
        results.append("skipped")
    else:
        try:
            results.append(norm(c3.fetchone()))
        except psycopg.Error:
            results.append("skipped")
    out["around_error"] = results
    out["usable_after"] = conn.execute("select count(*) from p").fetchone()[0]
    # Prepared statements inside a pipeline.
    with conn.pipeline():
        cs = [conn.execute("select v from p where id = %s", [i], prepare=True) for i in range(10)]
    out["prepared_in_pipeline"] = [c.fetchone()[0] for c in cs]
    return out


def wait_active(app):
    with psycopg.connect(URI, autocommit=True) as mon:
        for _ in range(200):
            r = mon.execute(
                "select count(*) from pg_stat_activity where application_name like %s and state = 'active'",
                [app + "%"],
            ).fetchone()[0]
            if r > 0:
                return True
            time.sleep(0.1)
    return False


def scenario_cancel(conn):
    out = {}
    for method in ["cancel", "cancel_safe"]:
        app = f"psy_cancel_{TAG}_{method}"
        with psycopg.connect(URI, application_name=app) as c:
            def canceller():
                out[f"{method}_saw_running"] = wait_active(app)
                getattr(c, method)()

            t = threading.Thread(target=canceller)
            t.start()
            start = time.monotonic()
            try:
                c.execute("select pg_sleep(30)")
                out[method] = "not cancelled"
            except psycopg.Error as e:
                out[method] = err(e)
            out[f"{method}_under_20s"] = time.monotonic() - start < 20
            t.join()
            c.rollback()
            out[f"{method}_usable_after"] = c.execute("select 1").fetchone()[0]
    return out


def scenario_notify(conn):
    out = {}
    channel = f"psy_chan_{TAG}"
    conn.autocommit = True
    conn.execute(sql.SQL("listen {}").format(sql.Identifier(channel)))
    with psycopg.connect(URI, autocommit=True) as sender:
        sender.execute("select pg_notify(%s, %s)", [channel, "one"])
        sender.execute(sql.SQL("notify {}, 'two'").format(sql.Identifier(channel)))
        with sender.transaction():
            sender.execute("select pg_notify(%s, %s)", [channel, "three"])
    got = []
    for n in conn.notifies(timeout=20, stop_after=3):
        got.append([n.channel == channel, n.payload])
    out["notifications"] = got
    return out


SCENARIOS = {
    name[len("scenario_"):]: fn for name, fn in globals().items() if name.startswith("scenario_")
}


def main():
    name = sys.argv[1]
    with psycopg.connect(URI) as conn:
        result = SCENARIOS[name](conn)
    json.dump(result, sys.stdout, sort_keys=True, indent=1)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
