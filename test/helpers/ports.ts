import { createServer, type Server } from 'node:net'

/** A TCP port free on 127.0.0.1 right now (the kernel picks it). */
export async function freePort (): Promise<number> {
  return await new Promise((resolve, reject) => {
    const server = createServer()
    server.unref()
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => {
      const address = server.address()
      const port = typeof address === 'object' && address !== null ? address.port : 0
      server.close(() => resolve(port))
    })
  })
}

/** Polls `check` until it returns true or `ms` pass. */
export async function until (check: () => boolean | Promise<boolean>, ms = 5000, what = 'condition'): Promise<void> {
  const deadline = Date.now() + ms
  for (let wait = 5; ; wait = Math.min(wait * 2, 100)) {
    if (await check()) return
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, wait))
  }
}

/** Listens on 127.0.0.1 on a port the kernel picks, and resolves with that port. */
export async function listenOnLoopback (server: Server): Promise<number> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const address = server.address()
  return typeof address === 'object' && address !== null ? address.port : 0
}

/** Closes a server and every connection it still holds (HTTP servers: keep-alive ones too). */
export async function closeServer (server: Server & { closeAllConnections?: () => void }): Promise<void> {
  server.closeAllConnections?.()
  await new Promise((resolve) => server.close(resolve))
}
