"""The one trainer loop every stage uses (RQ-VAE, SFT, GRPO).

A stage supplies a `Task`: how to initialise params, a loss that returns
(loss_sum, (weight, metrics)) and the sharding rules for its params. The
trainer owns everything else: the sharded state, the jitted step with exact
gradient accumulation, the optimiser, checkpoints and exact resume, metrics,
evaluation with early stopping and best-checkpoint selection, SIGTERM handling
and non-finite checks.

Why losses return sums: the gradient of sum(loss_i) / sum(weight_i) over all
micro-batches is the gradient of the global token mean, whatever the split, so
accumulation over micro-batches equals one big batch exactly (up to float
summation order), and GRPO's token-mean stays exact across micro-batches.
"""

from __future__ import annotations

import dataclasses
import math
import os
import shutil
import signal
import time
from typing import Any, Callable, Iterator, Mapping

import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import logging
from jax.experimental import multihost_utils
from ml_collections import ConfigDict

from sidjax.train import checkpoint as ckpt_lib
from sidjax.train import mesh as mesh_lib
from sidjax.train import optim as optim_lib
from sidjax.train import partition
from sidjax.train.metrics import MetricWriter, Progress
from sidjax.train.state import TrainState, make_create_fn, state_shardings

# loss_fn(params, batch, rng) -> (loss_sum, (weight, {name: (sum, count)}))
LossFn = Callable[[Any, Mapping[str, jax.Array], jax.Array], tuple[jax.Array, tuple[jax.Array, dict]]]


@dataclasses.dataclass
class Task:
    """What a stage gives the trainer.

    init_params: rng -> params pytree (pure; it is traced under eval_shape and jit).
    loss_fn: (params, batch, rng) -> (loss_sum, (weight, metrics)); the trained loss is
      loss_sum / weight summed over the whole batch. `metrics` maps names to (sum, count)
      pairs, reported as sum / count over the batch.
    partition_rules: [(param path regex, PartitionSpec)], first match wins.
    eval_fn: params -> {name: float}, run every `config.eval.every_steps` and at the end.
    post_eval_fn: (params, step) -> new params or None, run after each evaluation (and after
      the best checkpoint is saved), e.g. to re-seed dead codebook entries. Derive any
      randomness from `step` so resumed runs stay exact.
    initial_params: concrete params (e.g. a loaded HF checkpoint with SID rows added) used
      instead of `init_params` on a fresh start; `init_params` then only supplies shapes.
    """

    init_params: Callable[[jax.Array], Any]
    loss_fn: LossFn
    partition_rules: partition.Rules
    eval_fn: Callable[[Any], Mapping[str, float]] | None = None
    post_eval_fn: Callable[[Any, int], Any] | None = None
    initial_params: Any = None


class NonFiniteError(FloatingPointError):
    """Raised when the loss or gradient norm stops being finite."""


class Preempted(RuntimeError):
    """Raised after SIGTERM once the checkpoint is saved: rerun the same command to resume."""

    def __init__(self, step: int, directory: str):
        super().__init__(
            f"Preempted (SIGTERM) at step {step}; checkpoint saved in {directory}. Rerun the same "
            "command to resume."
        )
        self.step = step


class CheckpointSaveError(RuntimeError):
    """A checkpoint could not be written (full disk, read-only or vanished directory). The
    run stops at once; earlier checkpoints are left as they were."""


@dataclasses.dataclass
class TrainResult:
    state: TrainState
    last_metrics: dict
    eval_metrics: dict
    best_value: float | None
    best_step: int | None
    stopped_early: bool
    steps_per_sec: float  # Steady state: measured after the first (compiling) step.


class SigtermFlag:
    """Records SIGTERM (preemption) so a loop can save its progress and exit cleanly."""

    def __init__(self, message: str = "SIGTERM received: saving a checkpoint and stopping."):
        self.received = False
        self._previous = None
        self.message = message

    def __enter__(self):
        try:
            self._previous = signal.signal(signal.SIGTERM, self._handle)
        except ValueError:  # Not the main thread (e.g. some notebook runners): no handler.
            self._previous = None
        return self

    def _handle(self, signum, frame):
        logging.warning("%s", self.message)
        self.received = True

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)


