"""Degradation: levels, policy engine, feature flags, fallbacks and circuit breakers."""
