"""Fit, evaluate, checkpoint: one loop for every task and every model.

The trainer knows a task only through ``rnnzoo.tasks.Task`` (datasets, loss, metric
sums) and a model only as ``model(inputs, lengths)``; it never branches on either.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import math
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel
from torch.optim.lr_scheduler import LambdaLR, ReduceLROnPlateau
from torch.utils.data import Dataset
from tqdm import tqdm

from rnnzoo import checkpoint, run_folder
from rnnzoo.config import Config
from rnnzoo.data.batches import Batch
from rnnzoo.data.sampling import EpochBatches, batched
from rnnzoo.distributed import World, all_sum, gather_bytes
from rnnzoo.errors import ConfigError, Interrupted, TrainingDiverged
from rnnzoo.evaluation import Totals, autocast, evaluate, loader
from rnnzoo.optim import make_optimizer, make_scheduler
from rnnzoo.perf import release_free_memory
from rnnzoo.progress import LogProgress
from rnnzoo.tasks import Task


@dataclasses.dataclass
class Progress:
    """Where training stands; saved in every checkpoint so a run resumes exactly."""

    epoch: int = 0  # epochs completed
    step: int = 0  # optimiser steps taken
    batch_in_epoch: int = 0  # batches of the unfinished epoch already trained on
    best: float | None = None
    best_epoch: int | None = None
    bad_epochs: int = 0  # finished epochs since the best finished one, for early stopping
    epoch_best: float | None = None  # best of the finished epochs (patience counts from it)
    seconds: float = 0.0  # wall time in fit() so far, for train.max_minutes
    partial: dict[str, float] = dataclasses.field(default_factory=dict)  # unfinished epoch


class Trainer:
    """Trains ``model`` on ``task`` as ``config.train`` says; rank 0 writes ``run_dir``."""

    def __init__(
        self,
        config: Config,
        task: Task,
        model: nn.Module,
        device: torch.device,
        world: World | None = None,
        run_dir: Path | None = None,
        log: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        self.config, self.cfg, self.task = config, config.train, task
        self.device, self.world, self.run_dir = device, world or World(), run_dir
        self.model = model.to(device)
        self.net: nn.Module = self.model
        # A model without trainable parameters (a naive baseline) is scored, not trained.
        self.trainable = any(p.requires_grad for p in self.model.parameters())
        if self.world.size > 1 and self.trainable:
            ids = [device.index] if device.type == "cuda" else None
            self.net = DistributedDataParallel(self.model, device_ids=ids)
        self.metric = self.cfg.metric or task.metric
        if self.metric not in task.modes:
            valid = ", ".join(sorted(task.modes))
            raise ConfigError(f"train.metric {self.metric!r} is not one of this task's: {valid}")
        self.mode = task.modes[self.metric]
        # a token stream is cut into as many parallel streams as a batch has rows
        self.train_data: Dataset[Batch] = batched(task.dataset("train"), self.cfg.batch_size)
        eval_size = self.cfg.eval_batch_size or self.cfg.batch_size
        self.val_data: Dataset[Batch] = batched(task.dataset("val"), eval_size)
        n_train = len(self.train_data)
        self.batches = EpochBatches(
            n_train, self.cfg.batch_size, self.cfg.seed, self.world,
            lengths=getattr(self.train_data, "lengths", None),  # bucketing, where the
            bucket=getattr(self.train_data, "bucket", 1),  # dataset has lengths
            contiguous=getattr(self.train_data, "contiguous", False),  # streams: in order
        )  # fmt: skip
        total = len(self.batches) * self.cfg.epochs
        if self.cfg.max_steps is not None:
            total = min(total, self.cfg.max_steps)
        self.optimizer = make_optimizer(self.model, self.cfg)
        self.scheduler = make_scheduler(
            self.optimizer, self.cfg, total, self.mode, steps_per_epoch=len(self.batches)
        )
        self.progress = Progress()
        self.log = log or (lambda record: None)
        self.say: Callable[[str], None] = lambda line: None  # progress lines for a log file
        self.stop_requested = False  # set by Ctrl-C (or a hook); acted on between steps
        self._stop_agreed = False  # every process has seen a stop request
        self._time_up = False  # every process agrees train.max_minutes has passed
        self._clock = time.perf_counter()  # when p.seconds was last brought up to date
        self.after_step: list[Callable[[Trainer], None]] = []  # hooks, e.g. for tests

    # -- training -------------------------------------------------------------------

    def fit(self) -> Progress:
        """Train until ``epochs``, ``max_steps``, ``max_minutes`` or early stopping."""
        p = self.progress
        if not self.trainable:
            return self._score_only()
        with _stop_on_sigint(self):
            while not self.finished():
                started = self._clock = time.perf_counter()
                done, train = self._train_epoch()
                # An unfinished epoch's checkpoint keeps the model as training left it:
                # scoring may reset what a model carries from batch to batch (a language
                # model's state), and the resumed epoch goes on from there. (References,
                # not copies: scoring changes no parameter.)
                trained = None if done else self.model.state_dict()
                release_free_memory()  # the epoch's autograd buffers are gone
                if self._stopping():
                    # the interrupted epoch's time counts against train.max_minutes too
                    p.seconds += time.perf_counter() - started
                    self.save("last")
                    where = f" {self.run_dir}" if self.run_dir else ""
                    raise Interrupted(
                        f"interrupted at epoch {p.epoch + 1}, step {p.step}; the last checkpoint"
                        " is saved",
                        f"continue with: rnnzoo train --resume{where}",
                    )
                val = self.evaluate(self.val_data)
                if done:
                    p.epoch, p.batch_in_epoch, p.partial = p.epoch + 1, 0, {}
                seconds = time.perf_counter() - started
                p.seconds, self._clock = p.seconds + seconds, time.perf_counter()
                improved = self._record(train, val, seconds, done)
                self.save("last", trained)
                if improved:
                    self.save("best", trained)
        return p

    def finished(self) -> bool:
        """No training left: every epoch done, a budget spent, or stopped early."""
        p, patience = self.progress, self.cfg.patience
        stopped_early = patience is not None and p.bad_epochs >= patience
        return p.epoch >= self.cfg.epochs or self._budget_spent() or stopped_early

    def _score_only(self) -> Progress:
        """One "epoch" for a model with nothing to fit: score train and val, save."""
        p, started = self.progress, time.perf_counter()
        train, val = self.evaluate(self.train_data), self.evaluate(self.val_data)
        p.epoch = 1  # one pass over the data, whatever train.epochs says
        self._record(train, val, time.perf_counter() - started, done=True)
        self.save("last")
        self.save("best")
        return p

    def _stopping(self) -> bool:
        return self._stop_agreed or (self.world.size == 1 and self.stop_requested)

    def _budget_spent(self) -> bool:
        cfg, p = self.cfg, self.progress
        steps = cfg.max_steps is not None and p.step >= cfg.max_steps
        minutes = cfg.max_minutes is not None and p.seconds >= 60 * cfg.max_minutes
        return steps or minutes or self._time_up

    def _over_time(self) -> Tensor:
        """1.0 once ``train.max_minutes`` of wall time have passed on this process."""
        limit = self.cfg.max_minutes
        elapsed = self.progress.seconds + time.perf_counter() - self._clock
        over = limit is not None and elapsed >= 60 * limit
        return torch.tensor(float(over), dtype=torch.float64, device=self.device)

    def _train_epoch(self) -> tuple[bool, dict[str, float]]:
        """Train on the rest of the current epoch; returns (finished?, train metrics)."""
        p, cfg = self.progress, self.cfg
        self.batches.set_epoch(p.epoch, skip=p.batch_in_epoch)
        seed = self.batches.epoch_seed()
        data = loader(self.train_data, self.batches, cfg.num_workers, self.device, seed)
        totals = Totals(self.device, p.partial)
        self.net.train()
        desc = f"epoch {p.epoch + 1}/{cfg.epochs}"
        bar = tqdm(
            data, desc=desc, initial=p.batch_in_epoch, total=len(self.batches), leave=False,
            disable=None if self.world.is_main else True,
        )  # fmt: skip
        # no bar (output to a file): plain lines now and then instead, on the main process
        no_bar = self.world.is_main and bool(bar.disable)
        lines = LogProgress(desc, len(self.batches), p.batch_in_epoch, self.say, no_bar)
        for batch in bar:
            if self._budget_spent() or self._stopping():
                return False, self.task.finish(totals.means(self.world))
            start = time.perf_counter()
            loss, grad_norm, n = self._step(batch.to(self.device), totals)
            p.step, p.batch_in_epoch = p.step + 1, p.batch_in_epoch + 1
            p.partial = totals.state()
            rate = n / max(time.perf_counter() - start, 1e-9)
            bar.set_postfix(loss=f"{loss:.4g}", grad=f"{grad_norm:.3g}", samples_s=f"{rate:.0f}")
            lines.update(loss, n)
            for hook in self.after_step:
                hook(self)
        finished = not (self._budget_spent() and p.batch_in_epoch < len(self.batches))
        return finished, self.task.finish(totals.means(self.world))

    def _step(self, batch: Batch, totals: Totals) -> tuple[float, float, int]:
        """One optimiser step; returns (global mean loss, pre-clip grad norm, samples)."""
        cfg, p = self.cfg, self.progress
        local_n = len(batch)
        global_n = self.batches.global_size(p.batch_in_epoch)
        with autocast(self.device, cfg.precision):
            # Targets go in too, for models that teacher-force (seq2seq); never at eval.
            output = self.net(batch.inputs, batch.lengths, batch.targets)
            loss = self.task.loss(output.float(), batch)
        # Sum over processes: the mean loss of the global batch, and shared stop flags
        # (Ctrl-C, time budget), so that every process stops after the same step.
        mine = [loss.detach().double() * local_n, _flag(self), self._over_time()]
        shared = all_sum(torch.stack(mine), self.world)
        mean_loss, self._stop_agreed = float(shared[0]) / global_n, bool(shared[1] > 0)
        self._time_up = bool(shared[2] > 0)
        if not math.isfinite(mean_loss):
            raise self._diverged(f"loss is {mean_loss}")
        # Scaled so DDP's gradient average equals the gradient of the global mean loss.
        self.optimizer.zero_grad(set_to_none=True)
        (loss * (local_n * self.world.size / global_n)).backward()
        max_norm = cfg.grad_clip if cfg.grad_clip is not None else math.inf
        norm = float(nn.utils.clip_grad_norm_(self.model.parameters(), max_norm))
        if not math.isfinite(norm):
            raise self._diverged(f"gradient norm is {norm}")
        self.optimizer.step()
        if not isinstance(self.scheduler, ReduceLROnPlateau):  # the others step per batch
            self.scheduler.step()
        weight = self.task.loss_weight(batch)  # the epoch's loss: a mean over its terms
        totals.add("loss", loss.detach() * weight, weight)
        totals.add("grad_norm", torch.tensor(norm), 1)
        totals.add("clipped", torch.tensor(float(norm > max_norm)), 1)
        for name, (total, count) in self.task.metrics(output, batch).items():
            totals.add(name, total, count)
        return mean_loss, norm, local_n

    def _diverged(self, what: str) -> TrainingDiverged:
        p = self.progress
        kept = (
            f"checkpoints/best.pt (epoch {p.best_epoch}) is untouched"
            if p.best_epoch is not None
            else "no checkpoint was saved"
        )
        return TrainingDiverged(
            f"training diverged: {what} at epoch {p.epoch + 1}, step {p.step + 1}; {kept}",
            "lower train.lr, or set train.grad_clip",
        )

    def _better(self, value: float, than: float | None) -> bool:
        return than is None or (value < than if self.mode == "min" else value > than)

    def _record(
        self, train: dict[str, float], val: dict[str, float], seconds: float, done: bool
    ) -> bool:
        """Log one epoch, update the best and early-stopping counters; True if improved."""
        p = self.progress
        value = val[self.metric]
        better = self._better(value, p.best)
        if better:
            # p.epoch counts finished epochs; a partial one is the next, as it is logged
            p.best, p.best_epoch = value, p.epoch if done else p.epoch + 1
        # Patience counts finished epochs only: a partial one (scored when a budget stops
        # the run) must not reset it, or a run resumed with more budget would stop early
        # at another epoch than an uninterrupted one.
        if done and self._better(value, p.epoch_best):
            p.epoch_best, p.bad_epochs = value, 0
        elif done:
            p.bad_epochs += 1
        # Plateau's patience counts epochs. A partial one is scored only when a budget
        # stops the run; stepping on it would count an epoch that a run resumed with
        # more budget finishes and counts again.
        if isinstance(self.scheduler, ReduceLROnPlateau) and done:
            self.scheduler.step(value)
        samples = self.batches.n if done else None
        record: dict[str, Any] = {
            "epoch": p.epoch if done else p.epoch + 1,
            "step": p.step,
            "partial_epoch": not done,
            "lr": self.optimizer.param_groups[0]["lr"],  # train.lr's group (rnnzoo.optim)
            **{f"train_{k}": v for k, v in train.items()},
            **{f"val_{k}": v for k, v in val.items()},
            "seconds": seconds,
            "samples_per_s": samples / seconds if samples else None,
            "best": bool(better),
        }
        if self.world.is_main:
            self.log(record)
        return bool(better)

    # -- evaluation -----------------------------------------------------------------

    def evaluate(self, dataset: Dataset[Batch]) -> dict[str, float]:
        """Loss and metrics of the model over a whole split."""
        size = self.cfg.eval_batch_size or self.cfg.batch_size
        cfg = self.cfg
        metrics = evaluate(
            self.model, self.task, dataset, self.device, size, self.world, cfg.precision
        )
        release_free_memory()  # evaluation's batches are gone too
        return metrics

    # -- checkpoints ----------------------------------------------------------------

    def save(self, kind: str, model_state: dict[str, Any] | None = None) -> None:
        """Write ``checkpoints/<kind>.pt`` atomically (rank 0 writes; every process
        calls it, to hand over what is its own); ``model_state``: the model's state_dict
        to write, None: as it is now."""
        model_state = self.model.state_dict() if model_state is None else model_state
        own = self._own_state_of_every_process(model_state)
        if self.run_dir is None or not self.world.is_main:
            return
        state: dict[str, Any] = {
            "model": model_state,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "rng": own[0]["rng"],
            "progress": dataclasses.asdict(self.progress),
            "config": self.config.to_dict(),
        }
        if self.world.size > 1:
            state["per_process"] = own
        name = f"checkpoints/{kind}.pt"
        checkpoint.save_atomic(state, self.run_dir / name)
        run_folder.record(self.run_dir, name)  # its SHA-256, checked before it is read

    def _own_state_of_every_process(self, model_state: dict[str, Any]) -> list[dict[str, Any]]:
        """What differs between processes, in rank order: the generators (processes
        draw different amounts, as their batches differ in size and length), the
        unfinished epoch's metric sums (each its own shard's) and the model's extra
        state (what it carries from batch to batch: a language model's state for its
        own rows). Rank 0's alone would not resume the others where they were."""
        mine = {"rng": checkpoint.rng_state(), "partial": self.progress.partial}
        if self.world.size == 1:
            return [mine]
        mine["extra"] = {
            k: v.cpu() if isinstance(v, Tensor) else v
            for k, v in model_state.items()
            if k.endswith("_extra_state")
        }
        buffer = io.BytesIO()
        torch.save(mine, buffer)
        everyone = gather_bytes(buffer.getvalue(), self.world, self.device)
        return [torch.load(io.BytesIO(b), weights_only=True) for b in everyone]

    def restore(self, state: dict[str, Any]) -> None:
        """Continue from a checkpoint written by ``save``."""
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        # The schedule's position comes from the checkpoint, its length (and each group's
        # first step) from the config: a resume that raises train.max_steps or
        # train.epochs stretches the cosine.
        lengths = [dict(vars(f)) for f in getattr(self.scheduler, "lr_lambdas", [])]
        self.scheduler.load_state_dict(state["scheduler"])
        if isinstance(self.scheduler, LambdaLR):
            for f, settings in zip(self.scheduler.lr_lambdas, lengths, strict=True):
                vars(f).update(settings)
            step = self.scheduler.last_epoch
            groups = self.optimizer.param_groups
            for group, base, f in zip(
                groups, self.scheduler.base_lrs, self.scheduler.lr_lambdas, strict=True
            ):
                group["lr"] = base * f(step)
        # a checkpoint from before epoch_best was kept: its best is the nearest to it
        self.progress = Progress(**{"epoch_best": state["progress"]["best"], **state["progress"]})
        own = {"rng": state["rng"], "partial": self.progress.partial}  # one process's
        per_process = state.get("per_process") or [own]
        # With another number of processes the batches differ anyway: rank 0's will do.
        if len(per_process) == self.world.size:
            own = per_process[self.world.rank]
        checkpoint.set_rng_state(own["rng"])
        self.progress.partial = own["partial"]
        if own.get("extra"):  # this process's, in place of rank 0's
            self.model.load_state_dict(own["extra"], strict=False)


def _flag(trainer: Trainer) -> Tensor:
    return torch.tensor(float(trainer.stop_requested), dtype=torch.float64, device=trainer.device)


@contextlib.contextmanager
def _stop_on_sigint(trainer: Trainer) -> Iterator[None]:
    """First Ctrl-C: finish the step, save ``last``, stop. A second one aborts at once."""

    def handler(signum: int, frame: Any) -> None:
        if trainer.stop_requested:
            raise KeyboardInterrupt
        trainer.stop_requested = True

    try:
        previous = signal.signal(signal.SIGINT, handler)
    except ValueError:  # not the main thread: leave Ctrl-C as it is
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
