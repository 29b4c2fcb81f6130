"""Upload: returns the size and sha256 of the file sent as field ``file``."""

import hashlib

from webargs import fields

from deepaas_bench_models import metadata, timed_train


def get_metadata():
    return metadata("upload", "Returns size and sha256 of an uploaded file.")


def warm():
    return None


def get_predict_args():
    return {
        "file": fields.Field(
            required=True,
            metadata={
                "description": "File to hash.",
                "location": "form",
                "type": "file",
            },
        )
    }


def digest(obj):
    """Hash an upload: an object with a ``filename`` path, a file object or bytes."""
    h = hashlib.sha256()
    size = 0
    path = getattr(obj, "filename", None)
    if isinstance(path, str):
        with open(path, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
                size += len(chunk)
    elif hasattr(obj, "read"):
        data = obj.read()
        h.update(data)
        size = len(data)
    elif isinstance(obj, (bytes, bytearray)):
        h.update(obj)
        size = len(obj)
    else:
        raise TypeError(f"unsupported upload: {type(obj)!r}")
    return {"size": size, "sha256": h.hexdigest()}


def predict(**kwargs):
    return digest(kwargs["file"])


def get_train_args():
    return {"seconds": fields.Float(load_default=1.0)}


def train(**kwargs):
    return timed_train(kwargs.get("seconds", 1.0))
