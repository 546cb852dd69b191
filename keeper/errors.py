"""One exception base for the keeper and the simulator, with named subclasses."""


class MarginError(Exception):
    """Base of every error this project raises on purpose."""


class ParamsError(MarginError, ValueError):
    """Risk parameters that break a bound of the margin spec; the message names the field."""
