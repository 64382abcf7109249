/**
 * @module Loading a configuration: YAML text → schema validation → cross-field checks → a frozen
 * value. Validation happens once, here, at the boundary (fastify initial-config-validation), and
 * reports every problem at once, each as `<path>: <expected>, received <found>` with the path as the
 * user wrote it (`services[1].backends[0].address`). The machinery is schema-generic (`parseYaml`):
 * the dispatcher's file (`parseConfig`) and the agent's (`parseAgentConfig`) share it, so both speak
 * the same error language.
 */
import { readFileSync } from 'node:fs';
import { LineCounter, parseDocument, stringify } from 'yaml';
import { z } from 'zod';
import '../balance/index.js';
import { balancerNames } from '../balance/balancer.js';
import { parseHostPort, type HostPort } from '../core/address.js';
import { ConfigInvalidError } from '../core/errors.js';
import { agentConfigSchema, AGENT_YAML_OPTIONS, type AgentConfig } from './agent-schema.js';
import { configSchema, type Config } from './schema.js';
import { replicationIssues, replicationSchema } from '../replication/replication-schema.js';

type Path = readonly (string | number)[];

/** Hints for keys users bring from elsewhere, by object kind: `{ service: { servers: 'backends' } }`. */
export type RenamedKeys = Readonly<Record<string, Readonly<Record<string, string | readonly string[]>>>>;

/** What makes one kind of configuration file different from another, beyond its schema. */
export interface YamlOptions {
  /**
   * Cross-field checks. They read the raw document (not the parsed result) so that they are reported
   * together with schema issues; each check must only look at values of the right type.
   */
  readonly checks?: (raw: unknown) => string[];
  /** Renamed or foreign keys, by object kind (see `kindOf`). */
  readonly renamed?: RenamedKeys;
  /** The kind of object at `path`, a key of `renamed`. Default: its last key, or "root". */
  readonly kindOf?: (path: Path) => string;
  /** What an empty file should have held, after "empty file, expected ". */
  readonly expected?: string;
}

/**
 * Parses and validates one YAML document against `schema`. `source` names it in issues that have no
 * config path (YAML syntax errors, an empty file). Throws ConfigInvalidError listing every issue;
 * returns the parsed value (defaults filled in) deeply frozen.
 */
export function parseYaml<S extends z.ZodTypeAny>(schema: S, text: string, source: string, options: YamlOptions = {}): z.output<S> {
  const lineCounter = new LineCounter();
  const doc = parseDocument(text, { lineCounter, prettyErrors: false });
  if (doc.errors.length > 0) {
    throw new ConfigInvalidError(
      doc.errors.map((e) => {
        const { line, col } = lineCounter.linePos(e.pos[0]);
        const message = e.code === 'MULTIPLE_DOCS' ? 'expected one YAML document, found several' : e.message.split('\n')[0];
        return `${source}:${line}:${col}: ${message}`;
      }),
    );
  }
  let raw: unknown;
  try {
    raw = doc.toJS();
  } catch (err) {
    throw new ConfigInvalidError([`${source}: ${(err as Error).message}`], { cause: err });
  }
  if (raw === null || raw === undefined) {
    throw new ConfigInvalidError([`${source}: empty file, expected ${options.expected ?? 'a mapping'}`]);
  }

  const result = schema.safeParse(raw);
  const issues = [
    ...(result.success ? [] : schemaIssues(schema, options, result.error.issues, raw, source)),
    ...(options.checks?.(raw) ?? []),
  ];
  if (!result.success || issues.length > 0) throw new ConfigInvalidError(issues);
  return deepFreeze(result.data as z.output<S>);
}

/** Reads a file and hands its text to `parse`; an unreadable file is reported like any other issue. */
export function readConfigFile<T>(path: string, parse: (text: string, source: string) => T): T {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? 'EIO';
    throw new ConfigInvalidError([`${path}: cannot read file (${code})`], { cause: err });
  }
  return parse(text, path);
}

/**
 * Parses and validates one dispatcher configuration document. Throws ConfigInvalidError listing
 * every issue.
 */
export function parseConfig(text: string, source = '<config>'): Config {
  return parseYaml(configSchema, text, source, DISPATCHER_OPTIONS);
}

/** Reads and parses a dispatcher configuration file. */
export function loadConfigFile(path: string): Config {
  return readConfigFile(path, parseConfig);
}

