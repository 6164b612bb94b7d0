"""Private, real service instances (PostgreSQL, Redis, Prometheus, ...) for Vigil's tests."""
