"""The vocabulary every stage shares: runs, monitors, notifications, the state document, a cycle's
report and small value checks. Pure: the standard library and pydantic only."""
