"""Step kinds and probes: one module each, found through `actions.registry`."""
