/**
 * The app behind the large-body scenario: test/helpers/large-body.ts's sink (reads and hashes
 * request bodies, answers {bytes, sha256}; streams generated bodies on GET /download).
 * Prints {"port":N} once listening on 127.0.0.1.
 */
import { sinkServer } from '../../test/helpers/large-body.js'
import { exitWithParent } from '../lib/children.js'

const server = sinkServer()
server.listen(0, '127.0.0.1', () => {
  const address = server.address()
  process.stdout.write(`${JSON.stringify({ port: typeof address === 'object' && address !== null ? address.port : 0 })}\n`)
})
exitWithParent()
