"""moe model-host worker: imports the scoring script once, calls init(), then
serves run() calls over the frame protocol on fds 3 (in) and 4 (out).

Started by the Go host as `python -u worker.py`; the directory holding this
file also holds the azureml compatibility shims and is first on sys.path.
"""

import datetime
import inspect
import io
import json
import os
import signal
import struct
import sys
import time
import traceback

# Frame protocol between the model host (Go) and its Python workers.
#
# The host talks to each worker over two pipes passed as extra file
# descriptors: fd 3 carries frames host -> worker, fd 4 carries frames
# worker -> host. The script's own stdout/stderr (fd 1/2) never touch them,
# so print() can not corrupt the protocol. python/worker.py quotes this
# comment; change both together.
#
# Every frame is a 24-byte header followed by a payload of N bytes. All
# integers are unsigned big-endian.
#
#     offset  size  field
#     0       2     magic: 0x6D 0x66 ("mf")
#     2       1     version: 1
#     3       1     kind (below)
#     4       4     N: payload length in bytes (meta + body); N <= 1 GiB
#     8       4     M: meta length in bytes; M <= N
#     12      8     request id; 0 for frames not tied to a request
#     20      4     aux: a kind-specific number (below)
#     24      M     meta: zero or more (name, value) pairs, each string encoded
#                   as a 4-byte length followed by that many bytes (UTF-8)
#     24+M    N-M   body: opaque bytes
#
# Kinds:
#
#     1 ready       worker -> host, once, after init() returned.
#                   aux bit 0: run() takes request_headers; bit 1: run() is
#                   @rawhttp. Either bit means requests must carry meta.
#                   meta: informational pairs (e.g. "python", "3.11.2").
#     2 init-failed worker -> host, once, instead of ready; the worker exits 3.
#                   body: a one-paragraph human summary (UTF-8). The traceback
#                   went to the worker's stderr.
#     3 request     host -> worker. aux bit 0: meta holds the request
#                   (":method", ":path" with query, ":query" raw query string,
#                   then one pair per header line, in order); bit 1: the body
#                   is the raw query string of a GET, not a POST body.
#                   body: the HTTP request body as received, never re-encoded.
#     4 response    worker -> host, one per request, same request id.
#                   aux: run() execution time in microseconds (saturating).
#                   meta: empty means 200, Content-Type application/json,
#                   run function not failed. Otherwise pseudo pairs ":status"
#                   (decimal) and ":failed" ("True"/"False") and then response
#                   header pairs in order.
#                   body: the response body.
#
# A worker handles one request at a time, in the order the frames arrive,
# and answers each before it reads the next. The host writes at most two
# requests ahead (the one in run() and the next), and pairs each response
# with the oldest request it has not had an answer for; a frame with any
# other id is discarded.

HDR = struct.Struct(">2sBBIIQI")
MAGIC = b"mf"
VERSION = 1
MAX_FRAME = 1 << 30

KIND_READY = 1
KIND_INIT_FAILED = 2
KIND_REQUEST = 3
KIND_RESPONSE = 4

REQ_META = 1 << 0
REQ_QUERY = 1 << 1
READY_HEADERS = 1 << 0
READY_RAWHTTP = 1 << 1

U32 = struct.Struct(">I")
MAX_U32 = (1 << 32) - 1

USER_ERROR = "An unexpected error occurred in scoring script. Check the logs for more info."
INTERNAL_ERROR = "An unexpected internal error occurred. Check the logs for more info."


def log(level, msg, logger="azmlinfsrv"):
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S,%f")[:-3]
    sys.stderr.write("%s %s [%d] %s - %s\n" % (now, level, os.getpid(), logger, msg))
    sys.stderr.flush()


class ProtocolError(Exception):
    pass


class ScoringTimeout(Exception):
    def __init__(self, timeout_ms):
        super().__init__("Scoring timeout after %d ms" % timeout_ms)
        self.timeout_ms = timeout_ms


def encode_pairs(pairs):
    out = bytearray()
    for name, value in pairs:
        for s in (name, value):
            b = s.encode("utf-8") if isinstance(s, str) else bytes(s)
            out += U32.pack(len(b))
            out += b
    return bytes(out)


