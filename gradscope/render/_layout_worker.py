"""Child process that lays out one DOT file with the Graphviz engine bundled in pygraphviz.

Run as a plain script (`python _layout_worker.py IN.dot OUT.svg [OUT.png ...]`), never
imported: it must start fast and must not import torch or gradscope, because the parent
kills it when layout takes longer than the timeout (the in-process call cannot be interrupted).
"""

import os
import sys


def _die_with_parent(parent: int) -> None:
    """Linux: be killed when the parent dies, however it dies (SIGKILL included), so no
    layout outlives gradscope even when gradscope could not clean up."""
    try:
        import ctypes
        import signal

        PR_SET_PDEATHSIG = 1
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
    except (OSError, AttributeError):  # not Linux
        return
    if os.getppid() != parent:  # the parent died before the request took effect
        os._exit(1)


def main(argv: list[str]) -> int:
    import pygraphviz

    source, outputs = argv[0], argv[1:]
    graph = pygraphviz.AGraph(filename=source)
    for out in outputs:
        graph.draw(out, format=out.rsplit(".", 1)[-1], prog="dot")
    return 0


if __name__ == "__main__":
    _die_with_parent(int(os.environ.get("GRADSCOPE_PARENT_PID", os.getppid())))
    sys.exit(main(sys.argv[1:]))
