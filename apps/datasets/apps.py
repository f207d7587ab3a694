from django.apps import AppConfig


class DatasetsConfig(AppConfig):
    name = "apps.datasets"

    def ready(self) -> None:
        from apps.datasets import checks  # noqa: F401 - registers the storage URL's check