def decode_pairs(meta):
    pairs = []
    i, n = 0, len(meta)
    while i < n:
        item = []
        for _ in range(2):
            if i + 4 > n:
                raise ProtocolError("malformed meta")
            (ln,) = U32.unpack_from(meta, i)
            i += 4
            if i + ln > n:
                raise ProtocolError("malformed meta")
            item.append(bytes(meta[i:i + ln]).decode("utf-8", "surrogateescape"))
            i += ln
        pairs.append((item[0], item[1]))
    return pairs


class Channel:
    """The two protocol pipes."""

    def __init__(self, rfd, wfd):
        self.r = io.open(rfd, "rb", buffering=1 << 16, closefd=True)
        self.wfd = wfd

    def read_frame(self):
        hdr = self.r.read(HDR.size)
        if not hdr:
            return None
        if len(hdr) != HDR.size:
            raise ProtocolError("short frame header")
        magic, version, kind, n, m, rid, aux = HDR.unpack(hdr)
        if magic != MAGIC or version != VERSION:
            raise ProtocolError("bad magic or version")
        if n > MAX_FRAME or m > n:
            raise ProtocolError("bad frame lengths")
        payload = self.r.read(n) if n else b""
        if len(payload) != n:
            raise ProtocolError("short frame payload")
        return kind, rid, aux, payload[:m], payload[m:] if m else payload

    def write_frame(self, kind, rid, aux, meta, body):
        if isinstance(body, str):
            body = body.encode("utf-8")
        hdr = HDR.pack(MAGIC, VERSION, kind, len(meta) + len(body), len(meta), rid, aux)
        bufs = [memoryview(hdr), memoryview(meta), memoryview(body)]
        bufs = [b for b in bufs if len(b)]
        while bufs:
            written = os.writev(self.wfd, bufs)
            while written and bufs:
                if written >= len(bufs[0]):
                    written -= len(bufs[0])
                    bufs.pop(0)
                else:
                    bufs[0] = bufs[0][written:]
                    written = 0


def json_dumps(value):
    """Serialise like the Azure server: None -> {}, else json.dumps."""
    if value is None:
        value = {}
    return json.dumps(value)