/** Parses and validates one agent configuration document (agent-schema.ts). */
export function parseAgentConfig(text: string, source = '<config>'): AgentConfig {
  return parseYaml(agentConfigSchema, text, source, AGENT_YAML_OPTIONS);
}

/** Reads and parses an agent configuration file. */
export function loadAgentConfigFile(path: string): AgentConfig {
  return readConfigFile(path, parseAgentConfig);
}

/**
 * The configuration with its `services` taken from the cluster's shared configuration (etcd's
 * `<prefix>config`, issue 20): a YAML mapping whose only key is `services`. The result is validated
 * as a whole; issues of the shared part name `source`. Everything else stays the local file's.
 */
export function withSharedServices(config: Config, sharedText: string, source: string): Config {
  const shared = parseDocument(sharedText).toJS() as unknown;
  const keys = shared !== null && typeof shared === 'object' && !Array.isArray(shared) ? Object.keys(shared) : null;
  if (keys === null || keys.length !== 1 || keys[0] !== 'services') {
    throw new ConfigInvalidError([`${source}: expected a mapping with one key, "services", received ${keys === null ? show(shared) : `keys ${keys.join(', ') || '(none)'}`}`]);
  }
  const merged = { ...(JSON.parse(JSON.stringify(config)) as Record<string, unknown>), services: (shared as { services: unknown }).services };
  return parseConfig(stringify(merged), source);
}

/** The resolved configuration, every default filled in, as YAML (what `check-config` prints). */
export function formatConfig(config: Config): string {
  return `# holdfast configuration, resolved (defaults filled in)\n${stringify(config)}`;
}

// ---------------------------------------------------------------------------------------------
// Schema issues → messages

function schemaIssues(
  schema: z.ZodTypeAny,
  options: YamlOptions,
  zodIssues: readonly z.ZodIssue[],
  raw: unknown,
  source: string,
): string[] {
  const unknownKeys = zodIssues.flatMap((issue) =>
    issue.code === 'unrecognized_keys'
      ? issue.keys.map((key) => ({ at: issue.path, key, ...unknownKey(schema, options, issue.path, key) }))
      : [],
  );
  // `servers:` instead of `backends:` already says what is wrong; "backends: required" would be noise.
  const hinted = new Set(unknownKeys.flatMap(({ at, target }) => (target ? [formatPath([...at, target], source)] : [])));
  const typed = zodIssues.flatMap((issue) => {
    if (issue.code === 'unrecognized_keys') return [];
    const path = formatPath(issue.path, source);
    const value = valueAt(raw, issue.path);
    return value === undefined && hinted.has(path) ? [] : [`${path}: ${describe(issue, value)}`];
  });
  return [...typed, ...unknownKeys.map(({ at, key, message }) => `${formatPath([...at, key], source)}: ${message}`)];
}

/** The expectation, from the schema's own message when it has one (they all start "expected "). */
function describe(issue: z.ZodIssue, value: unknown): string {
  const own = issue.message.startsWith('expected ') ? issue.message.slice('expected '.length) : null;
  const found = `received ${show(value)}`;
  switch (issue.code) {
    case 'invalid_type': {
      const expected = own ?? typeName(issue.expected);
      if (value === undefined) return `required, expected ${expected}`;
      const quoteHint =
        issue.expected === 'string' && (typeof value === 'number' || typeof value === 'boolean')
          ? ` (quote it: "${String(value)}")`
          : '';
      return `expected ${expected}, ${found}${quoteHint}`;
    }
    case 'invalid_enum_value': {
      return `expected one of ${issue.options.map((o) => JSON.stringify(o)).join(', ')}, ${found}`;
    }
    case 'invalid_literal':
      return `expected ${JSON.stringify(issue.expected)}, ${found}`;
    case 'too_small':
      if (issue.type === 'array') {
        return `expected at least ${plural(Number(issue.minimum), 'item')}, received ${plural(countOf(value), 'item')}`;
      }
      return `expected ${issue.inclusive ? 'at least' : 'more than'} ${String(issue.minimum)}, ${found}`;
    case 'too_big':
      if (issue.type === 'array') {
        return `expected at most ${plural(Number(issue.maximum), 'item')}, received ${plural(countOf(value), 'item')}`;
      }
      return `expected ${issue.inclusive ? 'at most' : 'less than'} ${String(issue.maximum)}, ${found}`;
    case 'invalid_string':
      if (own) return `expected ${own}, ${found}`;
      if (typeof issue.validation === 'object' && 'startsWith' in issue.validation) {
        return `expected a string starting with "${issue.validation.startsWith}", ${found}`;
      }
      return `expected a valid ${String(issue.validation)}, ${found}`;
    default:
      return `${own ? `expected ${own}` : issue.message}, ${found}`;
  }
}

