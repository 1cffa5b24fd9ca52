"""What gradscope does when its own code fails inside the user's step.

Capture runs inside the user's ops, backward and optimizer steps. A failure of gradscope's
own there must never change what the user's code does: the item being captured (an op's
notes, a step's event) is dropped, the user's call runs as it would without gradscope,
and the failure is logged once per place, with its traceback, so that it gets reported.
"""

from __future__ import annotations

import logging

log = logging.getLogger("gradscope")

_reported: set[str] = set()


def internal_error(while_doing: str) -> None:
    """Call from an `except Exception:` block: log the failure (once per `while_doing`)."""
    if while_doing in _reported:
        log.debug("gradscope: internal error while %s", while_doing, exc_info=True)
        return
    _reported.add(while_doing)
    log.warning("gradscope: internal error while %s (not recorded; your code ran as without gradscope)",
                while_doing, exc_info=True)
