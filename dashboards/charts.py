"""Charts shared by the dashboard's pages that Altair does not draw well."""
from __future__ import annotations

import pandas as pd


def parallel_coordinates(t: pd.DataFrame, axes: list[str], color: str):
    """A plotly parallel-coordinates figure of the trials `t` over `axes` (numeric axes with their
    own ticks, categorical ones with their values as tick labels), lines coloured by `color`.
    Plotly draws the brushing: dragging along an axis filters the lines."""
    import plotly.graph_objects as go

    dims = []
    for a in axes:
        col = t[a]
        if pd.api.types.is_numeric_dtype(col) and not pd.api.types.is_bool_dtype(col):
            dims.append(dict(label=a, values=col.astype(float)))
        else:
            values = sorted(col.astype(str).unique())
            codes = {v: i for i, v in enumerate(values)}
            dims.append(dict(label=a, values=col.astype(str).map(codes), tickvals=list(range(len(values))),
                             ticktext=values, range=[-0.25, len(values) - 0.75]))
    line = dict(color=t[color].astype(float), colorscale="Viridis", showscale=True,
                colorbar=dict(title=dict(text=color, side="right")))
    fig = go.Figure(go.Parcoords(line=line, dimensions=dims))
    fig.update_layout(height=380, margin=dict(l=60, r=60, t=50, b=30))
    return fig
