#!/usr/bin/env python3
"""A webhook receiver that verifies Standard Webhooks signatures, with
nothing but Python's standard library: what a partner's endpoint must do.

    WEBHOOK_SECRET=whsec_... python3 examples/webhook_receiver.py [port]

Prints one line per verified delivery and answers 204; a delivery whose
signature or timestamp does not verify gets 401 (and is retried by the
sender). Receivers dedupe on `webhook-id`: a retry carries the same one.
"""

import base64
import hashlib
import hmac
import json
import os
import sys
import time
from http.server import BaseHTTPRequestHandler, HTTPServer

SECRET = base64.b64decode(os.environ["WEBHOOK_SECRET"].removeprefix("whsec_"))
TOLERANCE_SECONDS = 5 * 60
seen = set()


def verified(msg_id: str, timestamp: str, body: bytes, signatures: str) -> bool:
    if abs(time.time() - int(timestamp)) > TOLERANCE_SECONDS:
        return False  # too old or from the future: a replay
    signed = f"{msg_id}.{timestamp}.".encode() + body
    expected = base64.b64encode(hmac.new(SECRET, signed, hashlib.sha256).digest()).decode()
    # The header may carry several space-separated `v1,<sig>` (key rotation).
    return any(
        hmac.compare_digest(sig.removeprefix("v1,"), expected)
        for sig in signatures.split()
        if sig.startswith("v1,")
    )


class Receiver(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        msg_id = self.headers.get("webhook-id", "")
        ok = verified(
            msg_id,
            self.headers.get("webhook-timestamp", "0"),
            body,
            self.headers.get("webhook-signature", ""),
        )
        self.send_response(204 if ok else 401)
        self.end_headers()
        if not ok:
            print("REFUSED: signature does not verify", flush=True)
            return
        event = json.loads(body)
        repeat = " (again)" if msg_id in seen else ""
        seen.add(msg_id)
        booking = event["data"]
        print(f"verified {event['type']} {msg_id}{repeat}: booking {booking['id']} is {booking['status']}", flush=True)

    def log_message(self, *args):
        pass


if __name__ == "__main__":
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 9000
    HTTPServer(("127.0.0.1", port), Receiver).serve_forever()
