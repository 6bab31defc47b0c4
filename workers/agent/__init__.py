"""The agent a donor runs: enrolls the machine, joins the pool's Ray cluster, heartbeats, drains."""
