"""Training checkpoints: everything a run needs to continue where it stopped, in one file.

A session may end before training does (sessions here are cut after 180 minutes), so
:func:`geocodec.training.train.train` writes a checkpoint every few minutes and at the end, and
``geocodec train codec --resume`` continues from it: same weights, optimiser moments, step count,
elapsed minutes, loss history and random-number states, so a resumed run draws the same crops
and quantization steps as an uninterrupted one.

The file is a ``torch.save`` of plain tensors, numbers, strings, lists and dicts, written under a
temporary name and renamed into place (a kill mid-write leaves the previous checkpoint), and read
back with ``torch.load(weights_only=True)``: nothing in it is unpickled as code.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from geocodec.atomic import temp_path_for
from geocodec.errors import InputError

__all__ = ["CHECKPOINT_VERSION", "save_checkpoint", "load_checkpoint", "rng_state", "set_rng_state"]

CHECKPOINT_VERSION = 1


def _jsonable_state(state) -> str:
    """A numpy ``Generator``'s bit-generator state as JSON text (its integers exceed 64 bits)."""
    return json.dumps(state)


def rng_state(generator) -> str:
    """The state of a numpy ``Generator`` as text that :func:`set_rng_state` restores."""
    return _jsonable_state(generator.bit_generator.state)


def set_rng_state(generator, text: str) -> None:
    """Restore a numpy ``Generator`` to the state :func:`rng_state` saved."""
    generator.bit_generator.state = json.loads(text)


def save_checkpoint(path: str | os.PathLike, *, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                    state: dict) -> None:
    """Write ``model`` and ``optimizer`` weights plus ``state`` (plain values) to ``path`` atomically."""
    path = os.fspath(path)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    payload = {"version": CHECKPOINT_VERSION, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
               "torch_rng": torch.get_rng_state(), "state": state}
    tmp = temp_path_for(path)
    try:
        torch.save(payload, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def load_checkpoint(path: str | os.PathLike, *, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                    expect: dict) -> dict:
    """Load ``path`` into ``model`` and ``optimizer``; return its ``state``.

    ``expect`` holds what must match for the run to be the same run (configuration, seed, data):
    a mismatch raises :class:`~geocodec.errors.InputError` naming the checkpoint and the field, since
    continuing another run's checkpoint would silently mix two trainings.
    """
    path = os.fspath(path)
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise InputError("no checkpoint to resume from; run without --resume to start", source=path) from None
    except Exception as exc:  # noqa: BLE001 - a truncated or foreign file: say which
        raise InputError(f"not a readable training checkpoint: {exc}", source=path) from exc
    if not isinstance(payload, dict) or payload.get("version") != CHECKPOINT_VERSION:
        raise InputError(f"checkpoint version {payload.get('version') if isinstance(payload, dict) else '?'}, "
                         f"this geocodec reads version {CHECKPOINT_VERSION}", source=path, field="version")
    state = payload["state"]
    for key, want in expect.items():
        if state.get(key) != want:
            raise InputError(f"the checkpoint was written by another run: {key} is {state.get(key)!r} there, "
                             f"{want!r} here; use the same options, or start afresh without --resume",
                             source=path, field=key)
    model.load_state_dict(payload["model"])
    optimizer.load_state_dict(payload["optimizer"])
    torch.set_rng_state(payload["torch_rng"])
    return state
