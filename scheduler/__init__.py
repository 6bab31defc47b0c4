"""The core of commonpool: registry, state machines, placement policies, the loop."""
