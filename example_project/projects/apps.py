"""App config of the example projects app."""

from django.apps import AppConfig


class ProjectsConfig(AppConfig):
    name = "example_project.projects"
    label = "projects"
    default_auto_field = "django.db.models.BigAutoField"
