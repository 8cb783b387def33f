"""What the console shows: sidjax's own progress and results, without the libraries' INFO
chatter (orbax logs every step of every checkpoint save, about 60 lines each; jax says it could
not open libtpu.so on every machine without a TPU, which reads like an error). Their warnings
and errors still show. Applied by the command line and by `stages.train_and_evaluate`, so a
notebook sees the same console as a terminal."""

from __future__ import annotations

import logging


class LibraryInfoFilter(logging.Filter):

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.WARNING:
            return True
        if "/orbax/" in record.pathname:
            return False
        return not (record.pathname.endswith("xla_bridge.py")
                    and "Unable to initialize backend" in record.getMessage())


_FILTER = LibraryInfoFilter()
# absl's logger carries orbax's records; jax logs its backend probe on its own logger.
_LOGGERS = ("absl", "jax._src.xla_bridge")


def quiet_library_logs() -> None:
    """Installs the filter (idempotent)."""
    for name in _LOGGERS:
        logger = logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)
