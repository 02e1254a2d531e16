"""Charts shared by the dashboard's pages that Altair does not draw well."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd


def plain(text: str) -> str:
    """Text from the results as plotly shows it literally: plotly reads <b>, <a href=...> and the
    like in its labels, so '<' and '&' become entities."""
    return text.replace("&", "&amp;").replace("<", "&lt;")


def log_params(spec) -> set[str]:
    """The searched parameters of a spec drawn on a log scale (`loguniform`)."""
    space = ((spec or {}).get("search") or {}).get("space") or {} if isinstance(spec, dict) else {}
    return {p for p, d in space.items() if isinstance(d, dict) and "loguniform" in d}


def _log_dim(label: str, col: pd.Series) -> dict:
    """A log10 axis whose ticks read as the values (1e-4, 1e-3, ...)."""
    v = np.log10(col.astype(float))
    lo, hi = math.floor(v.min()), math.ceil(v.max())
    ticks = list(range(lo, hi + 1)) if hi > lo else [float(v.min())]
    return dict(label=f"{label} (log)", values=v, tickvals=ticks, ticktext=[f"{10.0 ** k:.3g}" for k in ticks],
                range=[lo, hi] if hi > lo else None)


def parallel_coordinates(t: pd.DataFrame, axes: list[str], color: str, log_axes: frozenset = frozenset()):
    """A plotly parallel-coordinates figure of the trials `t` over `axes` (numeric axes with their
    own ticks, log10 ones for `log_axes` with positive values, categorical ones with their values
    as tick labels), lines coloured by `color`. Plotly draws the brushing: dragging along an axis
    filters the lines."""
    import plotly.graph_objects as go

    dims = []
    for a in axes:
        col = t[a]
        numeric = pd.api.types.is_numeric_dtype(col) and not pd.api.types.is_bool_dtype(col)
        if numeric and a in log_axes and (col > 0).all():
            dims.append({k: v for k, v in _log_dim(a, col).items() if v is not None})
        elif numeric:
            dims.append(dict(label=a, values=col.astype(float)))
        else:
            values = sorted(col.astype(str).unique())
            codes = {v: i for i, v in enumerate(values)}
            dims.append(dict(label=a, values=col.astype(str).map(codes), tickvals=list(range(len(values))),
                             ticktext=[plain(v) for v in values], range=[-0.25, len(values) - 0.75]))
    line = dict(color=t[color].astype(float), colorscale="Viridis", showscale=True,
                colorbar=dict(title=dict(text=color, side="right")))
    fig = go.Figure(go.Parcoords(line=line, dimensions=dims))
    fig.update_layout(height=380, margin=dict(l=60, r=60, t=50, b=30))
    return fig
