"""session-sidecar helper for Python web apps: Flask, or any WSGI app. One file, no dependencies:
copy it next to your app (it ships in the npm package as clients/python/session_sidecar.py).

The sidecar hands the app the session in request headers (X-Session-Id, X-Session: base64url
JSON, X-Session-Unavailable) and takes changes back from response headers. This module gives
the app a plain dict and, when the response starts, sends the smallest X-Session-Merge for what
the app changed in it (RFC 7396: changed and added members, null for removed ones, nested
objects member by member, lists whole), nothing when nothing changed.

Flask: ``flask.session`` keeps working as usual::

    from session_sidecar import SidecarSessionInterface
    app.session_interface = SidecarSessionInterface()

    session["user"] = name; session.regenerate()   # a login: new key, against session fixation
    session.destroy()                                 # a logout: the session ends everywhere
    session.id, session.unavailable                   # X-Session-Id, X-Session-Unavailable: 1

Any WSGI app: ``app = SessionSidecarMiddleware(app)``, then the session is
``environ["session_sidecar.session"]``; changes made after the app calls start_response are
not sent (the headers are gone by then).

Values must be what JSON holds (dict, list, str, int, float, bool, None); anything else raises
TypeError when the response starts. Set ``header_prefix`` to the sidecar's
``session.headerPrefix`` if it is not the default ``X-Session``.
"""

import base64
import json

__all__ = ["Session", "SessionSidecarMiddleware", "SidecarSessionInterface", "merge_diff", "session_headers"]

ENVIRON_KEY = "session_sidecar.session"


def _b64(value):
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return base64.urlsafe_b64encode(text.encode("utf-8")).rstrip(b"=").decode("ascii")


def _decode(raw):
    """X-Session's value as a dict; {} when there is none."""
    if not raw:
        return {}
    value = json.loads(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)).decode("utf-8"))
    if not isinstance(value, dict):
        raise ValueError("X-Session is not a JSON object")
    return value


def _same(a, b):
    """JSON equality: dicts by members in any order, lists by position, True is not 1."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return type(a) is type(b) and a == b


def _holds_null(value):
    """True when a merge patch carrying this value would lose a None (read as "delete")."""
    return value is None or (isinstance(value, dict) and any(_holds_null(v) for v in value.values()))


def merge_diff(old, new):
    """The smallest RFC 7396 merge patch turning dict ``old`` into dict ``new``: {} when they
    are equal; None when no patch can say it (a member set to None, or None inside an added
    dict: a patch reads null as "delete")."""
    patch = {}
    for name in old:
        if name not in new:
            patch[name] = None
    for name, value in new.items():
        if name in old and _same(old[name], value):
            continue
        if name in old and isinstance(old[name], dict) and isinstance(value, dict):
            inner = merge_diff(old[name], value)
            if inner is None:
                return None
            patch[name] = inner
        elif _holds_null(value):
            return None
        else:
            patch[name] = value
    return patch


def session_headers(original, current, destroy=False, regenerate=False, unavailable=False, prefix="X-Session"):
    """The response headers that tell the sidecar what became of a session, as (name, value)
    pairs: Destroy alone when it ended; Set of the whole data with Regenerate for a login while
    the session could not be loaded (the only change the sidecar accepts then); otherwise the
    minimal Merge (Set of the whole data when a patch cannot say it), and Regenerate when asked."""
    if destroy:
        return [(prefix + "-Destroy", "1")]
    data = json.loads(json.dumps(dict(current), allow_nan=False))  # what JSON keeps, as JSON types
    headers = []
    patch = None if regenerate and unavailable else merge_diff(original, data)
    if patch is None:
        headers.append((prefix + "-Set", _b64(data)))
    elif patch:
        headers.append((prefix + "-Merge", _b64(patch)))
    if regenerate:
        headers.append((prefix + "-Regenerate", "1"))
    return headers


class Session(dict):
    """The session's data as a dict, with the session key (``id``, None when there is no session
    yet), ``unavailable`` (the client has a session memcached could not produce in time: do not
    treat the user as logged out; only a login, with ``regenerate()``, may change it then), and
    ``destroy()`` / ``regenerate()``. A login keeps the data (unlike Flask-Session's)."""

    def __init__(self, raw=None, session_id=None, unavailable=False):
        super().__init__(_decode(raw))
        self._original = _decode(raw)  # a second copy: the app changes self, this one is compared
        self.id = session_id or None
        self.unavailable = unavailable
        self.destroyed = False
        self.regenerated = False

    def destroy(self):
        """End the session everywhere (X-Session-Destroy: 1): the sidecar clears the cookie."""
        self.destroyed = True

    def regenerate(self):
        """A new session key, same data (X-Session-Regenerate: 1): call it after a login."""
        self.regenerated = True

    def response_headers(self, prefix="X-Session"):
        """The headers to add to the response, as (name, value) pairs."""
        return session_headers(self._original, self, self.destroyed, self.regenerated, self.unavailable, prefix)

    @classmethod
    def from_headers(cls, get, prefix="X-Session"):
        """The session from request headers; ``get(name)`` returns a header's value or None."""
        return cls(get(prefix), get(prefix + "-Id"), (get(prefix + "-Unavailable") or "").strip() == "1")


class SessionSidecarMiddleware:
    """WSGI middleware: ``environ["session_sidecar.session"]`` is the request's Session, and its
    headers are added when the app calls start_response."""

    def __init__(self, app, header_prefix="X-Session"):
        self.app = app
        self.prefix = header_prefix

    def __call__(self, environ, start_response):
        def get(name):
            return environ.get("HTTP_" + name.upper().replace("-", "_"))

        session = Session.from_headers(get, self.prefix)
        environ[ENVIRON_KEY] = session

        def start(status, headers, exc_info=None):
            return start_response(status, list(headers) + session.response_headers(self.prefix), exc_info)

        return self.app(environ, start)


try:
    from flask.sessions import SessionInterface as _SessionInterface, SessionMixin as _SessionMixin
except ImportError:  # no Flask: the WSGI middleware still works
    _SessionInterface, _SessionMixin = object, object


class FlaskSession(Session, _SessionMixin):
    """A Session that is also Flask's SessionMixin (``permanent``, ``modified``, ...)."""


class SidecarSessionInterface(_SessionInterface):
    """Flask's session interface backed by the sidecar: ``app.session_interface = SidecarSessionInterface()``."""

    def __init__(self, header_prefix="X-Session"):
        self.prefix = header_prefix

    def open_session(self, app, request):
        return FlaskSession.from_headers(request.headers.get, self.prefix)

    def save_session(self, app, session, response):
        for name, value in session.response_headers(self.prefix):
            response.headers[name] = value
