"""The OpenAPI 3.1 description of the gateway, shipped as package data (`openapi.yaml`)."""
