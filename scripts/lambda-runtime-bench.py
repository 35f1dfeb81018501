#!/usr/bin/env python3
"""Runs one Lambda function binary against a minimal local Runtime API and
reports its init time, handler time and peak RSS.

  lambda-runtime-bench.py BINARY EVENT.json [MEMORY_MB]

init_ms:    from process start to its first GET /runtime/invocation/next
            (the moment it is ready for the first event)
handler_ms: from handing it the event to its response (or error)
max_rss_mb: the process's peak resident memory (getrusage of the child)

The function's environment is this process's; AWS_LAMBDA_* variables that a
real runtime sets are added. Prints one JSON line.
"""
import json
import os
import resource
import signal
import subprocess
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

binary, event_path = sys.argv[1], sys.argv[2]
memory_mb = sys.argv[3] if len(sys.argv) > 3 else "256"
event = open(event_path, "rb").read()
times = {}
result = {}
done = threading.Event()
request_id = str(uuid.uuid4())


class Runtime(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_GET(self):
        if not self.path.endswith("/invocation/next"):
            self.send_error(404)
            return
        if "ready" in times:
            # The second poll: the function is done; hold it until we stop it.
            done.wait(60)
            time.sleep(60)
            return
        times["ready"] = time.monotonic()
        deadline_ms = int((time.time() + 900) * 1000)
        self.send_response(200)
        self.send_header("Lambda-Runtime-Aws-Request-Id", request_id)
        self.send_header("Lambda-Runtime-Deadline-Ms", str(deadline_ms))
        self.send_header("Lambda-Runtime-Invoked-Function-Arn",
                         "arn:aws:lambda:eu-west-2:123456789012:function:bench")
        self.send_header("Lambda-Runtime-Trace-Id", "Root=1-00000000-000000000000000000000000")
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(event)))
        self.end_headers()
        self.wfile.write(event)
        times["sent"] = time.monotonic()

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        times["answered"] = time.monotonic()
        result["outcome"] = "error" if self.path.endswith("/error") else "response"
        result["body"] = body.decode("utf-8", "replace")
        self.send_response(202)
        self.send_header("Content-Length", "0")
        self.end_headers()
        done.set()


server = ThreadingHTTPServer(("127.0.0.1", 0), Runtime)
threading.Thread(target=server.serve_forever, daemon=True).start()
env = dict(os.environ)
name = os.path.basename(binary)
env.update({
    "AWS_LAMBDA_RUNTIME_API": f"127.0.0.1:{server.server_address[1]}",
    "AWS_LAMBDA_FUNCTION_NAME": f"tributary-{name}",
    "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": memory_mb,
    "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
    "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/tributary-{name}",
    "AWS_LAMBDA_LOG_STREAM_NAME": "bench",
    "AWS_LAMBDA_LOG_FORMAT": "JSON",
})
started = time.monotonic()
proc = subprocess.Popen([binary], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
finished = done.wait(900)
proc.send_signal(signal.SIGTERM)
proc.wait()
usage = resource.getrusage(resource.RUSAGE_CHILDREN)
server.shutdown()
report = {
    "function": name,
    "init_ms": round((times["ready"] - started) * 1000, 1) if "ready" in times else None,
    "handler_ms": round((times["answered"] - times["sent"]) * 1000, 1) if finished else None,
    "max_rss_mb": round(usage.ru_maxrss / 1024, 1),
    "outcome": result.get("outcome", "no answer"),
    "response": result.get("body", "")[:300],
}
print(json.dumps(report))
sys.exit(0 if report["outcome"] == "response" else 1)
