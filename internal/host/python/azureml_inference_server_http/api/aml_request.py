"""moe compatibility shim for azureml_inference_server_http.api.aml_request.

AMLRequest is a small request object with the parts of the Flask/Werkzeug
Request API that scoring scripts use; Flask is not needed.
"""

import io
import json
import shutil
from urllib.parse import parse_qsl

__all__ = ["rawhttp", "AMLRequest", "Headers", "MultiDict", "FileStorage"]

_rawHttpRequested = False


def rawhttp(func):
    """Decorator for run(): pass the whole request (an AMLRequest) to run()."""
    global _rawHttpRequested
    _rawHttpRequested = True
    try:
        func.__aml_rawhttp__ = True
    except (AttributeError, TypeError):
        pass
    return func


class Headers:
    """Case-insensitive, ordered, multi-valued header list (werkzeug-like)."""

    def __init__(self, pairs=None):
        self._list = []
        if pairs:
            items = pairs.items() if hasattr(pairs, "items") else pairs
            for k, v in items:
                self._list.append((str(k), str(v)))

    def __getitem__(self, key):
        lk = key.lower()
        for k, v in self._list:
            if k.lower() == lk:
                return v
        raise KeyError(key)

    def __setitem__(self, key, value):
        self.set(key, value)

    def __delitem__(self, key):
        self.remove(key)

    def __contains__(self, key):
        lk = str(key).lower()
        return any(k.lower() == lk for k, _ in self._list)

    def __iter__(self):
        return iter(list(self._list))

    def __len__(self):
        return len(self._list)

    def __repr__(self):
        return "Headers(%r)" % self._list

    def get(self, key, default=None, type=None):
        try:
            v = self[key]
        except KeyError:
            return default
        if type is not None:
            try:
                return type(v)
            except ValueError:
                return default
        return v

    def getlist(self, key):
        lk = key.lower()
        return [v for k, v in self._list if k.lower() == lk]

    get_all = getlist

    def set(self, key, value):
        self.remove(key)
        self._list.append((str(key), str(value)))

    def add(self, key, value):
        self._list.append((str(key), str(value)))

    add_header = add

    def remove(self, key):
        lk = key.lower()
        self._list = [(k, v) for k, v in self._list if k.lower() != lk]

    def keys(self):
        return [k for k, _ in self._list]

    def values(self):
        return [v for _, v in self._list]

    def items(self):
        return list(self._list)

    def to_dict(self):
        """Like dict(flask.request.headers): repeated headers joined by ','."""
        out = {}
        canon = {}
        for k, v in self._list:
            lk = k.lower()
            if lk in canon:
                out[canon[lk]] += "," + v
            else:
                canon[lk] = k
                out[k] = v
        return out


class MultiDict(dict):
    """A dict of first values that also remembers every value (werkzeug-like)."""

    def __init__(self, pairs=()):
        super().__init__()
        self._lists = {}
        for k, v in pairs:
            self.add(k, v)

    def add(self, key, value):
        if key not in self._lists:
            self._lists[key] = []
            dict.__setitem__(self, key, value)
        self._lists[key].append(value)

    def get(self, key, default=None, type=None):
        if key not in self:
            return default
        v = self[key]
        if type is not None:
            try:
                return type(v)
            except ValueError:
                return default
        return v

    def getlist(self, key, type=None):
        vs = list(self._lists.get(key, []))
        return [type(v) for v in vs] if type is not None else vs

    def lists(self):
        return [(k, list(v)) for k, v in self._lists.items()]

    def to_dict(self, flat=True):
        if flat:
            return dict(self)
        return {k: list(v) for k, v in self._lists.items()}


class FileStorage:
    """An uploaded file of a multipart/form-data request."""

    def __init__(self, data, filename=None, name=None, content_type=None, headers=None):
        self.stream = io.BytesIO(data)
        self.filename = filename
        self.name = name
        self.content_type = content_type or "application/octet-stream"
        self.headers = headers if headers is not None else Headers()

    @property
    def mimetype(self):
        return self.content_type.split(";", 1)[0].strip().lower()

    def read(self, *args):
        return self.stream.read(*args)

    def save(self, dst, buffer_size=16384):
        if isinstance(dst, str) or hasattr(dst, "__fspath__"):
            with open(dst, "wb") as f:
                shutil.copyfileobj(self.stream, f, buffer_size)
        else:
            shutil.copyfileobj(self.stream, dst, buffer_size)

    def __repr__(self):
        return "<FileStorage: %r (%r)>" % (self.filename, self.content_type)


