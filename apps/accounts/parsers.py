"""A JSON body parser that refuses a body nested too deep before parsing it: Python's parser
recurses, and a body 10,000 levels deep broke it (RecursionError, a 500)."""

from __future__ import annotations

import io

from django.conf import settings
from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser

from apps.processes.input_limits import MAX_DEPTH, too_deep, too_deep_message


class BoundedJSONParser(JSONParser):
    # The body's own object is one level above the configs it carries.
    max_depth = MAX_DEPTH + 1

    def parse(self, stream, media_type=None, parser_context=None):
        encoding = (parser_context or {}).get("encoding", settings.DEFAULT_CHARSET)
        raw = stream.read()
        try:
            text = raw.decode(encoding)
        except (UnicodeDecodeError, LookupError) as exc:
            raise ParseError(f"JSON parse error - {exc}") from None
        key = too_deep(text, self.max_depth)
        if key is not None:  # a ParseError that names the field (errors.exception_handler)
            where = key or "body"
            raise ParseError({where: [f"{where}: {too_deep_message()}"]})
        try:
            return super().parse(io.BytesIO(raw), media_type, parser_context)
        except RecursionError:  # not reached past the check above; kept as the last guard
            raise ParseError({"body": [f"body: {too_deep_message()}"]}) from None
