"""The Flask + gunicorn baseline: the Azure ML inference server's design
(azureml-inference-server-http), reduced to its scoring path.

Same shape as azmlinfsrv on Linux: gunicorn sync workers, one Python process
per worker, no --preload, so every worker imports the entry script from
AML_APP_ROOT/AZUREML_ENTRY_SCRIPT and calls init() once at boot; POST /score
passes the raw body decoded as UTF-8 to run() and answers json.dumps(result)
with x-ms-run-fn-exec-ms and request-id headers; GET / answers "Healthy".

Run:  AML_APP_ROOT=... AZUREML_ENTRY_SCRIPT=score.py AZUREML_MODEL_DIR=... \
      gunicorn -k sync -w N -b 127.0.0.1:PORT --timeout 300 --chdir bench/baselines azmlsrv:app
"""
import importlib.util
import json
import os
import sys
import time
import uuid

from flask import Flask, Response, request

app_root = os.environ.get("AML_APP_ROOT", os.getcwd())
sys.path.append(app_root)
entry = os.environ.get("AZUREML_ENTRY_SCRIPT", "main.py")
_spec = importlib.util.spec_from_file_location("entry_module", os.path.join(app_root, entry))
user = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(user)
user.init()

app = Flask(__name__)


def _json(obj, status, rid, extra=None):
    resp = Response(json.dumps(obj), status=status, mimetype="application/json")
    resp.headers["x-request-id"] = rid
    resp.headers["x-ms-request-id"] = request.headers.get("x-ms-client-request-id", rid)
    for k, v in (extra or {}).items():
        resp.headers[k] = v
    return resp


@app.route("/", methods=["GET"])
def liveness():
    return Response("Healthy", mimetype="text/plain")


@app.route("/score", methods=["GET", "POST", "OPTIONS"])
def score():
    rid = request.headers.get("x-request-id") or str(uuid.uuid4())
    if request.method == "OPTIONS":
        return Response(status=200)
    if request.method == "POST":
        try:
            data = request.get_data().decode("utf-8")
        except UnicodeDecodeError as e:
            return _json({"message": "Input cannot be decoded as UTF-8: %s" % e}, 400, rid)
    else:
        data = json.dumps(request.args.to_dict())
    t0 = time.perf_counter()
    try:
        result = user.run(data)
    except Exception:
        return _json({"message": "An unexpected error occurred in scoring script. Check the logs for more info."},
                     500, rid, {"x-ms-run-function-failed": "True"})
    ms = "%.3f" % ((time.perf_counter() - t0) * 1000)
    return _json(result, 200, rid, {"x-ms-run-fn-exec-ms": ms})
