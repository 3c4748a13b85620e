"""The auth service: accounts, API keys, and key-secret authentication."""
