"""A run as flowsight knows it, from its events: the events themselves, the
run's metrics and steps, its states and their transitions, its ETA and
stall verdict, and a workflow's history of past runs."""
