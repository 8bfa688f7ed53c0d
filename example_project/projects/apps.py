"""App config of the example projects app: registers the SaaS's webhook events."""

from django.apps import AppConfig


class ProjectsConfig(AppConfig):
    name = "example_project.projects"
    label = "projects"
    verbose_name = "Example SaaS"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from example_project.projects.events import register_events

        register_events()
