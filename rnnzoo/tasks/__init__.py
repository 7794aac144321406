"""Tasks: data, loss, metrics and outputs, one module per task; ``TASKS`` names them."""

from rnnzoo.tasks import (  # noqa: F401 - registers
    language_model,
    numbers,
    pos_tagging,
    review_generation,
    tagging,
    text_classification,
)
from rnnzoo.tasks.adding import AddingTask
from rnnzoo.tasks.base import TASKS, ModelIO, Sums, Task, list_tasks
from rnnzoo.tasks.copy import CopyTask
from rnnzoo.tasks.forecast import ForecastTask
from rnnzoo.tasks.imdb import IMDBTask
from rnnzoo.tasks.text_classification import TextClassificationTask

__all__ = [
    "TASKS",
    "AddingTask",
    "CopyTask",
    "ForecastTask",
    "IMDBTask",
    "ModelIO",
    "Sums",
    "Task",
    "TextClassificationTask",
    "list_tasks",
]
