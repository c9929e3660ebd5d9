"""PNG plot of retrieval recall@k from an evaluation report (matplotlib's Agg canvas, no display)."""

from __future__ import annotations

import io
import os
from typing import Any

from .._extras import import_extra
from .._io import atomic_write_bytes


def plot_recall_at_k(report: dict[str, Any], path: str | os.PathLike, title: str | None = None) -> None:
    """Draw every ``*recall@k`` curve of ``report`` against k and write a PNG to ``path``."""
    FigureCanvasAgg = import_extra("matplotlib.backends.backend_agg", "plot", "Plotting").FigureCanvasAgg
    Figure = import_extra("matplotlib.figure", "plot", "Plotting").Figure

    curves = {name: values for name, values in report.items() if name.endswith("recall@k")}
    if not curves:
        raise ValueError("The report has no recall@k values to plot.")
    figure = Figure(figsize=(5, 3.5))
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    all_ks: set[int] = set()
    for name, values in curves.items():
        ks = sorted(int(k) for k in values)
        all_ks.update(ks)
        axes.plot(ks, [values[str(k)] for k in ks], marker="o", label=name.removesuffix("@k"))
    axes.set(xlabel="k (passages retrieved)", ylabel="recall", ylim=(0, 1.02), title=title or "Retrieval recall@k")
    axes.set_xscale("log")
    axes.set_xticks(sorted(all_ks), [str(k) for k in sorted(all_ks)])
    axes.minorticks_off()
    axes.grid(alpha=0.3)
    axes.legend(loc="lower right")  # recall curves rise to the top right: the lower right stays clear
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=120, bbox_inches="tight")
    atomic_write_bytes(path, buffer.getvalue())
