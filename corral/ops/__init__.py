"""Acting on a workspace from outside an experiment: listing, live state, logs, removal."""
