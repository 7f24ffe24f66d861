"""Fetch: where runs come from. `source` is the port and its error family; `datafold` the
aiohttp adapter for Datafold's REST API."""
