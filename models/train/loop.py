"""The training loop: AdamW, warm-up + cosine schedule over a time or step budget, progress lines."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import keras
import numpy as np
import tensorflow as tf

from .data import WindowSampler
from .model import BitNetLM, lm_loss
from .progress import Progress


@dataclass(frozen=True)
class TrainSettings:
    """Optimisation and budget settings. Training stops at `max_steps` or after `minutes`, whichever first."""

    batch_size: int = 16
    seq_len: int = 256
    peak_lr: float = 2e-3
    final_lr_fraction: float = 0.1
    warmup_steps: int = 200
    weight_decay: float = 0.05
    grad_clip: float = 1.0
    max_steps: int = 1_000_000
    minutes: float = 60.0
    log_every: int = 20
    eval_every: int = 250
    checkpoint_every_s: float = 600.0
    seed: int = 0


@dataclass
class TrainResult:
    """What a run did: steps, tokens, wall time, loss history and the last validation loss."""

    steps: int = 0
    tokens: int = 0
    seconds: float = 0.0
    train_loss: float = float("nan")
    val_loss: float = float("nan")
    history: list[tuple[int, float]] = field(default_factory=list)


def learning_rate(settings: TrainSettings, step: int, progress: float) -> float:
    """Linear warm-up over warmup_steps, then cosine decay to final_lr_fraction at progress 1."""
    if step < settings.warmup_steps:
        return settings.peak_lr * (step + 1) / settings.warmup_steps
    floor = settings.final_lr_fraction
    cosine = 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))
    return settings.peak_lr * (floor + (1.0 - floor) * cosine)


def make_optimizer(model: BitNetLM, settings: TrainSettings) -> keras.optimizers.Optimizer:
    """AdamW (beta2 0.95, clipped global norm); norm weights and the embedding get no weight decay."""
    optimizer = keras.optimizers.AdamW(
        learning_rate=settings.peak_lr,
        weight_decay=settings.weight_decay,
        beta_1=0.9,
        beta_2=0.95,
        global_clipnorm=settings.grad_clip,
    )
    no_decay = [v for v in model.trainable_variables if len(v.shape) == 1]
    no_decay.append(model.embed_tokens.embeddings)
    optimizer.exclude_from_weight_decay(var_list=no_decay)
    return optimizer


def evaluate(model: BitNetLM, inputs: np.ndarray, targets: np.ndarray, batch_size: int = 16) -> float:
    """Mean cross-entropy (nats per token) over fixed windows."""
    total, count = 0.0, 0
    for start in range(0, len(inputs), batch_size):
        x, y = inputs[start : start + batch_size], targets[start : start + batch_size]
        total += float(lm_loss(model(x), y)) * len(x)
        count += len(x)
    return total / count


def train(
    model: BitNetLM,
    sampler: WindowSampler,
    settings: TrainSettings,
    validation: tuple[np.ndarray, np.ndarray] | None = None,
    on_checkpoint: Callable[[TrainResult], None] | None = None,
    progress: Progress | None = None,
) -> TrainResult:
    """Train until the step or time budget runs out; call on_checkpoint every checkpoint_every_s."""
    tf.random.set_seed(settings.seed)
    optimizer = make_optimizer(model, settings)
    variables = model.trainable_variables

    @tf.function
    def step_fn(x: tf.Tensor, y: tf.Tensor) -> tf.Tensor:
        with tf.GradientTape() as tape:
            loss = lm_loss(model(x, training=True), y)
        optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables, strict=True))
        return loss

    progress = progress or Progress(settings.max_steps, settings.minutes * 60.0)
    result = TrainResult()
    budget_s = settings.minutes * 60.0
    start = last_checkpoint = time.monotonic()
    window: list[float] = []
    while result.steps < settings.max_steps and time.monotonic() - start < budget_s:
        elapsed = time.monotonic() - start
        fraction = max(elapsed / budget_s, result.steps / settings.max_steps)
        optimizer.learning_rate.assign(learning_rate(settings, result.steps, fraction))
        x, y = sampler.batch(settings.batch_size)
        loss = float(step_fn(tf.constant(x), tf.constant(y)))
        result.steps += 1
        result.tokens += x.size
        window.append(loss)
        result.history.append((result.steps, loss))
        if result.steps % settings.log_every == 0 or result.steps == 1:
            result.train_loss = float(np.mean(window))
            window = []
            progress.report(result.steps, result.train_loss, result.tokens, float(optimizer.learning_rate))
        if validation is not None and result.steps % settings.eval_every == 0:
            result.val_loss = evaluate(model, *validation)
            progress.note(f"step {result.steps}: val loss {result.val_loss:.4f}")
        if on_checkpoint is not None and time.monotonic() - last_checkpoint >= settings.checkpoint_every_s:
            result.seconds = time.monotonic() - start
            on_checkpoint(result)
            last_checkpoint = time.monotonic()
    if window:
        result.train_loss = float(np.mean(window))
    result.seconds = time.monotonic() - start
    return result
