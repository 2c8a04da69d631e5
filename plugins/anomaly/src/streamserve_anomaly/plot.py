"""A picture of one scored series: the values with the flagged points, and the score under them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt

__all__ = ["plot_scores"]


def plot_scores(
    path: Path,
    timestamps: npt.NDArray[np.int64],
    values: npt.NDArray[np.float64],
    scores: npt.NDArray[np.float64],
    is_anomaly: npt.NDArray[np.bool_],
    *,
    threshold: float | None = None,
    title: str = "",
) -> None:
    """Write a PNG (or any format matplotlib knows by the suffix) of the series and its scores."""
    import matplotlib

    matplotlib.use("Agg")  # files only: no display needed, none opened
    import matplotlib.pyplot as plt

    times = timestamps.astype("datetime64[s]")
    figure, (top, bottom) = plt.subplots(
        2, 1, sharex=True, figsize=(12, 6), gridspec_kw={"height_ratios": [3, 1]}
    )
    top.plot(times, values, linewidth=0.7, color="tab:blue", label="value")
    flagged = np.asarray(is_anomaly, dtype=bool)
    top.scatter(times[flagged], values[flagged], s=14, color="tab:red", zorder=3,
                label=f"anomaly ({int(flagged.sum())})")
    top.set_ylabel("value")
    top.legend(loc="upper left")
    if title:
        top.set_title(title)
    bottom.plot(times, scores, linewidth=0.7, color="tab:orange", label="score")
    if threshold is not None:
        bottom.axhline(threshold, color="tab:red", linewidth=0.7, linestyle="--", label="threshold")
    bottom.set_ylim(-0.02, 1.02)
    bottom.set_ylabel("score")
    bottom.legend(loc="upper left")
    figure.autofmt_xdate()
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
