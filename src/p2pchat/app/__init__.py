"""The headless node application: config, data dir, daemon wiring, control socket, logging."""
