"""Errors shown to users: one clear message, no traceback needed to understand it."""


class RecsysError(Exception):
    """Base of every error the project raises on purpose."""


class DatasetUnavailableError(RecsysError):
    """A dataset or landing folder is missing or unreadable."""


class ModelUnavailableError(RecsysError):
    """An optional encoder model is not installed; the message says how to install it."""


class LeakageError(RecsysError):
    """The leakage audit found data from on/after the snapshot in a model's inputs."""
