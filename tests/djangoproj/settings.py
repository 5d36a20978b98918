"""Settings: ALERTD_TEST_DJANGO_DB picks PostgreSQL (postgresql) or MariaDB (mysql), database `test`."""

from __future__ import annotations

import os

SECRET_KEY = "alertd-tests-only"
USE_TZ = True
TIME_ZONE = "UTC"
INSTALLED_APPS = ["django.contrib.contenttypes", "django.contrib.auth", "django_celery_beat"]
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"

if os.environ.get("ALERTD_TEST_DJANGO_DB", "postgresql") == "mysql":
    import pymysql

    pymysql.install_as_MySQLdb()  # Django's MySQL backend on PyMySQL (no C client library needed)
    DATABASES = {"default": {"ENGINE": "django.db.backends.mysql", "NAME": "test", "USER": "root", "HOST": "127.0.0.1"}}
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": "test",
            "USER": "postgres",
            "HOST": "127.0.0.1",
            "PORT": "5432",
        }
    }

CELERY_BROKER_URL = os.environ.get("ALERTD_TEST_BROKER", "redis://127.0.0.1:6379/13")
CELERY_TASK_SEND_SENT_EVENT = True  # beat's sends as task-sent events, as alertd's periodic checks need
CELERY_TIMEZONE = "UTC"
CELERY_BEAT_MAX_LOOP_INTERVAL = 1
