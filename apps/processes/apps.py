from django.apps import AppConfig


class ProcessesConfig(AppConfig):
    name = "apps.processes"

    def ready(self):
        # LOGGING puts the secret mask on the root's handler; Django keeps handlers of its own.
        from workers import log_masking

        log_masking.install_everywhere()
