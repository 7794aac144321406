"""Models for the tasks, registered by name in ``MODELS``."""

from rnnzoo.models import ensemble, generator, language_model, seq2seq, tagger  # noqa: F401
from rnnzoo.models.base import MODELS, ModelArgs, RecurrentArgs, build_model, list_models
from rnnzoo.models.baselines import LinearForecaster, RepeatLast, SeasonalNaive
from rnnzoo.models.classifier import SequenceClassifier
from rnnzoo.models.forecast import Forecaster, SegRNN, Seq2SeqForecaster
from rnnzoo.models.language_model import LanguageModel
from rnnzoo.models.many_to_many import ManyToMany
from rnnzoo.models.many_to_one import ManyToOne
from rnnzoo.models.statistical import ARIMA, ETS, Theta

__all__ = [
    "ARIMA",
    "ETS",
    "MODELS",
    "Forecaster",
    "LanguageModel",
    "LinearForecaster",
    "ManyToMany",
    "ManyToOne",
    "ModelArgs",
    "RecurrentArgs",
    "RepeatLast",
    "SeasonalNaive",
    "SegRNN",
    "Seq2SeqForecaster",
    "SequenceClassifier",
    "Theta",
    "build_model",
    "list_models",
]
