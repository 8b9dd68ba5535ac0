# The client helpers' test app, Flask with session_sidecar.py (test/e2e/client-helpers.test.ts).
# Every route answers with what it saw: { session, id, unavailable }.
import json, os
from flask import Flask, g, request, session
from session_sidecar import SidecarSessionInterface

app = Flask(__name__)
app.session_interface = SidecarSessionInterface()

@app.before_request
def seen():
    g.seen = json.dumps({"session": dict(session), "id": session.id, "unavailable": session.unavailable})

def login(s):
    s["user"] = request.args["user"]
    s["prefs"] = {"theme": "light", "lang": "en"}
    s.regenerate()

def reset(s):
    s.clear()
    s.regenerate()

ROUTES = {
    "/show": lambda s: None,
    "/visit": lambda s: s.update(visits=s.get("visits", 0) + 1),
    "/login": login,
    "/theme": lambda s: s["prefs"].update(theme=request.args["theme"]),
    "/forget": lambda s: s.pop("visits"),
    "/note": lambda s: s.update(note=None),
    "/reset": reset,
    "/logout": lambda s: s.destroy(),
}

@app.get("/<name>")
def route(name):
    ROUTES["/" + name](session)
    return g.seen, {"Content-Type": "application/json"}

app.run(port=int(os.environ["PORT"]))
