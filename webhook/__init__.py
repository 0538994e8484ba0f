"""The HTTP side of Waypost: Meta's webhook, health checks. Defers work to `worker`."""
