"""Shared plumbing of the ragbus services: settings, bus, metrics, logging, HTTP, stores."""
