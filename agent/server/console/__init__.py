"""The operator console: `/ui/`, one page over the agent's own API (health, degradation, flags,
limits and queues, backups, active alerts), served by the agent itself with no external asset, and
its login, which lets an operator make changes through that API with a session instead of the
token (see `routes.Console`)."""
