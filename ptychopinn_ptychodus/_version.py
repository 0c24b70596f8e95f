"""The package version, defined once (read by hatchling, the CLI and product attributes)."""

__version__ = '0.2.0'
