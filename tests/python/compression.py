#!/usr/bin/env python3
"""A real third-party client for tests/compression.rs: Python `websockets` with its default
permessage-deflate offer against a `--compression` server.

Usage: compression.py HOST:PORT

Checks that the 101 agreed permessage-deflate, that echoes of small, large and binary
messages round-trip on /echo, and that a ~1 KiB JSON message published over HTTP reaches a
compressing /ws subscriber intact. Prints one "ok - ..." line per check; exits non-zero (with
the reason on stderr) on the first failure. Every wait is bounded.
"""

import json
import sys
import urllib.request

from websockets.sync.client import connect

TIMEOUT_S = 10


def check(cond, what):
    if not cond:
        raise SystemExit(f"not ok - {what}")
    print(f"ok - {what}", flush=True)


def main() -> int:
    target = sys.argv[1]
    # `connect` offers permessage-deflate by default (client_max_window_bits).
    with connect(f"ws://{target}/echo", open_timeout=TIMEOUT_S, close_timeout=TIMEOUT_S,
                 max_size=4 << 20) as ws:
        ext = ws.response.headers.get("Sec-WebSocket-Extensions", "")
        check(ext.startswith("permessage-deflate"), f"python: 101 agreed compression ({ext})")
        row = {"id": 1, "name": "a user", "tags": ["x", "y"], "active": True}
        messages = [
            "hi",
            json.dumps([dict(row, id=i) for i in range(20)]),
            json.dumps([dict(row, id=i) for i in range(20000)])[: 900 * 1024],
            bytes(range(256)) * 2000,
        ]
        for m in messages:
            ws.send(m)
            back = ws.recv(timeout=TIMEOUT_S)
            check(back == m, f"python: echo of a {len(m)}-byte {type(m).__name__}")

    channel = "py-compression"
    with connect(f"ws://{target}/ws?channel={channel}", open_timeout=TIMEOUT_S,
                 close_timeout=TIMEOUT_S) as sub:
        subscribed = json.loads(sub.recv(timeout=TIMEOUT_S))
        check(subscribed.get("type") == "subscribed", "python: subscribed")
        data = {"items": [dict(row, id=i) for i in range(15)]}
        body = json.dumps(data).encode()
        req = urllib.request.Request(f"http://{target}/publish/{channel}", data=body,
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=TIMEOUT_S) as r:
            check(r.status == 200, "python: published over HTTP")
        got = json.loads(sub.recv(timeout=TIMEOUT_S))
        check(got.get("data") == data, f"python: a {len(body)}-byte broadcast arrived intact")
    return 0


if __name__ == "__main__":
    sys.exit(main())
