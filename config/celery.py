"""The Celery app. Short tasks go to `default`; training runs go to their own `training` queue."""
import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("preference_studio")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
