"""The one base class of every error a user of the platform is meant to read."""


class PlatformError(Exception):
    """A user-facing error: its message names the file or table and what to do next."""


class CatalogError(PlatformError):
    """The ingestion catalog file is malformed."""


class WarehouseError(PlatformError):
    """The warehouse cannot be opened or written."""
