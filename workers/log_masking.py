"""A logging filter that masks secret values in log lines, on the worker and the control plane.

Secrets should never reach a log line (promise 7); this is the net under that rule. The values
come from :func:`.secrets.remembered`: every value this process sealed (the web process, when a
run is posted) or opened (the worker, when it starts the job). The filter sits on handlers, not
loggers, because a logger's filter never sees the records its children propagate to it.
"""

from __future__ import annotations

import logging
import re
import traceback

from .secrets import remembered

MASK = "****"


class SecretMaskingFilter(logging.Filter):
    """Replaces every remembered secret value with ``****`` in a record's message, arguments,
    exception and stack text. Never drops a record."""

    def __init__(self, name: str = ""):
        super().__init__(name)
        self._values: tuple[str, ...] = ()
        self._pattern: re.Pattern | None = None

    def filter(self, record: logging.LogRecord) -> bool:
        pattern = self._current_pattern()
        if pattern is None:
            return True
        try:
            message = record.getMessage()
        except Exception:  # a broken format: leave it for the handler to report
            message = str(record.msg)
        record.msg, record.args = pattern.sub(MASK, message), ()
        if record.exc_info and not record.exc_text:
            record.exc_text = "".join(traceback.format_exception(*record.exc_info)).rstrip("\n")
        if record.exc_text:
            record.exc_text = pattern.sub(MASK, record.exc_text)
        if record.stack_info:
            record.stack_info = pattern.sub(MASK, record.stack_info)
        return True

    def _current_pattern(self) -> re.Pattern | None:
        values = remembered()
        if values != self._values:
            # Longest first, so a value that contains another is masked whole.
            ordered = sorted(values, key=len, reverse=True)
            self._pattern = re.compile("|".join(map(re.escape, ordered))) if ordered else None
            self._values = values
        return self._pattern


def install(logger: logging.Logger | None = None) -> None:
    """Put the filter on every handler of ``logger`` (the root logger by default), once."""
    for handler in (logger or logging.getLogger()).handlers:
        if not any(isinstance(f, SecretMaskingFilter) for f in handler.filters):
            handler.addFilter(SecretMaskingFilter())


def install_everywhere() -> None:
    """Put the filter on the handlers of the root logger and of every logger that has its own
    (Django's ``django`` and ``django.server``, Celery's task logger)."""
    install()
    for logger in list(logging.root.manager.loggerDict.values()):
        if isinstance(logger, logging.Logger):
            install(logger)
