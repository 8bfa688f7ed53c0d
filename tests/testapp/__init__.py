"""Models used only by the test suite, and its Celery application."""

# Every process on the test settings (the suite's and its Celery workers) must load the suite's
# Celery app: the apps' shared tasks publish through the current app, which would otherwise be
# Celery's default one with its default broker instead of CELERY_BROKER_URL.
from tests.testapp.celery import app as celery_app

__all__ = ["celery_app"]
