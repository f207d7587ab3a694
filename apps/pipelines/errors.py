"""The one error of reading pipeline and pool files."""


class DefinitionError(ValueError):
    """A file that cannot be loaded; the message says why."""
