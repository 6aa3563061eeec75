"""The HTTP API (aiohttp): health, metrics, readings, and the feature routes."""
