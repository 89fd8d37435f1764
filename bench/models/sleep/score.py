"""An I/O-bound model: every request waits 20 ms (a remote call, a disk read)."""
import time


def init():
    pass


def run(raw_data):
    time.sleep(0.020)
    return {"slept_ms": 20}
