"""Child process that lays out one DOT file with the Graphviz engine bundled in pygraphviz.

Run as a plain script (`python _layout_worker.py IN.dot OUT.svg [OUT.png ...]`), never
imported: it must start fast and must not import torch or gradscope, because the parent
kills it when layout takes longer than the timeout (the in-process call cannot be interrupted).
"""

import sys


def main(argv: list[str]) -> int:
    import pygraphviz

    source, outputs = argv[0], argv[1:]
    graph = pygraphviz.AGraph(filename=source)
    for out in outputs:
        graph.draw(out, format=out.rsplit(".", 1)[-1], prog="dot")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
