"""Code that runs on donated machines: the agent, the Ray runner, telemetry, examples."""
