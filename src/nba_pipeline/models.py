"""The two salary models and how they are scored.

Batch mode fits ridge regression on the whole training matrix.  Streaming mode fits an
online linear model (``SGDRegressor.partial_fit``) as chunks arrive: training rows wait in a
buffer that is carried across chunk boundaries, and the model is updated once for every
``batch_size`` rows, so ``batch_size`` is the real size of each update.  Before each update
the model predicts the rows it is about to learn from (test-then-train), which gives the
prequential error.  Both models are scored on the same held-out rows, in dollars.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from sklearn.linear_model import Ridge

# scikit-learn is imported by load_models(), not here: the command that only orchestrates
# measured runs (each in a worker forked from a server that has imported it) never needs it,
# and its import is a few tenths of a second of every command's start.


def load_models() -> None:
    """Import scikit-learn's models and metrics now (at once when they already are).

    Every run calls this before it starts its clocks and memory watch, so that a run in the
    command's own process (``isolate_runs`` off) never counts the import as its work.
    """
    import sklearn.linear_model  # noqa: F401
    import sklearn.metrics  # noqa: F401


RIDGE_ALPHA = 1.0


def score(y_true: np.ndarray, y_pred: np.ndarray) -> dict:
    """R², RMSE and MAE on held-out rows, in dollars."""
    from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score

    if len(y_true) < 2:
        return {"r2": None, "rmse": None, "mae": None, "n_test": int(len(y_true))}
    return {
        "r2": float(r2_score(y_true, y_pred)),
        "rmse": float(np.sqrt(mean_squared_error(y_true, y_pred))),
        "mae": float(mean_absolute_error(y_true, y_pred)),
        "n_test": int(len(y_true)),
    }


def fit_batch_model(X_train: np.ndarray, y_train: np.ndarray, seed: int) -> tuple[Ridge, float]:
    """Ridge regression on the training rows; returns the model and its fit time.

    ``X_train`` is centred in place rather than copied (the copy would be the largest
    allocation of a batch run), so pass rows selected for the fit, such as ``X[train]``.
    """
    from sklearn.linear_model import Ridge

    model = Ridge(alpha=RIDGE_ALPHA, random_state=seed, copy_X=False)
    started = time.perf_counter()
    model.fit(X_train, y_train)
    return model, time.perf_counter() - started


def coefficients(model, feature_names: list[str], target_scale: float = 1.0) -> dict:
    """Intercept and per-feature coefficients in dollars per unit of the scaled feature."""
    coef = np.ravel(model.coef_) * target_scale
    return {
        "intercept": float(np.ravel(model.intercept_)[0]),
        "coef": {name: float(value) for name, value in zip(feature_names, coef, strict=True)},
    }


class OnlineSalaryModel:
    """SGD linear regression on a standardised target, updated every ``batch_size`` rows.

    The target is standardised with the training mean and scale from the fitted state (so
    no held-out salary is used); the learning rate decays as ``0.05 / t**0.25`` and the
    averaged weights are used for prediction, which makes a single pass over a few hundred
    rows converge close to the batch solution.  These settings had the lowest prequential
    (training-rows-only) error among the schedules tried on the NBA2K table and on the
    packaged sample.
    """

    def __init__(self, batch_size: int, target_mean: float, target_scale: float, seed: int):
        self.batch_size = batch_size
        self.target_mean = target_mean
        self.target_scale = target_scale
        from sklearn.linear_model import SGDRegressor

        self.model = SGDRegressor(
            loss="squared_error",
            penalty="l2",
            alpha=1e-4,
            learning_rate="invscaling",
            eta0=0.05,
            power_t=0.25,
            average=True,
            random_state=seed,
        )
        self._pending_X: list[np.ndarray] = []
        self._pending_y: list[np.ndarray] = []
        self._pending_rows = 0
        self.updates = 0
        self.rows_learned = 0
        self.training_time_s = 0.0
        self._prequential_sq_error = 0.0
        self._prequential_rows = 0

    def add(self, X: np.ndarray, y: np.ndarray) -> float:
        """Queue training rows; run every full update. Returns the time spent updating."""
        if len(X):
            self._pending_X.append(X)
            self._pending_y.append(y)
            self._pending_rows += len(X)
        spent = 0.0
        while self._pending_rows >= self.batch_size:
            spent += self._update(self.batch_size)
        return spent

    def flush(self) -> float:
        """Learn from the rows still waiting (the last, partial update)."""
        return self._update(self._pending_rows) if self._pending_rows else 0.0

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Predicted salaries in dollars."""
        return self.model.predict(X) * self.target_scale + self.target_mean

    def prequential(self) -> dict:
        """Test-then-train error over every update after the first."""
        rows = self._prequential_rows
        rmse = float(np.sqrt(self._prequential_sq_error / rows)) if rows else None
        return {"prequential_rmse": rmse, "prequential_rows": rows}

    def _update(self, rows: int) -> float:
        X = np.vstack(self._pending_X)
        y = np.concatenate(self._pending_y)
        batch_X, batch_y = X[:rows], y[:rows]
        self._pending_X, self._pending_y = [X[rows:]], [y[rows:]]
        self._pending_rows -= rows

        started = time.perf_counter()
        if self.updates:
            error = self.predict(batch_X) - batch_y
            self._prequential_sq_error += float(error @ error)
            self._prequential_rows += rows
        self.model.partial_fit(batch_X, (batch_y - self.target_mean) / self.target_scale)
        self.updates += 1
        self.rows_learned += rows
        spent = time.perf_counter() - started
        self.training_time_s += spent
        return spent
