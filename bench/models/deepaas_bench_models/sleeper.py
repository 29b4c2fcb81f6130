"""Sleeper: ``train`` sleeps ``seconds``; ``predict`` answers at once.

Used to measure how training jobs are started and finished, and whether a
running training slows predictions down. ``predict`` may also sleep, and note
each call it computes in a file, to see which queued calls a server runs.
"""

import time

from webargs import fields

from deepaas_bench_models import metadata, timed_train


def get_metadata():
    return metadata("sleeper", "Training sleeps for 'seconds'.")


def warm():
    return None


def get_predict_args():
    return {
        "text": fields.Str(load_default="", metadata={"description": "Text."}),
        "seconds": fields.Float(
            load_default=0.0, metadata={"description": "How long to sleep (s)."}
        ),
        "marker": fields.Str(
            load_default="",
            metadata={"description": "File to append the text to when computed."},
        ),
    }


def predict(**kwargs):
    if kwargs.get("marker"):
        with open(kwargs["marker"], "a") as out:
            out.write(kwargs.get("text", "") + "\n")
    time.sleep(kwargs.get("seconds", 0.0))
    return {"echo": kwargs.get("text", "")}


def get_train_args():
    return {
        "seconds": fields.Float(
            load_default=1.0, metadata={"description": "How long to sleep (s)."}
        )
    }


def train(**kwargs):
    return timed_train(kwargs.get("seconds", 1.0))
