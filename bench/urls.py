"""The product's URLs, and ``POST /bench/plain/``: the baseline of the submit benchmark, a plain
DRF create view that inserts one row behind the API's token check as django-oauth-toolkit
makes it (the API's authentication class without its cache of checked tokens, which is part
of what the submit benchmark measures) and the API's permission class."""

from django.urls import path
from rest_framework import generics, serializers

from apps.accounts.authentication import ClientCredentialsAuthentication
from bench.models import PlainRow
from orchestration.urls import urlpatterns as product_urls


class PlainRowSerializer(serializers.ModelSerializer):
    class Meta:
        model = PlainRow
        fields = ("id", "name", "payload", "created_at")


class DjangoOAuthToolkitCheck(ClientCredentialsAuthentication):
    uses_cache = False


class PlainCreateView(generics.CreateAPIView):
    authentication_classes = (DjangoOAuthToolkitCheck,)
    queryset = PlainRow.objects.all()
    serializer_class = PlainRowSerializer


urlpatterns = [*product_urls, path("bench/plain/", PlainCreateView.as_view(), name="bench-plain")]
