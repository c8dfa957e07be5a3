"""Roll a training run back when its loss blows up (a divergence guard).

Long CPU runs of the codec (hours, resumed across sessions) have twice spiked: the 50-step mean of the
distortion jumped by three orders of magnitude within a few hundred steps (``s2-5band-v3`` at step ~8,300:
MSE 0.04 -> 67; ``s2-5band-v2``'s history holds a window at 8.1) after one bad update drove the GDN
parameters somewhere the run needs thousands of steps to leave. Gradient clipping was on in both runs and
did not stop it. The remedy of large-model training (roll back to
a recent good state and continue on other batches) is cheap here: the codec and its Adam state are a few
MB.

:class:`DivergenceGuard` keeps in-memory snapshots of the model and optimizer at the ends of recent healthy
windows. A window is *diverged* when its mean distortion is non-finite or more than ``factor`` times the
median of the last ``history`` healthy windows (after ``warmup`` windows, so the first fast fall of the
loss is never mistaken for one). Then the oldest kept snapshot (at least ``keep`` windows back, before the
blow-up began) is restored; the step counter and the data stream go on, so the run sees other batches.
``max_consecutive`` rollbacks without a healthy window in between raise :class:`TrainingDiverged`:
lower the learning rate.
"""

from __future__ import annotations

import copy
import math
from collections import deque

import numpy as np

__all__ = ["DivergenceGuard", "TrainingDiverged"]


class TrainingDiverged(RuntimeError):
    """The training loss keeps blowing up after rollbacks."""


class DivergenceGuard:
    """Snapshots of healthy training states and the rollback rule of the module docstring."""

    def __init__(self, model, optimizer, *, factor: float = 20.0, warmup: int = 10, history: int = 20,
                 keep: int = 3, max_consecutive: int = 5):
        if factor <= 1.0 or warmup < 1 or history < 1 or keep < 1 or max_consecutive < 1:
            raise ValueError("DivergenceGuard: factor must be > 1 and warmup, history, keep, max_consecutive >= 1")
        self.model, self.optimizer = model, optimizer
        self.factor, self.warmup, self.max_consecutive = float(factor), int(warmup), int(max_consecutive)
        self.healthy: deque[float] = deque(maxlen=int(history))
        self.snapshots: deque[tuple[dict, dict]] = deque(maxlen=int(keep))
        self.windows = 0
        self.consecutive = 0
        self.events: list[dict] = []

    def threshold(self) -> float | None:
        """The window mean above which a window counts as diverged (None during warm-up)."""
        if self.windows < self.warmup or not self.healthy:
            return None
        return self.factor * float(np.median(np.asarray(self.healthy)))

    def end_window(self, step: int, distortion: float) -> bool:
        """Call at the end of each window with its mean distortion; True if the state was rolled back."""
        self.windows += 1
        limit = self.threshold()
        if math.isfinite(distortion) and (limit is None or distortion <= limit):
            self.healthy.append(float(distortion))
            self.snapshots.append((copy.deepcopy(self.model.state_dict()),
                                   copy.deepcopy(self.optimizer.state_dict())))
            self.consecutive = 0
            return False
        self.consecutive += 1
        if self.consecutive > self.max_consecutive:
            raise TrainingDiverged(
                f"training diverged at step {step}: window mean distortion {distortion:.4g} against a limit of "
                f"{limit if limit is not None else float('nan'):.4g}, {self.max_consecutive} rollbacks in a row "
                "did not help (lower the learning rate, TrainConfig.lr)")
        if not self.snapshots:   # nothing healthy to go back to yet (a non-finite loss at the very start)
            raise TrainingDiverged(f"training diverged at step {step} before any healthy window "
                                   f"(window mean distortion {distortion:.4g})")
        model_state, opt_state = self.snapshots[0]
        self.model.load_state_dict(model_state)
        self.optimizer.load_state_dict(opt_state)
        while len(self.snapshots) > 1:   # later snapshots may already hold the start of the blow-up
            self.snapshots.pop()
        self.events.append({"step": int(step), "distortion": float(distortion),
                            "limit": None if limit is None else round(limit, 6)})
        return True
