"""What the stream openers of every backend share.

Each backend has one opener, ``open_stream(host, port, *, secure,
ssl_context, timeout)``, used by its control-connection transport and by
channel ends alike: TCP, then TLS when ``secure``, all within ``timeout``.
TLS always runs over memory buffers (``ssl.SSLObject``: anyio's and trio's TLS
streams, and ``BlockingStream`` for threads), never ``SSLContext.wrap_socket``.
An opener raises ``OSError`` and nothing else for a failure (``TimeoutError``
for the timeout, ``ssl.SSLError`` for a refused certificate), so callers
catch one family whatever the backend.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional

if TYPE_CHECKING:
    import ssl

    #: The TLS settings a stream takes (``ssl_context=``): code above the
    #: transports names TLS through this alias and never imports ``ssl`` itself.
    TLSContext = ssl.SSLContext

# (and ``TLSContext``, resolved on first use by ``__getattr__``)
__all__ = ["READ_SIZE", "client_tls", "timed_out", "tls_broken"]

#: Bytes asked for per read.
READ_SIZE = 65536


def __getattr__(name: str) -> Any:
    # ``ssl`` is imported on first use: a plain ws:// worker never needs it.
    if name == "TLSContext":
        import ssl

        return ssl.SSLContext
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def client_tls(secure: bool, ssl_context: Optional[ssl.SSLContext]) -> Optional[ssl.SSLContext]:
    """The TLS settings of a stream: ``None`` for plain TCP; else ``ssl_context``,
    or by default a context that verifies the engine's certificate."""
    if not secure:
        return None
    if ssl_context is not None:
        return ssl_context
    import ssl

    return ssl.create_default_context()


def timed_out(host: str, port: int) -> TimeoutError:
    return TimeoutError(f"timed out connecting to {host}:{port}")


def tls_broken(exc: BaseException) -> OSError:
    """What to raise for a TLS handshake the libraries report as a "broken
    resource": the ``ssl.SSLError`` (or other ``OSError``) behind it, else a
    ``ConnectionError`` (the peer hung up)."""
    cause = exc.__cause__ or exc.__context__
    if isinstance(cause, OSError):
        return cause
    return ConnectionError("connection lost during the TLS handshake")
