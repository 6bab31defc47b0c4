"""The FastAPI app, its routes, schemas, auth, the API client and the CLI."""
