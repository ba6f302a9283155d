from django.apps import AppConfig


class RealtimeConfig(AppConfig):
    name = "realtime"
    verbose_name = "Live boards"

    def ready(self) -> None:
        from realtime import receivers  # noqa: F401
