"""Tasks: data, loss, metrics and outputs, one module per task; ``TASKS`` names them."""

from rnnzoo.tasks import numbers, pos_tagging, review_generation, tagging  # noqa: F401 - registers
from rnnzoo.tasks.adding import AddingTask
from rnnzoo.tasks.base import TASKS, ModelIO, Sums, Task, list_tasks
from rnnzoo.tasks.copy import CopyTask
from rnnzoo.tasks.forecast import ForecastTask
from rnnzoo.tasks.imdb import IMDBTask

__all__ = [
    "TASKS",
    "AddingTask",
    "CopyTask",
    "ForecastTask",
    "IMDBTask",
    "ModelIO",
    "Sums",
    "Task",
    "list_tasks",
]
