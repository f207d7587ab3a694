from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from rest_framework.routers import DefaultRouter

from apps.audit.views import AuditViewSet
from apps.datasets.data_views import DataInputView, DataOutputView
from apps.datasets.views import DatasetViewSet
from apps.metrics.views import metrics
from apps.pipelines.views import PipelineViewSet, PoolViewSet
from apps.processes.health import HealthView
from apps.processes.views import ProcessOutputContentView, ProcessViewSet
from apps.sweeps.views import SweepViewSet
from apps.teams.views import TeamViewSet
from apps.webhooks.views import DeliveryViewSet, WebhookViewSet

router = DefaultRouter()
router.register("pipelines", PipelineViewSet, basename="pipeline")
router.register("processes", ProcessViewSet, basename="process")
router.register("sweeps", SweepViewSet, basename="sweep")
router.register("pools", PoolViewSet, basename="pool")
router.register("teams", TeamViewSet, basename="team")
router.register("audit", AuditViewSet, basename="audit")
router.register("datasets", DatasetViewSet, basename="dataset")
router.register("webhooks", WebhookViewSet, basename="webhook")
router.register("deliveries", DeliveryViewSet, basename="delivery")

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/health/", HealthView.as_view(), name="health"),
    path("metrics", metrics, name="metrics"),
    # The OpenAPI 3 schema and Swagger UI over it (its files from the sidecar app: no CDN).
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="docs"),
    # One output's bytes: its path may hold "/", so it is no router route (and has no
    # trailing slash). The list is the router's .../outputs/.
    path("api/processes/<str:pk>/outputs/<path:path>", ProcessOutputContentView.as_view(),
         name="process-output"),
    # Signed, expiring URLs for workers with neither the store's path nor its bucket: the
    # signature is the right, no bearer token (apps/datasets/data_views.py). Not the API's:
    # only the job specs the control plane signs hand them out.
    path("data/inputs/<str:token>", DataInputView.as_view(), name="data-input"),
    path("data/outputs/<str:token>/<path:path>", DataOutputView.as_view(),
         name="data-output"),
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
