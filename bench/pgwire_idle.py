#!/usr/bin/env python3
"""Minimal PostgreSQL wire-protocol login (SCRAM-SHA-256, md5 or cleartext), standard
library only. Used by the benchmark to hold many idle, fully logged-in connections.

As a program:  pgwire_idle.py HOST PORT USER DB COUNT   (password in PGPASSWORD)
opens COUNT connections, prints "ready N" and holds them until stdin closes.
"""

import base64
import hashlib
import hmac
import os
import secrets
import socket
import struct
import sys

_SALTED_CACHE = {}


class LoginError(Exception):
    pass


def _recv_exact(sock, n):
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise LoginError("connection closed during login")
        buf += chunk
    return bytes(buf)


def _read_msg(sock):
    head = _recv_exact(sock, 5)
    typ = head[:1]
    (length,) = struct.unpack("!i", head[1:])
    return typ, _recv_exact(sock, length - 4)


def _send(sock, typ, body):
    sock.sendall(typ + struct.pack("!i", len(body) + 4) + body)


def _error_text(body):
    fields = {}
    for part in body.split(b"\0"):
        if part:
            fields[part[:1]] = part[1:].decode("utf-8", "replace")
    return f"{fields.get(b'C', '?')}: {fields.get(b'M', '?')}"


def _salted(password, salt, iters):
    key = (password, salt, iters)
    if key not in _SALTED_CACHE:
        _SALTED_CACHE[key] = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iters)
    return _SALTED_CACHE[key]


def login(host, port, user, password, db, timeout=60.0, app="portcullis-bench-idle"):
    """Opens a connection and logs in; returns the socket once ReadyForQuery arrives."""
    sock = socket.create_connection((host, port), timeout=timeout)
    try:
        params = b"".join(
            k.encode() + b"\0" + v.encode() + b"\0"
            for k, v in (("user", user), ("database", db), ("application_name", app))
        ) + b"\0"
        sock.sendall(struct.pack("!ii", len(params) + 8, 196608) + params)
        client_first_bare = server_first = None
        expected_server_sig = None
        while True:
            typ, body = _read_msg(sock)
            if typ == b"R":
                (code,) = struct.unpack("!i", body[:4])
                if code == 0:
                    continue
                if code == 3:  # cleartext
                    _send(sock, b"p", password.encode() + b"\0")
                elif code == 5:  # md5
                    inner = hashlib.md5((password + user).encode()).hexdigest()
                    outer = hashlib.md5(inner.encode() + body[4:8]).hexdigest()
                    _send(sock, b"p", b"md5" + outer.encode() + b"\0")
                elif code == 10:  # SASL
                    mechs = [m for m in body[4:].split(b"\0") if m]
                    if b"SCRAM-SHA-256" not in mechs:
                        raise LoginError(f"no SCRAM-SHA-256 among {mechs}")
                    nonce = base64.b64encode(secrets.token_bytes(18)).decode()
                    client_first_bare = f"n=,r={nonce}"
                    data = ("n,," + client_first_bare).encode()
                    _send(sock, b"p", b"SCRAM-SHA-256\0" + struct.pack("!i", len(data)) + data)
                elif code == 11:  # SASLContinue
                    server_first = body[4:].decode()
                    attrs = dict(kv.split("=", 1) for kv in server_first.split(","))
                    salted = _salted(password, base64.b64decode(attrs["s"]), int(attrs["i"]))
                    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
                    stored_key = hashlib.sha256(client_key).digest()
                    without_proof = f"c=biws,r={attrs['r']}"
                    auth_msg = f"{client_first_bare},{server_first},{without_proof}".encode()
                    sig = hmac.new(stored_key, auth_msg, hashlib.sha256).digest()
                    proof = bytes(a ^ b for a, b in zip(client_key, sig))
                    server_key = hmac.new(salted, b"Server Key", hashlib.sha256).digest()
                    expected_server_sig = hmac.new(server_key, auth_msg, hashlib.sha256).digest()
                    final = f"{without_proof},p={base64.b64encode(proof).decode()}"
                    _send(sock, b"p", final.encode())
                elif code == 12:  # SASLFinal
                    attrs = dict(kv.split("=", 1) for kv in body[4:].decode().split(","))
                    if base64.b64decode(attrs.get("v", "")) != expected_server_sig:
                        raise LoginError("server SCRAM signature mismatch")
                else:
                    raise LoginError(f"unsupported authentication request {code}")
            elif typ == b"E":
                raise LoginError(_error_text(body))
            elif typ == b"Z":
                sock.settimeout(None)
                return sock
            # S (ParameterStatus), K (BackendKeyData), N (notice): ignored
    except BaseException:
        sock.close()
        raise


def main():
    host, port, user, db, count = sys.argv[1:6]
    password = os.environ.get("PGPASSWORD", "")
    socks = [login(host, int(port), user, password, db) for _ in range(int(count))]
    print(f"ready {len(socks)}", flush=True)
    sys.stdin.read()
    for s in socks:
        s.close()


if __name__ == "__main__":
    main()
