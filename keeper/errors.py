"""One exception base for the keeper and the simulator, with named subclasses."""


class MarginError(Exception):
    """Base of every error this project raises on purpose."""


class ParamsError(MarginError, ValueError):
    """Risk parameters that break a bound of the margin spec; the message names the field."""


class PriceDataError(MarginError, ValueError):
    """A price history that cannot be used: the message names the row (1 = a CSV file's header line) and
    the field, which are also kept as attributes (`None` where the error concerns no single row or field)."""

    def __init__(self, message: str, *, row: int | None = None, field: str | None = None) -> None:
        where = ", ".join(
            part
            for part in (f"row {row}" if row is not None else "", f"field {field!r}" if field else "")
            if part
        )
        super().__init__(f"{where}: {message}" if where else message)
        self.row = row
        self.field = field


class RiskFileError(ParamsError):
    """A risk-parameter file that does not validate; the message names every offending field."""


class ConfigError(MarginError, ValueError):
    """Keeper configuration that does not validate; the message names every offending field."""


class RpcError(MarginError):
    """A JSON-RPC failure. `code` and `data` are the node's error object where it answered with one."""

    def __init__(self, message: str, *, code: int | None = None, data: object = None) -> None:
        super().__init__(message)
        self.code = code
        self.data = data


class RpcUnavailable(RpcError):
    """No endpoint answered (connection refused, timeout, HTTP error) after trying every one."""


class ExecutionReverted(RpcError):
    """An eth_call / eth_estimateGas that reverted; `data` holds the revert bytes (hex) when given."""


class SignerError(MarginError):
    """The signing key could not be loaded (missing keystore, wrong password, malformed key)."""
