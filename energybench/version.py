"""The package version (stored in every run)."""

__version__ = "0.1.0"
