/**
 * @module Real backends for end-to-end tests, all on 127.0.0.1 port 0: a node:http backend that
 * records every request it got (and the client port, so a test can tell connection reuse), and a
 * raw TCP backend whose bytes a test scripts exactly (interim responses, resets mid-body, malformed
 * status lines, silence). Each returns its address and a close() that ends every socket it opened.
 */
import http from 'node:http';
import net from 'node:net';
import { wrapSocket, type Address, type RawConnection, type RawRequest } from './raw-client.js';

export interface RecordedRequest {
  readonly method: string;
  readonly url: string;
  readonly httpVersion: string;
  /** Lower-cased names; repeated fields joined by node's rules (set-cookie stays an array). */
  readonly headers: http.IncomingHttpHeaders;
  /** [name, value, name, value, ...] as received. */
  readonly rawHeaders: string[];
  /** The client port of the backend connection: equal ports mean the same TCP connection. */
  readonly remotePort: number;
  /** Filled once the body was read (empty until then, and for `readBody: false`). */
  body: Buffer;
  trailers: NodeJS.Dict<string>;
}

export type HttpHandler = (req: http.IncomingMessage, res: http.ServerResponse, rec: RecordedRequest) => void | Promise<void>;

export interface HttpBackendOptions {
  /**
   * true (default): the body is read into `rec.body` before the handler runs. false: the handler
   * gets the request unread (streaming or stalling backends).
   */
  readBody?: boolean;
  /**
   * Handles `Expect: 100-continue` requests itself (node's 'checkContinue'): it decides when to
   * call `res.writeContinue()`. Without it node answers 100 at once.
   */
  checkContinue?: HttpHandler;
  /** node's keepAliveTimeout (default 5 s). */
  keepAliveTimeoutMs?: number;
  /** Listen on this port instead of 0 (to bring a "refused" backend back). */
  port?: number;
}

export interface HttpBackend {
  readonly address: Address;
  /** "127.0.0.1:port" */
  readonly hostPort: string;
  readonly requests: RecordedRequest[];
  /** TCP connections accepted so far (health probes included: a tcp probe connects and closes). */
  readonly connections: number;
  /** Distinct TCP connections that carried at least one request (probes that only connect excluded). */
  readonly requestConnections: number;
  readonly server: http.Server;
  close(): Promise<void>;
}

function listening(server: net.Server, port = 0): Promise<Address> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => {
      server.removeListener('error', reject);
      const a = server.address() as net.AddressInfo;
      resolve({ host: '127.0.0.1', port: a.port });
    });
  });
}

function readAll(req: http.IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const parts: Buffer[] = [];
    req.on('data', (c: Buffer) => parts.push(c));
    req.on('end', () => resolve(Buffer.concat(parts)));
    req.on('error', reject);
    req.on('aborted', () => reject(new Error('request aborted')));
  });
}

