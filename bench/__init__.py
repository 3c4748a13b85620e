"""The apirelay benchmark: mock upstream, load generator, and the gateway-vs-direct report."""