def load_script(app_root, entry):
    import importlib.util

    path = entry if os.path.isabs(entry) else os.path.join(app_root, entry)
    if not os.path.isfile(path):
        raise FileNotFoundError("scoring script not found: %s" % path)
    log("I", "Found user script at %s" % path)
    spec = importlib.util.spec_from_file_location("entry_module", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["entry_module"] = module
    spec.loader.exec_module(module)
    return module


def inspect_run(run):
    """Validate run()'s signature; return (data param name, wants headers)."""
    sig = inspect.signature(run)
    names = []
    headers = False
    for p in sig.parameters.values():
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            raise TypeError("run() must not take *args or **kwargs")
        if p.kind == p.POSITIONAL_ONLY:
            raise TypeError("run() must not take positional-only parameters")
        if p.name == "request_headers":
            headers = True
        else:
            names.append(p.name)
    if not names:
        raise TypeError("run() must take at least one parameter besides request_headers")
    return names[0], headers


def dump_model_dir(limit=200):
    root = os.environ.get("AZUREML_MODEL_DIR")
    if not root:
        return
    lines = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        depth = dirpath[len(root):].count(os.sep)
        lines.append("%s%s/" % ("    " * depth, os.path.basename(dirpath) or dirpath))
        for f in sorted(filenames):
            lines.append("%s%s" % ("    " * (depth + 1), f))
        if len(lines) >= limit:
            break
    log("I", "Model directory %s contains:\n%s" % (root, "\n".join(lines[:limit])))


def summary(what, exc):
    text = "".join(traceback.format_exception_only(type(exc), exc)).strip()
    return "%s: %s" % (what, text)


class Worker:
    def __init__(self, chan):
        self.chan = chan
        self.timeout_ms = 0
        try:
            self.timeout_ms = int(os.environ.get("SCORING_TIMEOUT_MS", "3600000"))
        except ValueError:
            self.timeout_ms = 3600000
        self.timeout_s = self.timeout_ms / 1000.0
        # The scoring timeout costs no system call per request: ITIMER_REAL is
        # armed when a run() starts and no alarm is pending, and left running
        # when run() returns. When it fires, _alarm raises ScoringTimeout if
        # the run() in progress is past its own deadline, re-arms for that
        # deadline if a later run() is in progress, and lets it lapse if the
        # worker is idle. alarm_due is when the pending alarm fires (0: none).
        self.run_start = None
        self.alarm_due = 0.0
        self.rawhttp = False
        self.headers = False
        self.param = "data"
        self.run = None

    def start(self):
        app_root = os.environ.get("AML_APP_ROOT") or os.getcwd()
        entry = os.environ.get("AZUREML_ENTRY_SCRIPT", "")
        for p in (app_root, os.environ.get("AZUREML_SOURCE_DIRECTORY")):
            if p and p not in sys.path:
                sys.path.append(p)
        try:
            if entry:
                script_dir = os.path.dirname(os.path.join(app_root, entry))
                if script_dir and script_dir not in sys.path:
                    sys.path.append(script_dir)
                module = load_script(app_root, entry)
            else:
                import importlib

                module = importlib.import_module("main")
                sys.modules["entry_module"] = module
        except BaseException as e:  # noqa: BLE001 - anything the import raised
            traceback.print_exc()
            return summary("Failed to load scoring script %r" % entry, e)

        driver = getattr(module, "driver_module", None)
        init = getattr(module, "init", None)
        run = getattr(driver, "run", None) if driver is not None else None
        run = run or getattr(module, "run", None)
        if driver is not None and getattr(driver, "init", None) is not None and init is None:
            init = driver.init
        if not callable(init) or not callable(run):
            missing = [n for n, f in (("init", init), ("run", run)) if not callable(f)]
            msg = "scoring script %s does not define %s()" % (entry, "() and ".join(missing))
            log("E", msg)
            return msg
        try:
            self.param, self.headers = inspect_run(run)
        except (TypeError, ValueError) as e:
            log("E", "Invalid run() signature: %s" % e)
            return "Invalid run() function in %s: %s" % (entry, e)

        from azureml_inference_server_http.api import aml_request

        self.rawhttp = bool(getattr(run, "__aml_rawhttp__", False) or aml_request._rawHttpRequested)
        if self.rawhttp:
            log("I", "run() is decorated with @rawhttp. Server will invoke it with the input as an AMLRequest object.")
        else:
            log("I", "run() is not decorated. Server will invoke it with the input in JSON string.")
        self.run = run

        log("I", "Invoking user's init function")
        try:
            init()
        except BaseException as e:  # noqa: BLE001
            traceback.print_exc()
            log("E", "User's init function failed")
            dump_model_dir()
            return summary("init() raised", e)
        log("I", "Users's init has completed successfully")
        log("I", "Scoring timeout is set to %d" % self.timeout_ms)
        return None

    def serve(self):
        err = self.start()
        if err is not None:
            self.chan.write_frame(KIND_INIT_FAILED, 0, 0, b"", err)
            return 3
        aux = (READY_HEADERS if self.headers else 0) | (READY_RAWHTTP if self.rawhttp else 0)
        meta = encode_pairs([("python", sys.version.split()[0]), ("pid", str(os.getpid()))])
        self.chan.write_frame(KIND_READY, 0, aux, meta, b"")
        log("I", "Worker with pid %d ready for serving traffic" % os.getpid())
        if self.timeout_ms > 0:
            signal.signal(signal.SIGALRM, self._alarm)
        while True:
            f = self.chan.read_frame()
            if f is None:
                return 0
            kind, rid, aux, meta, body = f
            if kind != KIND_REQUEST:
                raise ProtocolError("unexpected frame kind %d" % kind)
            us, rmeta, rbody = self.handle(aux, meta, body)
            self.chan.write_frame(KIND_RESPONSE, rid, us, rmeta, rbody)

    def _alarm(self, signum, frame):
        start = self.run_start
        if start is None:
            self.alarm_due = 0.0  # idle: the next run() arms it again
            return
        now = time.perf_counter()
        left = start + self.timeout_s - now
        if left > 0:
            # Armed for an earlier run(); this one started later.
            self.alarm_due = now + left
            signal.setitimer(signal.ITIMER_REAL, left)
            return
        self.alarm_due = 0.0
        raise ScoringTimeout(self.timeout_ms)

    def handle(self, aux, meta, body):
        pairs = decode_pairs(meta) if aux & REQ_META else ()
        headers = None
        if pairs:
            from azureml_inference_server_http.api.aml_request import Headers

            headers = Headers([p for p in pairs if not p[0].startswith(":")])
        kwargs = {}
        if self.rawhttp:
            from azureml_inference_server_http.api.aml_request import AMLRequest

            pseudo = {k: v for k, v in pairs if k.startswith(":")}
            data = AMLRequest(pseudo.get(":method", "POST"), pseudo.get(":path", "/score"),
                              pseudo.get(":query", ""), headers, body)
        elif aux & REQ_QUERY:
            data = json.dumps(parse_query(body.decode("utf-8", "replace")))
        else:
            try:
                data = str(body, "utf-8")
            except UnicodeDecodeError as ex:
                return 0, error_meta(400, False), error_body("Input cannot be decoded as UTF-8: %s" % ex)
        kwargs[self.param] = data
        if self.headers:
            kwargs["request_headers"] = headers.to_dict() if headers is not None else {}

        t0 = time.perf_counter()
        try:
            try:
                self.run_start = t0
                if self.timeout_ms > 0 and t0 >= self.alarm_due:
                    # No alarm pending (or it is overdue: the script itself
                    # cancelled ITIMER_REAL or alarm()).
                    self.alarm_due = t0 + self.timeout_s
                    signal.setitimer(signal.ITIMER_REAL, self.timeout_s)
                result = self.run(**kwargs)
            finally:
                self.run_start = None
        except ScoringTimeout as ex:
            us = elapsed_us(t0)
            log("E", "Encountered Exception: %s" % traceback.format_exc())
            return us, error_meta(500, True), error_body(str(ex))
        except Exception:
            us = elapsed_us(t0)
            log("E", "Encountered Exception: %s" % traceback.format_exc())
            return us, error_meta(500, True), error_body(USER_ERROR)
        us = elapsed_us(t0)
        try:
            if is_response(result):
                return us, response_meta(result), response_body(result)
            return us, b"", json_dumps(result).encode("utf-8")
        except Exception:
            log("E", "Encountered Exception: %s" % traceback.format_exc())
            return us, error_meta(500, False), error_body(INTERNAL_ERROR)


def elapsed_us(t0):
    return min(int((time.perf_counter() - t0) * 1e6), MAX_U32)


def parse_query(qs):
    from urllib.parse import parse_qsl

    keys = []
    values = {}
    for k, v in parse_qsl(qs, keep_blank_values=True):
        if k not in values:
            keys.append(k)
            values[k] = []
        values[k].append(v)
    out = {}
    for k in keys:
        vs = [_parse_input(v) for v in values[k]]
        out[k] = vs[0] if len(vs) == 1 else vs
    return out


def _parse_input(s):
    try:
        return json.loads(s)
    except ValueError:
        return s


def error_meta(status, failed):
    return encode_pairs([(":status", str(status)), (":failed", "True" if failed else "False"),
                         ("Content-Type", "application/json")])


def error_body(message):
    return json.dumps({"message": message}).encode("utf-8")


def is_response(v):
    return hasattr(v, "status_code") and hasattr(v, "headers") and hasattr(v, "get_data")


def response_meta(resp):
    status = int(resp.status_code)
    failed = bool(getattr(resp, "run_function_failed", False)) or status >= 500
    pairs = [(":status", str(status)), (":failed", "True" if failed else "False")]
    for k, v in resp.headers.items():
        if k.lower() == "x-ms-run-function-failed":
            if str(v) == "True":
                pairs[1] = (":failed", "True")
            continue
        pairs.append((k, str(v)))
    return encode_pairs(pairs)


def response_body(resp):
    data = resp.get_data()
    if isinstance(data, str):
        data = data.encode("utf-8")
    return bytes(data)


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    if sys.path[0] != here:
        sys.path.insert(0, here)
    # The protocol pipes must not leak into processes the script starts.
    for fd in (3, 4):
        os.set_inheritable(fd, False)
    chan = Channel(3, 4)
    try:
        code = Worker(chan).serve()
    except ProtocolError as e:
        log("E", "moe worker: protocol error: %s" % e)
        code = 2
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    main()
