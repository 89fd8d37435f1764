"""moe compatibility shim for azureml_inference_server_http.api.aml_response.

AMLResponse is returned by run() to control status, headers and body; the
host sends it as-is. Flask is not needed.
"""

import json

from .aml_request import Headers

__all__ = ["AMLResponse"]


class AMLResponse:
    """AMLResponse(message, status_code, response_headers=None, json_str=False, run_function_failed=False)."""

    default_mimetype = "text/html"

    def __init__(self, message, status_code, response_headers=None, json_str=False, run_function_failed=False):
        self.status_code = int(status_code)
        self.headers = Headers()
        self.run_function_failed = bool(run_function_failed)
        response_headers = response_headers or {}
        if message is None:
            body, ctype = json.dumps({}), "application/json"
        elif json_str:
            body, ctype = json.dumps(message), "application/json"
        elif isinstance(message, (bytes, bytearray, memoryview, str)):
            body, ctype = message, "text/html; charset=utf-8"
        else:
            # Flask would iterate a dict or list; serialising it is what the
            # legacy json_str=True default did and what users expect.
            body, ctype = json.dumps(message), "application/json"
        self.set_data(body)
        if not any(k.lower() == "content-type" for k in response_headers):
            self.headers.set("Content-Type", ctype)
        # Comma-separated values become repeated headers, as in the Azure server.
        for header, value in response_headers.items():
            for v in str(value).split(","):
                self.headers.add(header, v.strip())

    @property
    def status(self):
        return "%d" % self.status_code

    @property
    def content_type(self):
        return self.headers.get("Content-Type")

    @property
    def mimetype(self):
        ct = self.content_type or ""
        return ct.split(";", 1)[0].strip()

    @property
    def data(self):
        return self._data

    @data.setter
    def data(self, value):
        self.set_data(value)

    def get_data(self, as_text=False):
        return self._data.decode("utf-8") if as_text else self._data

    def set_data(self, value):
        if isinstance(value, str):
            value = value.encode("utf-8")
        self._data = bytes(value)

    @property
    def is_json(self):
        return self.mimetype == "application/json"

    def get_json(self, silent=False):
        try:
            return json.loads(self._data)
        except ValueError:
            if silent:
                return None
            raise

    @property
    def json(self):
        return self.get_json()

    def __repr__(self):
        return "<AMLResponse %d>" % self.status_code
