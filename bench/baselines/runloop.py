"""The limit for one worker: run() called in a loop inside one Python
process, no HTTP, no IPC (only what any server must do besides: decode the
body bytes as UTF-8 and json.dumps the answer). Prints one JSON line: calls/s and per-call
latency percentiles (ms).

usage: runloop.py APP_ROOT ENTRY_SCRIPT MODEL_DIR BODY_FILE SECONDS [MAX_CALLS]
"""
import importlib.util
import json
import os
import sys
import time

app_root, entry, model_dir, body_file, seconds = sys.argv[1:6]
max_calls = int(sys.argv[6]) if len(sys.argv) > 6 else 10_000_000
os.environ["AZUREML_MODEL_DIR"] = model_dir
sys.path.append(app_root)
spec = importlib.util.spec_from_file_location("entry_module", os.path.join(app_root, entry))
user = importlib.util.module_from_spec(spec)
spec.loader.exec_module(user)
user.init()
body = open(body_file, "rb").read()
for _ in range(50):  # warm-up
    json.dumps(user.run(body.decode("utf-8")))
lat = []
end = time.perf_counter() + float(seconds)
start = time.perf_counter()
while len(lat) < max_calls:
    t0 = time.perf_counter()
    json.dumps(user.run(body.decode("utf-8")))  # any server decodes the body and serialises the answer
    t1 = time.perf_counter()
    lat.append(t1 - t0)
    if t1 >= end:
        break
elapsed = time.perf_counter() - start
lat.sort()
q = lambda p: lat[min(len(lat) - 1, int(p * len(lat)))] * 1000
print(json.dumps({"calls": len(lat), "seconds": elapsed, "rps": len(lat) / elapsed,
                  "p50_ms": q(0.50), "p99_ms": q(0.99), "rss_kb": int(open("/proc/self/status").read().split("VmRSS:")[1].split()[0])}))
