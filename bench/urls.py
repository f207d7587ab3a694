"""The product's URLs, and ``POST /bench/plain/``: the baseline of the submit benchmark, a plain
DRF create view that checks the same token (the API's authentication and permission classes)
and inserts one row."""

from django.urls import path
from rest_framework import generics, serializers

from bench.models import PlainRow
from orchestration.urls import urlpatterns as product_urls


class PlainRowSerializer(serializers.ModelSerializer):
    class Meta:
        model = PlainRow
        fields = ("id", "name", "payload", "created_at")


class PlainCreateView(generics.CreateAPIView):
    queryset = PlainRow.objects.all()
    serializer_class = PlainRowSerializer


urlpatterns = [*product_urls, path("bench/plain/", PlainCreateView.as_view(), name="bench-plain")]
