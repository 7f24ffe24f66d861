"""Store: where the state lives between cycles (a file, or PostgreSQL for high availability)."""
