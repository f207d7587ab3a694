"""`GET /metrics`: the control plane's figures in Prometheus's text format, for a scraper that
presents the metrics token (``ORCH_METRICS_TOKEN``). Without a token configured the route does
not exist (404): the figures name pools and teams, which not every caller may see."""

from __future__ import annotations

import hmac

from django.conf import settings
from django.http import Http404, HttpRequest, HttpResponse
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import CollectorRegistry

from apps.metrics.collector import OrchestrationCollector

registry = CollectorRegistry(auto_describe=False)
registry.register(OrchestrationCollector())


def metrics(request: HttpRequest) -> HttpResponse:
    expected = settings.METRICS_TOKEN
    if not expected:
        raise Http404("no metrics token is configured (ORCH_METRICS_TOKEN)")
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip(), expected):
        response = HttpResponse("a bearer token (ORCH_METRICS_TOKEN) is needed\n", status=401,
                                content_type="text/plain")
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    # The format the scraper asks for (Accept): Prometheus's text format, or OpenMetrics.
    encode, content_type = choose_encoder(request.headers.get("Accept", ""))
    return HttpResponse(encode(registry), content_type=content_type)
