"""The package version, in one place: the façade re-exports it and cards, votes and Hub commits record it."""

__version__ = "0.1.0"
