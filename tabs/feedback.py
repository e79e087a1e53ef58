"""What a failed action says, and where: beside the button that failed, until the next try.

A `gr.Error` puts its reason in a toast that fades after ~10 s and leaves a red "Error" badge on
every output of the event, so a person who looked away finds badges and no reason. Handlers here
return the reason as text for a Markdown placed next to their button instead (as Annotate's save
does), leave the other outputs as they were (`gr.skip()`), and clear the text on the next try.
"""

from __future__ import annotations

import logging

from core.errors import WorkbenchError

log = logging.getLogger("vvw.ui")


def failure_text(exc: BaseException, action: str = "") -> str:
    """One line for the page: a WorkbenchError's own words; anything else named by type, with the
    traceback in the server log (never on the page)."""
    head = f"✖ {action} failed: " if action else "✖ "
    if isinstance(exc, WorkbenchError):
        return head + str(exc)
    log.error("%s: unexpected %s", action or "action", type(exc).__name__, exc_info=exc)
    return head + f"unexpected {type(exc).__name__}: {exc} (the server log has the details)"


def ok_text(text: str) -> str:
    return f"✔ {text}"
