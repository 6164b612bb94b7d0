"""The agent process: HTTP endpoints, lifecycle and signal handling."""