class _MetricReader:
    """Reads step metrics one step late, checks them, and logs window means.

    Reading the previous step's metrics after dispatching the next step keeps the
    device busy; a non-finite loss or gradient norm raises naming the step and
    the last good checkpoint.
    """

    def __init__(self, trainer: "Trainer", writer: MetricWriter, progress: Progress):
        self.trainer = trainer
        self.writer = writer
        self.progress = progress
        self.every = max(int(trainer.config.log.every_steps), 1)
        self.pending: tuple[int, dict] | None = None
        self.window: list[dict] = []
        self.last: dict = {}

    def steady_rate(self, step: int) -> float:
        """Steps/s after the first step (which includes compilation)."""
        return self.progress.rate(step)

    def read(self) -> None:
        if self.pending is None:
            return
        step, device_metrics = self.pending
        self.pending = None
        host = {k: float(v) for k, v in jax.device_get(device_metrics).items()}
        for key in ("loss", "grad_norm"):
            if not math.isfinite(host[key]):
                manager = self.trainer.manager
                good = manager.latest_step()
                where = f"{manager.directory}/{good}" if good is not None else "none saved yet"
                raise NonFiniteError(
                    f"Non-finite {key} ({host[key]}) at step {step}. Last good checkpoint: "
                    f"{where}. Lower config.optim.lr or check the data."
                )
        self.last = host
        self.window.append(host)
        self.progress.first_step_done(step)  # Only the first call counts.
        if step % self.every == 0 or step == self.trainer.num_steps:
            means = {k: float(np.mean([w[k] for w in self.window])) for k in self.window[0]}
            means["steps_per_sec"] = self.progress.rate(step)
            self.writer.write(step, means, prefix="train/")
            self.progress.update(step, means["loss"])
            self.window.clear()


