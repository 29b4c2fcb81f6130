"""A model for the training worker tests: its ``train()`` does what it is asked.

A module of its own (not a test module) so that spawned workers import it cheaply.
"""

import os
import signal
import time

from deepaas.model import progress


class Unpicklable(Exception):
    def __init__(self, handle):
        super().__init__("cannot pickle me")
        self.handle = handle

    def __reduce__(self):
        raise TypeError("no pickling")


class Trainee:
    """Counts its warm-ups and trainings: the object lives on in its worker."""

    def __init__(self):
        self.warmed = 0
        self.trainings = 0

    def warm(self):
        self.warmed += 1

    def train(self, text="", fraction=None, seconds=0.0, action=""):
        self.trainings += 1
        if text:
            print(text)
            # Below Python's sys.stdout, as C code writes.
            os.write(2, f"{text} at fd 2\n".encode())
        if fraction is not None:
            progress.report(fraction, text)
        time.sleep(seconds)
        if action == "exit":
            os._exit(3)
        if action == "segfault":
            os.kill(os.getpid(), signal.SIGSEGV)
        if action == "unpicklable":
            raise Unpicklable(lambda: None)
        return {
            "pid": os.getpid(),
            "warmed": self.warmed,
            "trainings": self.trainings,
            "progress_file": os.environ.get(progress.PROGRESS_ENV),
            "gpu": os.environ.get("CUDA_VISIBLE_DEVICES"),
        }
