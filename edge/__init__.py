"""The HTTP edge: OpenAI-compatible HTTP and SSE in front of the gRPC services."""
