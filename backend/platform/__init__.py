"""The platform every domain stands on: database, Redis, errors, logging, outbox, health."""
