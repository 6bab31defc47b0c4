"""HTTP routes of /api/v1; they hold no SQL and never commit."""
