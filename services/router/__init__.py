"""RouterService: picks a channel for a model, calls the upstream, fails over, streams."""