function typeName(expected: string): string {
  const names: Record<string, string> = {
    string: 'a string',
    number: 'a number',
    integer: 'an integer',
    boolean: 'true or false',
    array: 'an array',
    object: 'a mapping',
  };
  // z.enum reports a non-string as invalid_type with expected = "'http' | 'tcp'".
  return names[expected] ?? `one of ${expected.split(' | ').map((o) => `"${o.replace(/^'|'$/g, '')}"`).join(', ')}`;
}

function show(value: unknown): string {
  if (value === undefined) return 'nothing';
  if (Array.isArray(value)) return `an array of ${plural(value.length, 'item')}`;
  if (typeof value === 'object' && value !== null) return 'a mapping';
  const text = JSON.stringify(value) ?? String(value);
  return text.length > 60 ? `${text.slice(0, 57)}..."` : text;
}

function plural(n: number, word: string): string {
  return `${n} ${word}${n === 1 ? '' : 's'}`;
}

function countOf(value: unknown): number {
  return Array.isArray(value) ? value.length : 0;
}

function formatPath(path: Path, source: string): string {
  if (path.length === 0) return source;
  return path.map((seg, i) => (typeof seg === 'number' ? `[${seg}]` : i === 0 ? seg : `.${seg}`)).join('');
}

function valueAt(raw: unknown, path: Path): unknown {
  let node = raw;
  for (const seg of path) {
    if (node === null || typeof node !== 'object') return undefined;
    node = (node as Record<string | number, unknown>)[seg];
  }
  return node;
}

// ---------------------------------------------------------------------------------------------
// Unknown keys: explicit hints for renamed or foreign keys, then snake_case, then edit distance

/**
 * Keys users bring from other proxies (HAProxy `server`, nginx `upstream`, Envoy `lb_policy`…), by
 * the kind of object they appear in. A list means "one of these, depending on what you meant".
 */
const DISPATCHER_RENAMED: RenamedKeys = {
  service: {
    servers: 'backends',
    upstreams: 'backends',
    targets: 'backends',
    algorithm: 'balancer',
    balance: 'balancer',
    lb: 'balancer',
    lbPolicy: 'balancer',
    loadBalancer: 'balancer',
    bind: 'listen',
    port: 'listen',
    address: 'listen',
    mode: 'protocol',
    type: 'protocol',
    timeout: ['http.responseTimeoutMs', 'health.connectTimeoutMs', 'tcp.idleTimeoutMs'],
  },
  backend: { host: 'address', addr: 'address', server: 'address', url: 'address', name: 'id' },
  admin: { bind: 'listen', port: 'listen', address: 'listen', token: 'tokenFile', authToken: 'tokenFile' },
  logging: { loglevel: 'level', logLevel: 'level' },
};

function dispatcherObjectKind(path: Path): string {
  if (path.length === 2 && path[0] === 'services') return 'service';
  if (path.length === 4 && path[0] === 'services' && path[2] === 'backends') return 'backend';
  return defaultObjectKind(path);
}

function defaultObjectKind(path: Path): string {
  return String(path.at(-1) ?? 'root');
}

function unknownKey(schema: z.ZodTypeAny, options: YamlOptions, path: Path, key: string): { message: string; target?: string } {
  const all = knownKeys(schema, path);
  const direct = all.filter((k) => !k.includes('.'));
  const use = (word: string, targets: string | readonly string[]) => {
    const list = typeof targets === 'string' ? [targets] : targets;
    const quoted = list.map((t) => `"${t}"`);
    const message = `${word}, use ${list.length === 1 ? quoted[0] : `one of ${quoted.join(', ')}`}`;
    return list.length === 1 ? { message, target: list[0] } : { message };
  };

  const explicit = options.renamed?.[(options.kindOf ?? defaultObjectKind)(path)]?.[key];
  if (explicit) return use('renamed', explicit);

  // connect_timeout, connect-timeout, connectTimeout → connectTimeoutMs: in this object first, then
  // one level down (a key written in the wrong place).
  const camel = key.replace(/[-_]+([a-zA-Z0-9])/g, (_, c: string) => c.toUpperCase());
  const candidates = [camel, `${camel}Ms`].filter((c) => c !== key);
  const inHere = candidates.find((c) => direct.includes(c));
  if (inHere) return use('renamed', inHere);
  if (camel.toLowerCase() === 'timeout') {
    const timeouts = direct.filter((k) => /[tT]imeoutMs$/.test(k));
    if (timeouts.length > 0) return use('renamed', timeouts);
  }
  for (const candidate of [key, ...candidates]) {
    const below = all.filter((k) => k.endsWith(`.${candidate}`));
    if (below.length > 0) return use(candidate === key ? 'misplaced' : 'renamed', below);
  }

  const near = nearest(key, direct);
  if (near) return { message: `unknown key (did you mean "${near}"?)` };
  return { message: `unknown key, expected one of ${direct.map((k) => `"${k}"`).join(', ')}` };
}