def _split_micro_batches(batch: Mapping[str, jax.Array], n: int) -> dict[str, jax.Array]:
    """[B, ...] -> [n, B/n, ...]; micro-batch i takes rows i, i+n, i+2n, ...

    Strided (not contiguous) so every micro-batch keeps rows on every device:
    the reshape splits each device's local block, no data moves.
    """

    def split(x):
        x = x.reshape((x.shape[0] // n, n) + x.shape[1:])
        x = jnp.swapaxes(x, 0, 1)
        return mesh_lib.shard_activation(x, jax.sharding.PartitionSpec(None, mesh_lib.BATCH_AXES))

    return jax.tree.map(split, dict(batch))


def make_train_step(loss_fn: LossFn, tx: optax.GradientTransformation,
                    schedule: optax.Schedule, micro_batches: int) -> Callable:
    """The pure train step: (state, batch) -> (state, metrics)."""
    grad_fn = jax.value_and_grad(loss_fn, has_aux=True)

    def step(state: TrainState, batch: Mapping[str, jax.Array]):
        rng = jax.random.fold_in(state.rng, state.step)

        def micro_step(carry, xs):
            grads_acc, loss_acc, weight_acc, metrics_acc = carry
            micro_batch, index = xs
            (loss_sum, (weight, metrics)), grads = grad_fn(
                state.params, micro_batch, jax.random.fold_in(rng, index)
            )
            grads_acc = jax.tree.map(jnp.add, grads_acc, grads)
            metrics_acc = jax.tree.map(jnp.add, metrics_acc, metrics)
            return (grads_acc, loss_acc + loss_sum, weight_acc + weight, metrics_acc), None

        micro = _split_micro_batches(batch, micro_batches)
        first = jax.tree.map(lambda x: x[0], micro)
        metrics_shape = jax.eval_shape(loss_fn, state.params, first, rng)[1][1]
        zeros = (
            jax.tree.map(jnp.zeros_like, state.params),
            jnp.zeros((), jnp.float32),
            jnp.zeros((), jnp.float32),
            jax.tree.map(lambda s: jnp.zeros(s.shape, jnp.float32), metrics_shape),
        )
        (grads, loss_sum, weight, metric_sums), _ = jax.lax.scan(
            micro_step, zeros, (micro, jnp.arange(micro_batches))
        )
        denom = jnp.maximum(weight, 1e-9)
        grads = jax.tree.map(lambda g: g / denom, grads)
        grad_norm = optax.tree.norm(grads)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        metrics = {
            "loss": loss_sum / denom,
            "grad_norm": grad_norm,
            "lr": schedule(state.step),
            "weight": weight,
        }
        for name, (total, count) in metric_sums.items():
            metrics[name] = total / jnp.maximum(count, 1e-9)
        new_state = state.replace(step=state.step + 1, params=params, opt_state=opt_state)
        return new_state, metrics

    return step


def _check_batch_sizes(config: ConfigDict, mesh) -> None:
    batch, micro = int(config.train.batch_size), int(config.train.micro_batches)
    if micro < 1 or batch % micro:
        raise ValueError(
            f"config.train.batch_size={batch} does not divide into "
            f"config.train.micro_batches={micro} equal micro-batches."
        )
    ways = mesh_lib.batch_divisor(mesh)
    if (batch // micro) % ways:
        raise ValueError(
            f"Micro-batch size {batch // micro} (config.train.batch_size / micro_batches) does "
            f"not divide over the {ways} batch shards of mesh {dict(mesh.shape)}; use a "
            f"multiple of {ways}."
        )
    if batch % jax.process_count():
        raise ValueError(
            f"config.train.batch_size={batch} does not divide over {jax.process_count()} processes."
        )


class Trainer:
    """Runs a Task under a config: builds or restores the state, trains, evaluates, saves.

    `self.state` always holds the latest state, so host-side batch producers
    (e.g. GRPO rollouts) can read the current params between steps.
    """

    def __init__(self, config: ConfigDict, workdir: str, task: Task, mesh=None):
        self.config = config
        self.workdir = workdir
        self.task = task
        self.mesh = mesh if mesh is not None else mesh_lib.make_mesh(config.mesh.shape)
        _check_batch_sizes(config, self.mesh)
        self.num_steps = int(config.train.num_steps)
        self.schedule = optim_lib.make_schedule(config.optim, self.num_steps)
        self.tx = optim_lib.make_optimizer(config.optim, self.num_steps)
        create = make_create_fn(task.init_params, self.tx)
        rng = jax.random.PRNGKey(int(config.seed))
        with jax.set_mesh(self.mesh):
            self.abstract_state = jax.eval_shape(create, rng)
            self.shardings = state_shardings(
                self.abstract_state, self.tx, task.partition_rules, self.mesh
            )
        self._create = jax.jit(create, out_shardings=self.shardings)
        self._step = jax.jit(
            make_train_step(task.loss_fn, self.tx, self.schedule, int(config.train.micro_batches)),
            out_shardings=(self.shardings, None),
            donate_argnums=0,
        )
        self._rng = rng
        self.state: TrainState | None = None
        self.manager = ckpt_lib.make_manager(
            os.path.join(workdir, ckpt_lib.CKPT_DIR), int(config.ckpt.keep),
            bool(config.ckpt.async_save),
        )
        self.best_manager = None
        if config.eval.metric:
            self.best_manager = ckpt_lib.make_manager(
                os.path.join(workdir, ckpt_lib.BEST_DIR), 1, bool(config.ckpt.async_save)
            )
        # Early-stopping state and the latest eval: checkpointed in meta, so a rerun of a
        # finished or early-stopped run neither trains nor evaluates again.
        self.early = {"best_value": None, "best_step": None, "bad_evals": 0, "stopped": False}
        self.last_eval: dict = {}

    # ----------------------------------------------------------------- state
    def _abstract(self, tree, shardings):
        return ckpt_lib.abstract_with_shardings(tree, shardings)

    def init_or_restore(self, data_iter=None) -> TrainState:
        """This run's latest checkpoint, else params from `ckpt.init_from`, else fresh."""
        latest = self.manager.latest_step()
        with jax.set_mesh(self.mesh):
            if latest is not None:
                params, rest, meta = ckpt_lib.restore(
                    self.manager, latest,
                    self._abstract(self.abstract_state.params, self.shardings.params),
                    self._abstract(self.abstract_state.rest(), self.shardings.rest()),
                )
                self.state = TrainState(params=params, **rest)
                if data_iter is not None and "data" in meta:
                    data_iter.set_state(meta["data"])
                self.early = meta.get("early", self.early)
                self.last_eval = meta.get("eval", {})
                logging.info("Resumed from %s step %d.", self.manager.directory, latest)
            elif self.config.ckpt.init_from:
                params = ckpt_lib.load_params(
                    self.config.ckpt.init_from,
                    self._abstract(self.abstract_state.params, self.shardings.params),
                )
                fresh = self._create(self._rng)
                self.state = fresh.replace(
                    params=params,
                    opt_state=jax.jit(self.tx.init, out_shardings=self.shardings.opt_state)(params),
                )
                logging.info("Initialised params from %s.", self.config.ckpt.init_from)
            elif self.task.initial_params is not None:
                params = jax.device_put(self.task.initial_params, self.shardings.params)
                self.state = TrainState(  # Same rng split as `create`, no random params built.
                    step=jax.device_put(jnp.zeros((), jnp.int32), self.shardings.step),
                    params=params,
                    opt_state=jax.jit(self.tx.init, out_shardings=self.shardings.opt_state)(params),
                    rng=jax.device_put(jax.random.split(self._rng)[1], self.shardings.rng),
                )
                logging.info("Fresh start from the task's initial params.")
            else:
                self.state = self._create(self._rng)
                logging.info("Fresh start (no checkpoint in %s).", self.manager.directory)
        self._check_free_space()
        return self.state

    def planned_checkpoint_bytes(self) -> int:
        """Bytes the kept checkpoints need: `ckpt.keep` full states (params, optimiser state,
        step, rng) plus one params-only `best/`, plus one full state being written."""
        def nbytes(tree):
            return sum(int(np.prod(x.shape)) * np.dtype(x.dtype).itemsize
                       for x in jax.tree.leaves(tree))
        full = nbytes(self.abstract_state.params) + nbytes(self.abstract_state.rest())
        best = nbytes(self.abstract_state.params) if self.best_manager is not None else 0
        return (int(self.config.ckpt.keep) + 1) * full + best

    def _check_free_space(self) -> None:
        needed = self.planned_checkpoint_bytes()
        directory = os.path.dirname(os.path.abspath(self.manager.directory))
        free = shutil.disk_usage(directory).free
        if free < needed:
            logging.warning(
                "Only %.2f GiB free under %s, the planned checkpoints need about %.2f GiB "
                "(ckpt.keep=%d): a save that does not fit stops the run. Free space or lower "
                "ckpt.keep.", free / 2**30, directory, needed / 2**30,
                int(self.config.ckpt.keep))

    def _meta(self, data_iter) -> dict:
        meta = {"early": self.early, "eval": self.last_eval}
        if data_iter is not None:
            meta["data"] = data_iter.get_state()
        return meta

    def save(self, step: int, data_iter=None) -> None:
        """Checkpoints the current state as `step` (once: a step already saved is kept)."""
        if step in self.manager.all_steps():
            return
        self._save_or_stop(self.manager, step, lambda: ckpt_lib.save(
            self.manager, step, self.state.params, self.state.rest(), self._meta(data_iter)))

    def _save_or_stop(self, manager, step: int, save_fn) -> None:
        """Runs `save_fn` and checks the manager's earlier background saves: a failed save
        (now or an async one that finished since) stops the run with one line naming the
        directory and the cause, instead of training on without checkpoints."""
        try:
            manager.check_for_errors()
            save_fn()
            manager.check_for_errors()
        except Exception as e:  # orbax wraps OSErrors in its own types.
            cause = e
            while cause.__cause__ is not None and not isinstance(cause, OSError):
                cause = cause.__cause__
            good = [s for s in manager.all_steps() if s < step]
            raise CheckpointSaveError(
                f"A checkpoint save in {manager.directory} failed (stopped at step {step}): "
                f"{type(cause).__name__}: {cause}. The last good checkpoint is "
                f"{'step ' + str(max(good)) if good else 'none'}; free space or fix the "
                "directory, then rerun the same command to resume.") from e

    # ------------------------------------------------------------------ loop
    def fit(self, data_iter: Iterator[Mapping[str, np.ndarray]]) -> TrainResult:
        """Trains to `config.train.num_steps` or an early stop; returns the outcome.

        On SIGTERM it saves a checkpoint and raises `Preempted`.
        """
        if self.state is None:
            self.init_or_restore(data_iter)
        start = int(jax.device_get(self.state.step))
        writer = MetricWriter(self.workdir, tensorboard=bool(self.config.log.tensorboard))
        progress = Progress(self.num_steps, start, enabled=bool(self.config.log.progress))
        reader = _MetricReader(self, writer, progress)
        progress.compiling()
        try:
            with SigtermFlag() as sigterm, jax.set_mesh(self.mesh):
                step = self._loop(start, data_iter, reader, writer, sigterm)
        finally:
            # Let in-flight async saves land even when the run fails (e.g. non-finite loss).
            self.manager.wait_until_finished()
            if self.best_manager is not None:
                self.best_manager.wait_until_finished()
            progress.close()
            writer.close()
        return TrainResult(
            state=self.state, last_metrics=reader.last, eval_metrics=self.last_eval,
            best_value=self.early["best_value"], best_step=self.early["best_step"],
            stopped_early=self.early["stopped"],
            steps_per_sec=reader.steady_rate(step),
        )

    def _loop(self, step: int, data_iter, reader: "_MetricReader", writer: MetricWriter,
              sigterm: SigtermFlag) -> int:
        ckpt_every = int(self.config.ckpt.every_steps)
        ckpt_seconds = 60.0 * float(self.config.ckpt.get("every_minutes", 0.0) or 0.0)
        clock_every = max(int(self.config.log.every_steps), 1)
        last_save = time.monotonic()
        eval_every = int(self.config.eval.every_steps)
        if self.early["stopped"]:
            logging.info("This run already stopped early at step %d; nothing to do.", step)
            return step
        while step < self.num_steps:
            batch = mesh_lib.make_global_batch(next(data_iter), self.mesh)
            self.state, metrics = self._step(self.state, batch)
            step += 1
            reader.read()  # The previous step's metrics: the device is busy with this one.
            reader.pending = (step, metrics)
            last = step == self.num_steps
            # Evaluate before saving, so the checkpoint's meta holds this step's eval.
            if self.task.eval_fn is not None and ((eval_every and step % eval_every == 0) or last):
                reader.read()
                self._evaluate(step, writer, data_iter)
                self.early["stopped"] = self._should_stop()
            due = bool(ckpt_every and step % ckpt_every == 0) or last or self.early["stopped"]
            if step % clock_every == 0:
                # A background save that failed stops the run here.
                for manager in (self.manager, self.best_manager):
                    if manager is not None:
                        self._save_or_stop(manager, step, lambda: None)
                if not due and ckpt_seconds:
                    due = self._all_agree(time.monotonic() - last_save >= ckpt_seconds)
            if due:
                reader.read()  # Never checkpoint a state whose loss was not checked.
                self.save(step, data_iter)
                last_save = time.monotonic()
            if self._preemption_requested(sigterm):
                reader.read()
                self.save(step, data_iter)
                raise Preempted(step, self.manager.directory)
            if self.early["stopped"]:
                logging.info(
                    "Early stop at step %d: %s did not improve for %d evaluations (best %.6g at "
                    "step %s).", step, self.config.eval.metric, self.config.eval.patience,
                    self.early["best_value"], self.early["best_step"],
                )
                break
        reader.read()
        return step

    @staticmethod
    def _all_agree(flag: bool) -> bool:
        """Process 0's clock decides for every process (each must save at the same step)."""
        if jax.process_count() == 1:
            return flag
        return bool(multihost_utils.broadcast_one_to_all(np.array(flag)))

    def _preemption_requested(self, sigterm: SigtermFlag) -> bool:
        if jax.process_count() == 1:
            return sigterm.received
        # Every process must agree to stop at the same step, or collectives deadlock.
        flags = multihost_utils.process_allgather(np.array(sigterm.received))
        return bool(np.any(flags))

    # ------------------------------------------------------------------ eval
    def _evaluate(self, step: int, writer: MetricWriter, data_iter) -> dict:
        if self.task.eval_fn is None:
            return {}
        metrics = {k: float(v) for k, v in self.task.eval_fn(self.state.params).items()}
        self.last_eval = metrics
        writer.write(step, metrics, prefix="eval/")
        logging.info("Eval at step %d: %s", step, metrics)
        name = self.config.eval.metric
        if name:
            if name not in metrics:
                raise KeyError(
                    f"config.eval.metric='{name}' is not among the eval metrics "
                    f"{sorted(metrics)}; pick one of those."
                )
            value = metrics[name]
            best = self.early["best_value"]
            sign = 1.0 if self.config.eval.mode == "min" else -1.0
            if best is None or sign * value < sign * best:
                self.early.update(best_value=value, best_step=step, bad_evals=0)
                if step not in self.best_manager.all_steps():
                    self._save_or_stop(self.best_manager, step, lambda: ckpt_lib.save(
                        self.best_manager, step, self.state.params, None,
                        self._meta(data_iter)))
            else:
                self.early["bad_evals"] += 1
        if self.task.post_eval_fn is not None:
            new_params = self.task.post_eval_fn(self.state.params, step)
            if new_params is not None:
                self.state = self.state.replace(
                    params=jax.device_put(new_params, self.shardings.params))
        return metrics

    def _should_stop(self) -> bool:
        patience = int(self.config.eval.patience)
        return bool(self.config.eval.metric) and patience > 0 and (
            self.early["bad_evals"] >= patience
        )

    def close(self) -> None:
        self.manager.close()
        if self.best_manager is not None:
            self.best_manager.close()
