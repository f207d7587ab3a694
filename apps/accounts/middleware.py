import json

from django.conf import settings
from django.http import HttpResponse


class BodySizeLimitMiddleware:
    """Refuse an API request body over MAX_REQUEST_BODY_BYTES before anything reads it."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if request.path.startswith("/api/"):
            try:
                size = int(request.META.get("CONTENT_LENGTH") or 0)
            except ValueError:
                size = 0
            limit = settings.MAX_REQUEST_BODY_BYTES
            if size > limit:
                body = {"body": [f"The request body is {size} bytes; the limit is {limit}."]}
                return HttpResponse(json.dumps(body), status=400, content_type="application/json")
        return self.get_response(request)
