"""Figures drawn without pyplot and written as PNG: the run's curves (:mod:`hf_ptjf.runner.curves`) and the sweep
plots (:mod:`hf_ptjf.analysis.plots`) share them.

A :class:`matplotlib.figure.Figure` gets the Agg canvas attached directly, so drawing never switches the global
pyplot backend of the caller.
"""

from __future__ import annotations

import os
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

__all__ = ["new_figure", "png_path", "save_png"]


def png_path(path: str | os.PathLike[str]) -> Path:
    """``path`` as a ``.png`` file to write, its parent directories created."""
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise ValueError(f"`path` must end with .png (these plots are written as PNG), got {str(path)!r}.")
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def new_figure(size: tuple[float, float] = (7.5, 4.8)) -> Figure:
    """An empty figure with a constrained layout, on the Agg canvas."""
    fig = Figure(figsize=size, layout="constrained")
    FigureCanvasAgg(fig)  # attach the Agg canvas: no pyplot, no global backend switch
    return fig


def save_png(fig: Figure, path: Path) -> Path:
    """Write ``fig`` to ``path`` (120 dpi); returns ``path``."""
    fig.savefig(path, format="png", dpi=120)
    return path
