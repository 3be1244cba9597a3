"""Engines' runs as flowsight's: each engine's facts (a task started, was
retried, failed...) translated into flowsight events through one adapter
(:mod:`flowsight.integrations.adapter`), one module per engine
(:mod:`flowsight.integrations.celery`)."""
