# The client helpers' test app, a bare WSGI app with session_sidecar.py's middleware, served by
# the standard library's wsgiref (test/e2e/client-helpers.test.ts).
# Every route answers with what it saw: { session, id, unavailable }.
import json, os
from urllib.parse import parse_qs
from wsgiref.simple_server import WSGIRequestHandler, make_server
from session_sidecar import SessionSidecarMiddleware


def login(s, q):
    s["user"] = q["user"][0]
    s["prefs"] = {"theme": "light", "lang": "en"}
    s.regenerate()


def reset(s, q):
    s.clear()
    s.regenerate()


ROUTES = {
    "/show": lambda s, q: None,
    "/visit": lambda s, q: s.update(visits=s.get("visits", 0) + 1),
    "/login": login,
    "/theme": lambda s, q: s["prefs"].update(theme=q["theme"][0]),
    "/forget": lambda s, q: s.pop("visits"),
    "/note": lambda s, q: s.update(note=None),
    "/reset": reset,
    "/logout": lambda s, q: s.destroy(),
}


def app(environ, start_response):
    s = environ["session_sidecar.session"]
    body = json.dumps({"session": dict(s), "id": s.id, "unavailable": s.unavailable}).encode()
    ROUTES[environ["PATH_INFO"]](s, parse_qs(environ.get("QUERY_STRING", "")))
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]


class QuietHandler(WSGIRequestHandler):
    def log_request(self, *args):
        pass


make_server("127.0.0.1", int(os.environ["PORT"]), SessionSidecarMiddleware(app), handler_class=QuietHandler).serve_forever()
