from django.contrib import admin
from django.urls import include, path
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
    path("api/", include(router.urls)),
    path("o/", include("oauth2_provider.urls", namespace="oauth2_provider")),
]
