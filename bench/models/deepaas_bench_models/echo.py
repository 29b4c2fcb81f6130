"""Echo: returns its ``text`` argument, so it measures the framework's overhead."""

from webargs import fields

from deepaas_bench_models import metadata, timed_train


def get_metadata():
    return metadata("echo", "Returns the 'text' argument unchanged.")


def warm():
    return None


def get_predict_args():
    # No location: deepaas reads the query string, then form, then JSON bodies.
    return {"text": fields.Str(required=True, metadata={"description": "Text."})}


def predict(**kwargs):
    return {"echo": kwargs["text"]}


def get_train_args():
    return {
        "seconds": fields.Float(
            load_default=1.0, metadata={"description": "Training length (s)."}
        )
    }


def train(**kwargs):
    return timed_train(kwargs.get("seconds", 1.0))
