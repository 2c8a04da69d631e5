"""A picture of one scored series: the values with the flagged points and the labelled anomaly windows
(when the CSV's folder has a NAB-style ``windows.json``), and the score with the threshold under them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import numpy.typing as npt

__all__ = ["labelled_windows", "plot_scores"]


def labelled_windows(csv: Path) -> list[tuple[int, int]]:
    """The anomaly windows ``windows.json`` labels for ``csv`` (Unix seconds), looked up in the CSV's
    folder and its parent (NAB keeps ``<group>/<name>.csv`` beside one ``windows.json``); [] if none."""
    from streamserve_anomaly.series_csv import parse_timestamp

    for folder in (csv.parent, csv.parent.parent):
        labels = folder / "windows.json"
        if labels.is_file():
            windows = json.loads(labels.read_text())
            key = csv.resolve().relative_to(folder.resolve()).as_posix()
            return [(parse_timestamp(a), parse_timestamp(b)) for a, b in windows.get(key, [])]
    return []


def plot_scores(
    path: Path,
    timestamps: npt.NDArray[np.int64],
    values: npt.NDArray[np.float64],
    scores: npt.NDArray[np.float64],
    is_anomaly: npt.NDArray[np.bool_],
    *,
    threshold: float | None = None,
    windows: list[tuple[int, int]] | None = None,
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
    for k, (start, end) in enumerate(windows or []):
        for axis in (top, bottom):
            axis.axvspan(np.datetime64(start, "s"), np.datetime64(end, "s"), color="tab:green",
                         alpha=0.15, label="labelled window" if k == 0 and axis is top else None)
    top.plot(times, values, linewidth=0.7, color="tab:blue", label="value")
    flagged = np.asarray(is_anomaly, dtype=bool)
    top.scatter(times[flagged], values[flagged], s=14, color="tab:red", zorder=3,
                label=f"anomaly ({int(flagged.sum())})")
    top.set_ylabel("value")
    top.legend(loc="upper left")
    if title:
        top.set_title(title)
    bottom.plot(times, scores, linewidth=0.7, color="tab:orange", label="score")
    bottom.scatter(times[flagged], np.asarray(scores)[flagged], s=10, color="tab:red", zorder=3)
    if threshold is not None:
        bottom.axhline(threshold, color="tab:red", linewidth=0.7, linestyle="--", label="threshold")
    bottom.set_ylim(-0.02, 1.02)
    bottom.set_ylabel("score")
    bottom.legend(loc="upper left")
    figure.autofmt_xdate()
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