/** A node:http backend. The handler answers; every request is recorded in `requests`. */
export async function startHttpBackend(handler: HttpHandler, opts: HttpBackendOptions = {}): Promise<HttpBackend> {
  const server = http.createServer();
  if (opts.keepAliveTimeoutMs !== undefined) server.keepAliveTimeout = opts.keepAliveTimeoutMs;
  const requests: RecordedRequest[] = [];
  const requestSockets = new WeakSet<net.Socket>();
  let requestConnections = 0;
  const sockets = new Set<net.Socket>();
  let connections = 0;
  server.on('connection', (s: net.Socket) => {
    connections++;
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  const record = (req: http.IncomingMessage): RecordedRequest => {
    if (!requestSockets.has(req.socket)) {
      requestSockets.add(req.socket);
      requestConnections++;
    }
    const rec: RecordedRequest = {
      method: req.method ?? '',
      url: req.url ?? '',
      httpVersion: req.httpVersion,
      headers: req.headers,
      rawHeaders: req.rawHeaders,
      remotePort: req.socket.remotePort ?? -1,
      body: Buffer.alloc(0),
      trailers: {},
    };
    requests.push(rec);
    return rec;
  };
  const run = async (h: HttpHandler, req: http.IncomingMessage, res: http.ServerResponse, rec: RecordedRequest, read: boolean) => {
    try {
      if (read) {
        rec.body = await readAll(req);
        rec.trailers = req.trailers;
      }
      await h(req, res, rec);
    } catch (err) {
      if (!res.headersSent) {
        res.statusCode = 500;
        res.end(String(err));
      } else {
        res.destroy();
      }
    }
  };
  server.on('request', (req: http.IncomingMessage, res: http.ServerResponse) => {
    void run(handler, req, res, record(req), opts.readBody !== false);
  });
  if (opts.checkContinue) {
    const cc = opts.checkContinue;
    server.on('checkContinue', (req: http.IncomingMessage, res: http.ServerResponse) => {
      void run(cc, req, res, record(req), false);
    });
  }
  const address = await listening(server, opts.port);
  return {
    address,
    hostPort: `${address.host}:${address.port}`,
    requests,
    get connections() {
      return connections;
    },
    get requestConnections() {
      return requestConnections;
    },
    server,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** A raw backend keeps at most this much of each connection's bytes (uploads of 200 MB stay uncopied). */
export const RECORD_LIMIT_BYTES = 1024 * 1024;

export interface RawBackend {
  readonly address: Address;
  readonly hostPort: string;
  /** TCP connections accepted so far (health probes included: a tcp probe connects and closes). */
  readonly connections: number;
  /** Connections that sent at least one byte (excludes tcp probes that only connect). */
  readonly dataConnections: number;
  /** Bytes received over all connections (counted even when the script does not read them). */
  readonly bytesReceived: number;
  /** What was received, per connection, in order (the first RECORD_LIMIT_BYTES of each). */
  readonly received: Buffer[][];
  readonly sockets: ReadonlySet<net.Socket>;
  readonly server: net.Server;
  close(): Promise<void>;
}

/**
 * A TCP backend scripted byte by byte: `onConnection` gets each accepted socket and its index
 * (0 for the first connection accepted; note that a dispatcher's tcp health probe is a connection
 * too, so scripts that care about order count the requests they read themselves). Wrap the socket
 * with `wrapSocket` from raw-client.ts to read requests.
 */
export async function startRawBackend(
  onConnection: (socket: net.Socket, index: number) => void | Promise<void>,
  opts: { port?: number } = {},
): Promise<RawBackend> {
  const sockets = new Set<net.Socket>();
  const received: Buffer[][] = [];
  let connections = 0;
  let dataConnections = 0;
  let bytesReceived = 0;
  const server = net.createServer((socket) => {
    const index = connections++;
    sockets.add(socket);
    const mine: Buffer[] = [];
    received.push(mine);
    let kept = 0;
    let sentData = false;
    socket.on('data', (c: Buffer) => {
      if (!sentData) {
        sentData = true;
        dataConnections++;
      }
      bytesReceived += c.length;
      if (kept < RECORD_LIMIT_BYTES) {
        mine.push(c);
        kept += c.length;
      }
    });
    socket.on('error', () => {});
    socket.on('close', () => sockets.delete(socket));
    Promise.resolve()
      .then(() => onConnection(socket, index))
      .catch(() => socket.destroy());
  });
  const address = await listening(server, opts.port);
  return {
    address,
    hostPort: `${address.host}:${address.port}`,
    get connections() {
      return connections;
    },
    get dataConnections() {
      return dataConnections;
    },
    get bytesReceived() {
      return bytesReceived;
    },
    received,
    sockets,
    server,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

/** A port on 127.0.0.1 that nothing listens on right now (a "refused" backend). */
export async function freePort(): Promise<number> {
  const server = net.createServer();
  const { port } = await listening(server, 0);
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

/** Everything a raw backend received on connection `index`, as latin1 text. */
export function receivedText(b: RawBackend, index?: number): string {
  const conns = index === undefined ? b.received : [b.received[index] ?? []];
  return conns.map((parts) => Buffer.concat(parts).toString('latin1')).join('');
}

/**
 * A keep-alive request loop for a raw backend connection: reads each request (with its body) and
 * writes what `answer` returns; `answer` may instead act on the connection itself and return null.
 * Ends when the peer closes between requests.
 */
export async function serveRequests(
  socket: net.Socket,
  answer: (req: RawRequest, conn: RawConnection) => string | Buffer | null | Promise<string | Buffer | null>,
  opts: { idleTimeoutMs?: number } = {},
): Promise<void> {
  const conn = wrapSocket(socket, 'backend');
  for (;;) {
    const req = await conn.readRequest({ timeoutMs: opts.idleTimeoutMs ?? 60_000 });
    if (!req) return;
    const out = await answer(req, conn);
    if (out !== null) conn.write(out);
  }
}

/** "HTTP/1.1 200 OK" response text with a Content-Length body. */
export function okResponse(body: string, extraHeaders = ''): string {
  return `HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n${extraHeaders}Content-Length: ${Buffer.byteLength(body, 'latin1')}\r\n\r\n${body}`;
}
