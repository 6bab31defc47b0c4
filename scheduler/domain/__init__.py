"""Pure domain vocabulary (stdlib only): states, transitions, errors, ids."""
