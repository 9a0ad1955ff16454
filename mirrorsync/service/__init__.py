"""mirrorsync as a service: the per-mirror lock, run state, metrics, hooks, sd_notify, daemon."""
