from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from rest_framework.routers import DefaultRouter

from apps.pipelines.views import PipelineViewSet, PoolViewSet
from apps.processes.health import HealthView
from apps.processes.views import ProcessViewSet

router = DefaultRouter()
router.register("pipelines", PipelineViewSet, basename="pipeline")
router.register("processes", ProcessViewSet, basename="process")
router.register("pools", PoolViewSet, basename="pool")

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/health/", HealthView.as_view(), name="health"),
    # The OpenAPI 3 schema and Swagger UI over it (its files from the sidecar app: no CDN).
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="docs"),
    path("api/", include(router.urls)),
    # Only what the product uses of django-oauth-toolkit: no application registration,
    # introspection, OIDC or authorization-code routes (orchestration/oauth_urls.py).
    path("o/", include("orchestration.oauth_urls", namespace="oauth2_provider")),
]

# Errors outside a DRF view answer JSON of the API's one error shape too, never an HTML page.
handler400 = "apps.accounts.errors.bad_request"
handler403 = "apps.accounts.errors.permission_denied"
handler404 = "apps.accounts.errors.not_found"
handler500 = "apps.accounts.errors.server_error"
