"""psycopg 3 client for the masking end-to-end tests (tests/tests/masking.rs).

Usage: PORTCULLIS_URI=postgresql://... python3 masking_client.py '["SELECT ...", ...]'

Runs every statement twice, with a text cursor and a binary cursor, and prints one
JSON document: for each statement, {"text": ..., "binary": ...} where each is either
{"rows": [[...], ...]} (values as strings, or null) or {"error": "<SQLSTATE>"}.
"""

import json
import os
import sys

import psycopg

URI = os.environ["PORTCULLIS_URI"]


def norm(v):
    if v is None:
        return None
    if isinstance(v, (bytes, bytearray, memoryview)):
        return bytes(v).decode("utf-8", "replace")
    if isinstance(v, (dict, list)):
        return json.dumps(v, sort_keys=True)
    return str(v)


def run(conn, sql, binary):
    try:
        with conn.cursor(binary=binary) as cur:
            cur.execute(sql)
            rows = cur.fetchall() if cur.description is not None else []
            return {"rows": [[norm(v) for v in r] for r in rows]}
    except psycopg.Error as e:
        return {"error": e.sqlstate}


def main():
    statements = json.loads(sys.argv[1])
    out = {}
    with psycopg.connect(URI, autocommit=True) as conn:
        for sql in statements:
            out[sql] = {"text": run(conn, sql, False), "binary": run(conn, sql, True)}
            # The session must stay usable after every outcome.
            with conn.cursor() as cur:
                cur.execute("SELECT 1")
                assert cur.fetchone() == (1,)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
