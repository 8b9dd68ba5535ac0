// The client helpers' test app, express with session-sidecar/express (test/e2e/client-helpers.test.ts).
// Every route answers with what it saw: { session, id, unavailable }.
import express from 'express'
import { sessionSidecar } from 'session-sidecar/express'

const app = express()
app.use(sessionSidecar())
app.use((req, res, next) => {
  res.locals.seen = JSON.stringify({ session: req.session, id: req.sessionId ?? null, unavailable: req.sessionUnavailable })
  next()
})
const routes = {
  '/show': () => {},
  '/visit': (s) => { s.visits = (s.visits ?? 0) + 1 },
  '/login': (s, req) => { s.user = req.query.user; s.prefs = { theme: 'light', lang: 'en' }; s.regenerate() },
  '/theme': (s, req) => { s.prefs.theme = req.query.theme },
  '/forget': (s) => { delete s.visits },
  '/note': (s) => { s.note = null },
  '/reset': (s) => { for (const k of Object.keys(s)) delete s[k]; s.regenerate() },
  '/logout': (s) => { s.destroy() }
}
for (const [path, change] of Object.entries(routes)) {
  app.get(path, (req, res) => {
    change(req.session, req)
    res.type('json').send(res.locals.seen)
  })
}
app.listen(Number(process.env.PORT), '127.0.0.1')
