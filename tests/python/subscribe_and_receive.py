#!/usr/bin/env python3
"""A real third-party client for tests/channels.rs: subscribes with the `websockets` library.

Usage: subscribe_and_receive.py WS_URL CHANNEL COUNT

Sends a JSON `subscribe` (ref "py-1"), prints the `subscribed` reply, then prints the next
COUNT messages, one JSON object per line, and closes cleanly. Every wait is bounded.
"""

import json
import sys

from websockets.sync.client import connect

TIMEOUT_S = 5


def main() -> int:
    url, channel, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    with connect(url, open_timeout=TIMEOUT_S, close_timeout=TIMEOUT_S) as ws:
        ws.send(json.dumps({"op": "subscribe", "channel": channel, "ref": "py-1"}))
        # The test publishes once it has read this line.
        print(json.dumps(json.loads(ws.recv(timeout=TIMEOUT_S))), flush=True)
        for _ in range(count):
            print(json.dumps(json.loads(ws.recv(timeout=TIMEOUT_S))), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
