"""A small multi-tenant SaaS built on the better suite."""

# Every process (runserver and manage.py commands too, not only the worker) must load the
# project's Celery app: the suite's shared tasks publish through the current app, which would
# otherwise be Celery's default one with its default broker instead of CELERY_BROKER_URL.
from example_project.celery import app as celery_app

__all__ = ["celery_app"]
