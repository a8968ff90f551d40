from django.apps import AppConfig


class PoolConfig(AppConfig):
    name = "pool"
    verbose_name = "Inference pool"

    def ready(self) -> None:
        from pool.dashboard import sessions  # noqa: F401 (connects the logout signal)
