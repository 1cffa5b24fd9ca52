"""What gradscope needs to know about running inside Jupyter (IPython), without importing it.

IPython compiles each cell into a temporary file (`/tmp/ipykernel_123/456.py`) and keeps
which cell each file holds; gradscope names such code `cell [n], line k`, as the notebook
numbers its cells (`In [n]`), never by the temporary file's name.
"""

from __future__ import annotations

import sys


def notebook_cell(filename: str) -> int | None:
    """The execution count n (of `In [n]`) of the notebook cell compiled into `filename`,
    or None outside IPython and for real files."""
    ipython = sys.modules.get("IPython")
    if ipython is None:
        return None
    try:  # the map IPython's own tracebacks use ("Cell In[3], line 2")
        number = ipython.get_ipython().compile._filename_map.get(filename)
    except Exception:  # not in IPython, or an IPython without the map
        return None
    return number if isinstance(number, int) and not isinstance(number, bool) else None
