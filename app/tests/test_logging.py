from __future__ import annotations

import io
import json
import logging
import sys

from chat.server import LOGGER, JsonFormatter, configure_logging, log


def test_json_lines_with_fields() -> None:
    stream = io.StringIO()
    configure_logging(logging.INFO, stream)
    log(logging.INFO, "request", path="/api/messages", status=201)
    log(logging.DEBUG, "hidden at info")
    lines = stream.getvalue().splitlines()
    assert len(lines) == 1
    entry = json.loads(lines[0])
    assert entry["level"] == "info"
    assert entry["logger"] == "chat"
    assert entry["message"] == "request"
    assert (entry["path"], entry["status"]) == ("/api/messages", 201)
    assert entry["time"].endswith("Z")
    assert LOGGER.propagate is False


def test_fields_do_not_override_the_envelope_and_exceptions_are_included() -> None:
    formatter = JsonFormatter()
    try:
        raise RuntimeError("boom")  # noqa: TRY301 - an exception with a traceback is needed
    except RuntimeError:
        record = LOGGER.makeRecord(
            "chat",
            logging.ERROR,
            __file__,
            1,
            "failed",
            (),
            exc_info=sys.exc_info(),
            extra={"fields": {"message": "spoofed", "level": "debug", "obj": object()}},
        )
    entry = json.loads(formatter.format(record))
    assert (entry["message"], entry["level"]) == ("failed", "error")
    assert "RuntimeError: boom" in entry["exception"]
    assert entry["obj"].startswith("<object")
