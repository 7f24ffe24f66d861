"""Write docs/routes.schema.json, the routes file's JSON Schema, from the models.

Run `.venv/bin/python tools/routes_schema.py` after changing a routes-file model;
tests/test_routes_schema.py fails while the committed file is stale.
"""

from __future__ import annotations

from pathlib import Path

from notifier.route.schema import routes_schema_text

TARGET = Path(__file__).resolve().parent.parent / "docs" / "routes.schema.json"

if __name__ == "__main__":
    TARGET.write_text(routes_schema_text(), encoding="utf-8")
    print(f"wrote {TARGET}")
