"""The HTTP API: the FastAPI application, authentication, one module per vendor, notifications (CometD)."""
