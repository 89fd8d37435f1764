"""A model that only measures its input: for the 1 MB request-body scenario,
so the time goes to moving bytes, not to computing."""


def init():
    pass


def run(raw_data):
    return {"bytes": len(raw_data)}
