/**
 * @module The backend server of the cluster e2e tests, run as its own process so that a test can
 * SIGKILL or SIGSTOP it like a real server:
 *
 *   node dist/test/helpers/cluster-backend.js --port P [--id b0] [--backlog N] [--host 127.0.0.1]
 *
 * Every request gets 200 with its id as the body and in `x-backend` (so a test sees which backend a
 * request reached through the dispatcher) and `Connection: close`: no idle keep-alive connection to
 * it stays ESTABLISHED, so a draining agent (drain.port) sees the node idle as soon as requests end.
 * `GET /stats` answers `{"backlog": N}`, the agent's load.statsUrl. Prints `listening <port>` once it
 * accepts connections; exits on SIGTERM or SIGINT.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { parseArgs } from 'node:util';

// `node --test dist/test` runs every .js file under a test/ directory, this one included: without
// the --port every real use passes, it is that run, and there is nothing to do.
if (!process.argv.includes('--port')) process.exit(0);

const { values } = parseArgs({
  options: {
    port: { type: 'string' },
    host: { type: 'string', default: '127.0.0.1' },
    id: { type: 'string', default: 'backend' },
    backlog: { type: 'string', default: '0' },
  },
  strict: true,
});
const id = values.id!;
const backlog = Number(values.backlog);

const server = http.createServer((req, res) => {
  req.resume();
  const body = req.url === '/stats' ? JSON.stringify({ backlog }) : id;
  res.writeHead(200, {
    'content-type': req.url === '/stats' ? 'application/json' : 'text/plain',
    'content-length': Buffer.byteLength(body),
    'x-backend': id,
    connection: 'close',
  });
  res.end(body);
});
server.listen(Number(values.port), values.host, () => {
  process.stdout.write(`listening ${(server.address() as AddressInfo).port}\n`);
});
for (const signal of ['SIGTERM', 'SIGINT'] as const) process.once(signal, () => process.exit(0));
