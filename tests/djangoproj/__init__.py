"""A tiny real Django project with django-celery-beat, for the periodic tests (database from the environment)."""