/** The keys of the object at `path`, then, dotted, the keys of the objects nested in it. */
function knownKeys(schema: z.ZodTypeAny, path: Path): string[] {
  let node: z.ZodTypeAny | undefined = schema;
  for (const seg of path) {
    node = unwrap(node);
    if (node instanceof z.ZodArray && typeof seg === 'number') node = node.element as z.ZodTypeAny;
    else if (node instanceof z.ZodObject && typeof seg === 'string') node = (node.shape as z.ZodRawShape)[seg];
    else return [];
    if (!node) return [];
  }
  return keysOf(node);
}

function keysOf(node: z.ZodTypeAny): string[] {
  const object = unwrap(node);
  if (!(object instanceof z.ZodObject)) return [];
  const shape = object.shape as z.ZodRawShape;
  const direct = Object.keys(shape);
  return [...direct, ...direct.flatMap((k) => keysOf(shape[k]!).map((n) => `${k}.${n}`))];
}

function unwrap(node: z.ZodTypeAny): z.ZodTypeAny {
  for (;;) {
    if (node instanceof z.ZodDefault || node instanceof z.ZodOptional) node = node._def.innerType as z.ZodTypeAny;
    else if (node instanceof z.ZodEffects) node = node.innerType() as z.ZodTypeAny;
    else return node;
  }
}

/** The known key closest to `key`, if it is close enough to be a typo (≤ 1 edit for short keys, else ≤ 2). */
function nearest(key: string, known: readonly string[]): string | null {
  const limit = key.length <= 4 ? 1 : 2;
  let best: string | null = null;
  let bestDistance = limit + 1;
  for (const candidate of known) {
    const d = editDistance(key.toLowerCase(), candidate.toLowerCase());
    if (d < bestDistance) [best, bestDistance] = [candidate, d];
  }
  return best;
}

/** Optimal string alignment distance: Levenshtein plus adjacent transpositions ("listne"). */
function editDistance(a: string, b: string): number {
  const d: number[][] = Array.from({ length: a.length + 1 }, (_, i) => [i, ...Array<number>(b.length).fill(0)]);
  for (let j = 0; j <= b.length; j++) d[0]![j] = j;
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let v = Math.min(d[i - 1]![j]! + 1, d[i]![j - 1]! + 1, d[i - 1]![j - 1]! + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) v = Math.min(v, d[i - 2]![j - 2]! + 1);
      d[i]![j] = v;
    }
  }
  return d[a.length]![b.length]!;
}

// ---------------------------------------------------------------------------------------------
// The dispatcher's cross-field checks