def _parse_multipart(content_type, body):
    from email.parser import BytesParser
    from email.policy import HTTP

    msg = BytesParser(policy=HTTP).parsebytes(
        b"Content-Type: " + content_type.encode("latin-1") + b"\r\nMIME-Version: 1.0\r\n\r\n" + body
    )
    form, files = [], []
    if not msg.is_multipart():
        return MultiDict(), MultiDict()
    for part in msg.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if name is None:
            continue
        filename = part.get_filename()
        payload = part.get_payload(decode=True) or b""
        if filename is not None:
            hdrs = Headers([(k, str(v)) for k, v in part.items()])
            files.append((name, FileStorage(payload, filename, name, part.get("Content-Type"), hdrs)))
        else:
            charset = part.get_content_charset() or "utf-8"
            form.append((name, payload.decode(charset, "replace")))
    return MultiDict(form), MultiDict(files)


class AMLRequest:
    """The request passed to a @rawhttp run(): a Flask-like subset."""

    def __init__(self, method="POST", full_path="/score", query="", headers=None, body=b""):
        self.method = method.upper()
        self.headers = headers if isinstance(headers, Headers) else Headers(headers or ())
        self._body = bytes(body)
        self.query_string = query.encode("latin-1", "replace") if isinstance(query, str) else bytes(query)
        path = full_path.split("?", 1)[0]
        self.path = path
        self.full_path = path + "?" + self.query_string.decode("latin-1")
        self.args = MultiDict(parse_qsl(self.query_string.decode("utf-8", "replace"), keep_blank_values=True))
        self._form = None
        self._files = None
        self._json = None
        self._json_done = False

    @property
    def url(self):
        host = self.headers.get("Host", "localhost")
        return "http://%s%s" % (host, self.full_path if self.query_string else self.path)

    @property
    def content_type(self):
        return self.headers.get("Content-Type")

    @property
    def mimetype(self):
        ct = self.content_type or ""
        return ct.split(";", 1)[0].strip().lower()

    @property
    def content_length(self):
        return self.headers.get("Content-Length", type=int)

    @property
    def is_json(self):
        mt = self.mimetype
        return mt == "application/json" or (mt.startswith("application/") and mt.endswith("+json"))

    @property
    def data(self):
        return self._body

    def get_data(self, cache=True, as_text=False, parse_form_data=False):
        if as_text:
            return self._body.decode("utf-8", "replace")
        return self._body

    @property
    def json(self):
        return self.get_json()

    def get_json(self, force=False, silent=False, cache=True):
        if self._json_done and cache:
            return self._json
        if not (force or self.is_json):
            if silent:
                return None
            raise ValueError("Did not attempt to load JSON data because the request Content-Type was not "
                             "'application/json'.")
        try:
            value = json.loads(self._body)
        except ValueError:
            if silent:
                return None
            raise
        if cache:
            self._json, self._json_done = value, True
        return value

    def _load_form(self):
        if self._form is not None:
            return
        mt = self.mimetype
        if mt == "multipart/form-data":
            self._form, self._files = _parse_multipart(self.content_type, self._body)
        elif mt == "application/x-www-form-urlencoded":
            self._form = MultiDict(parse_qsl(self._body.decode("utf-8", "replace"), keep_blank_values=True))
            self._files = MultiDict()
        else:
            self._form, self._files = MultiDict(), MultiDict()

    @property
    def form(self):
        self._load_form()
        return self._form

    @property
    def files(self):
        self._load_form()
        return self._files

    @property
    def values(self):
        out = MultiDict()
        for k, vs in self.args.lists():
            for v in vs:
                out.add(k, v)
        for k, vs in self.form.lists():
            for v in vs:
                out.add(k, v)
        return out

    def __repr__(self):
        return "<AMLRequest %s %r>" % (self.method, self.full_path)
