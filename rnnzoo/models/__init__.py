"""Models for the tasks, registered by name in ``MODELS``."""

from rnnzoo.models.base import MODELS, RecurrentArgs, build_model, list_models
from rnnzoo.models.classifier import SequenceClassifier
from rnnzoo.models.many_to_one import ManyToOne

__all__ = [
    "MODELS",
    "ManyToOne",
    "RecurrentArgs",
    "SequenceClassifier",
    "build_model",
    "list_models",
]
