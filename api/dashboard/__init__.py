"""The admin dashboard: a static single page served by the API itself (see docs/dashboard.md)."""
