import django_filters as filters

from apps.datasets.models import Dataset


class DatasetFilter(filters.FilterSet):
    """``?name=reads.fastq``: the datasets of exactly that name (names need not be unique)."""

    name = filters.CharFilter(field_name="name", lookup_expr="exact")

    class Meta:
        model = Dataset
        fields = ("name",)
