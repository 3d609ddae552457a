"""The JSON log line: its own fields cannot be overwritten by a caller's `extra`."""

from __future__ import annotations

import json
import logging

from dicom_pipeline.logs import JsonFormatter


def test_an_extra_named_like_a_field_of_the_line_does_not_replace_it() -> None:
    record = logging.LogRecord("webhook.ingestion", logging.INFO, __file__, 1, "deletion notice accepted", None, None)
    record.__dict__.update({"level": "Study", "message": "spoofed", "orthanc_id": "abc"})

    line = json.loads(JsonFormatter().format(record))

    assert (line["level"], line["message"], line["orthanc_id"]) == ("info", "deletion notice accepted", "abc")
