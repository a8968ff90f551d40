"""A tiny stand-in for a llama.cpp member, for supervisor tests that need no model.

stub_member.py --port P                  answers GET /openapi.json and /health on P until stopped
stub_member.py --port P --ignore-sigterm the same, but only SIGKILL ends it
stub_member.py --exit "error: MESSAGE"   prints MESSAGE and exits at once with code 3
"""

import argparse
import signal
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer


class Probes(BaseHTTPRequestHandler):
    def do_GET(self):
        # The probe paths of both engines: llama-cpp-python's and llama-server's.
        status = 200 if self.path in ("/openapi.json", "/health") else 404
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b'{"openapi": "3.1.0"}')

    def log_message(self, *args):
        pass


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--ignore-sigterm", action="store_true")
    parser.add_argument("--exit", default=None)
    args, _ = parser.parse_known_args()
    if args.exit is not None:
        print(args.exit, flush=True)
        sys.exit(3)
    if args.ignore_sigterm:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    print(f"stub member listening on {args.port}", flush=True)
    HTTPServer(("127.0.0.1", args.port), Probes).serve_forever()


if __name__ == "__main__":
    main()
