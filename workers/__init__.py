"""Celery workers: the app and the training runner (TrainContext, resume, heartbeats)."""