function semanticIssues(raw: unknown): string[] {
  const issues: string[] = [];
  const root = asRecord(raw);
  const services = Array.isArray(root.services) ? root.services : [];
  const names = new Map<string, string>();
  const listens: { path: string; text: string; addr: HostPort }[] = [];
  const claim = (path: string, text: unknown) => {
    const addr = typeof text === 'string' ? parseHostPort(text) : null;
    if (!addr) return;
    const clash = listens.find((l) => sameSocket(l.addr, addr));
    if (clash) issues.push(`${path}: ${text as string} is already used by ${clash.path}${clash.text === text ? '' : ` (${clash.text})`}`);
    else listens.push({ path, text: text as string, addr });
  };

  services.forEach((item, i) => {
    const service = asRecord(item);
    const at = `services[${i}]`;
    if (typeof service.name === 'string') {
      const first = names.get(service.name);
      if (first) issues.push(`${at}.name: duplicate service name "${service.name}", already used by ${first}`);
      else names.set(service.name, at);
    }
    claim(`${at}.listen`, service.listen);
    const tlsCapable = service.protocol === 'http' || service.protocol === 'tcp';
    if (service.tlsPassthrough !== undefined) {
      if (service.protocol !== 'tcp') issues.push(`${at}.tlsPassthrough: expected only on a tcp service, received a ${String(service.protocol)} service`);
      else if (service.tls !== undefined) issues.push(`${at}.tlsPassthrough: expected either tls (terminate) or tlsPassthrough (route by name), received both`);
    }
    if (service.tls !== undefined && !tlsCapable) {
      issues.push(`${at}.tls: expected only on an http or tcp service, received a ${String(service.protocol)} service`);
    }
    (Array.isArray(service.backends) ? service.backends : []).forEach((b, j) => {
      if (asRecord(b).tls !== undefined && !tlsCapable) {
        issues.push(`${at}.backends[${j}].tls: expected only on an http or tcp service, received a ${String(service.protocol)} service`);
      }
    });
    if (typeof service.balancer === 'string' && !balancerNames().includes(service.balancer)) {
      const known = balancerNames();
      const near = nearest(service.balancer, known);
      issues.push(
        `${at}.balancer: expected one of ${known.map((n) => `"${n}"`).join(', ')}, received "${service.balancer}"` +
          (near ? ` (did you mean "${near}"?)` : ''),
      );
    }
    const ids = new Map<string, string>();
    (Array.isArray(service.backends) ? service.backends : []).forEach((b, j) => {
      const id = asRecord(b).id;
      if (typeof id !== 'string') return;
      const first = ids.get(id);
      if (first) issues.push(`${at}.backends[${j}].id: duplicate backend id "${id}", already used by ${first}`);
      else ids.set(id, `${at}.backends[${j}]`);
    });
  });

  // A probe its backends can answer: TCP probes need a TCP listener, datagram probes a UDP one.
  services.forEach((item, i) => {
    const service = asRecord(item);
    const type = asRecord(asRecord(service.health).probe).type;
    if (typeof type !== 'string') return;
    const sip = asRecord(service.sip);
    const transports = Array.isArray(sip.transports) ? sip.transports : ['udp', 'tcp'];
    const stream = service.protocol === 'http' || service.protocol === 'tcp' || service.protocol === 'rtsp' || (service.protocol === 'sip' && transports.includes('tcp'));
    const datagram = service.protocol === 'udp' || (service.protocol === 'sip' && transports.includes('udp'));
    const ok = type === 'tcp' || type === 'http' ? stream : datagram;
    if (!ok && (stream || datagram)) {
      issues.push(`services[${i}].health.probe.type: expected a probe a ${String(service.protocol)} backend answers (${stream ? 'tcp, http' : 'udp, sip'}), received "${type}"`);
    }
  });

  const replication = replicationSchema.safeParse({ dispatcher: root.dispatcher, groups: root.groups });
  if (replication.success) {
    const named = services.map(asRecord).filter((s) => typeof s.name === 'string' && typeof s.listen === 'string') as { name: string; listen: string }[];
    issues.push(...replicationIssues(replication.data, named));
  }

  const admin = { ...ADMIN_DEFAULTS, ...asRecord(root.admin) };
  if (admin.enabled !== false) claim('admin.listen', admin.listen);
  return issues;
}

const ADMIN_DEFAULTS: Record<string, unknown> = configSchema.shape.admin.parse(undefined);

const DISPATCHER_OPTIONS: YamlOptions = {
  checks: semanticIssues,
  renamed: DISPATCHER_RENAMED,
  kindOf: dispatcherObjectKind,
  expected: 'a mapping with a "services" list',
};

/** Two listeners collide on the same port when their hosts match or either is a wildcard; port 0 never collides. */
function sameSocket(a: HostPort, b: HostPort): boolean {
  const wildcard = (h: string) => h === '0.0.0.0' || h === '::';
  return a.port === b.port && a.port !== 0 && (a.host === b.host || wildcard(a.host) || wildcard(b.host));
}

function asRecord(value: unknown): Record<string, unknown> {
  return value !== null && typeof value === 'object' && !Array.isArray(value) ? (value as Record<string, unknown>) : {};
}

function deepFreeze<T>(value: T): T {
  if (value !== null && typeof value === 'object' && !Object.isFrozen(value)) {
    Object.freeze(value);
    for (const child of Object.values(value)) deepFreeze(child);
  }
  return value;
}
