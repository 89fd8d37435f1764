# moe compatibility shim. Extends the package path so that other modules of
# the same package installed in site-packages stay importable.
__path__ = __import__("pkgutil").extend_path(__path__, __name__)
