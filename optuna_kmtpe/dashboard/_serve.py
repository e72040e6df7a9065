"""optuna-dashboard with the kmtpe plots first on the study page.

optuna-dashboard draws a study's user-defined plots (``save_plotly_graph_object``) after its
own Pareto front, history, importance and timeline plots, about 1,700 px down, and no study
data changes that order. :func:`kmtpe_wsgi` serves the unmodified dashboard with CSS rules
added to its page: the grid that holds the kmtpe plots comes first, and in it the kmtpe plots
come first, in a fixed order (flexbox ``order``; Chromium 105+, Firefox 121+, Safari 15.4+).
Where a browser or a later dashboard ignores the rules, the page is the dashboard's own. The
dashboard's API, data and scripts are untouched.
"""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Iterable
from typing import Any

import optuna
import optuna_dashboard

from optuna_kmtpe.dashboard._keys import GRAPH_IDS


_PLOT = '[id^="user-defined-plot:kmtpe-"]'
KMTPE_FIRST_CSS = (
    f".MuiGrid-container:has({_PLOT}) {{ order: -1; }}\n"
    f".MuiGrid-container > :has({_PLOT}) {{ order: -1; }}\n"
    + "".join(
        f'.MuiGrid-container > :has([id="user-defined-plot:{graph_id}"]) '
        f"{{ order: {rank - len(GRAPH_IDS) - 1}; }}\n"
        for rank, graph_id in enumerate(GRAPH_IDS)
    )
)
"""Moves the grid holding the kmtpe plots, and the kmtpe plots within it in the order of
:data:`~optuna_kmtpe.dashboard.GRAPH_IDS`, to the top."""

_STYLE = f'<style id="kmtpe-first">\n{KMTPE_FIRST_CSS}</style>\n'.encode()

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def _with_kmtpe_first(app: WSGIApp) -> WSGIApp:
    """Wrap ``app`` so its HTML pages carry :data:`KMTPE_FIRST_CSS`."""

    def wrapped(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if not environ.get("PATH_INFO", "").startswith("/dashboard"):
            return app(environ, start_response)
        # A cached page (304) would be the one without the rule: always send the page.
        environ.pop("HTTP_IF_MODIFIED_SINCE", None)
        environ.pop("HTTP_IF_NONE_MATCH", None)
        captured: dict[str, Any] = {}

        def capture(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            captured.update(status=status, headers=headers, exc_info=exc_info)
            return lambda data: None  # the legacy write() callable; bottle never uses it

        chunks = app(environ, capture)
        try:
            body = b"".join(chunks)
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:
                close()
        headers = captured["headers"]
        content_type = dict((k.lower(), v) for k, v in headers).get("content-type", "")
        if captured["status"].startswith("200") and content_type.startswith("text/html"):
            body = body.replace(b"</head>", _STYLE + b"</head>", 1)
            drop = ("content-length", "last-modified", "etag")
            headers = [(k, v) for k, v in headers if k.lower() not in drop]
            headers.append(("Content-Length", str(len(body))))
        start_response(captured["status"], headers, captured["exc_info"])
        return [body]

    return wrapped


def kmtpe_wsgi(storage: str | optuna.storages.BaseStorage) -> WSGIApp:
    """optuna-dashboard's WSGI application over ``storage``, kmtpe plots first.

    Example:
        >>> import optuna
        >>> app = kmtpe_wsgi(optuna.storages.InMemoryStorage())
        >>> callable(app)
        True
    """
    return _with_kmtpe_first(optuna_dashboard.wsgi(storage))


def run_server(storage: str | optuna.storages.BaseStorage, *, host: str, port: int) -> None:
    """Serve :func:`kmtpe_wsgi` on ``host:port`` until interrupted, with the server
    optuna-dashboard's own ``run_server`` uses (bottle's)."""
    import bottle

    bottle.run(kmtpe_wsgi(storage), host=host, port=port)
