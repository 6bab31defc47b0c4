"""The typed HTTP client that the CLI, the agent and tests share."""
