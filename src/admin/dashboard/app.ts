/**
 * @module The operator's dashboard (issue 14), bundled by esbuild (scripts/build-dashboard.mjs) and
 * served by the admin listener. Reads the admin API v1: the status every STATUS_POLL_MS and at once
 * on every backend or election event, the load history every HISTORY_POLL_MS, and the event stream
 * (SSE over fetch, so that the bearer token can go in a header; resumed with Last-Event-ID).
 * A token comes from the page's `#token=` fragment or is asked for, and is kept in sessionStorage.
 */
import { h, render } from 'preact';
import { useEffect, useRef, useState } from 'preact/hooks';
import htm from 'htm';
import uPlot from 'uplot';
import 'uplot/dist/uPlot.min.css';
import './app.css';

const html = htm.bind(h);

const STATUS_POLL_MS = 500;
const HISTORY_POLL_MS = 2000;
const TIMELINE_EVENTS = 300;
const RECONNECT_MS = 1000;
const TOKEN_KEY = 'holdfast-admin-token';

interface Backend {
  id: string;
  address: string;
  weight: number;
  state: string;
  since: number;
  reason: string;
  active: number;
  load?: number;
  forecast?: number;
}
interface Service {
  name: string;
  protocol: string;
  listen: string;
  balancer: string;
  clusterLoad: number;
  sessions: { active: number; max: number };
  flows: { active: number; max: number };
  backends: Backend[];
}
interface Group {
  name: string;
  vip: string;
  state: string;
  epoch: number;
  since: number;
  master: number | null;
  priority: number;
  vipHeld: boolean;
}
interface Status {
  version: string;
  pid: number;
  startedAt: number;
  services: Service[];
  groups?: Group[];
}
/** /api/v1/replication, the part the page shows: the lag per peer streamed to, the age of the last frame per peer heard. */
interface Replication {
  replicators: { lagMs: number | null; peers: { to: string; lagMs: number | null }[]; inbound: { peer: number | null; sinceLastFrameMs: number }[] }[];
}
interface HistoryBackend {
  service: string;
  id: string;
  history: { at: number; load: number; forecast: number }[];
}
interface HfEvent {
  id: number;
  type: string;
  at: number;
  data: Record<string, unknown>;
}
interface Admission {
  service: string;
  configured: { enabled: boolean; t1: number; t2: number; t3: number; c: number };
  band?: string;
  load?: number;
  t2?: number;
  t3?: number;
  pNew?: number;
  pEstablished?: number;
  history: { at: number; load: number; t2: number; t3: number }[];
}
interface Action {
  name: string;
  description: string;
}

let token: string | null = new URLSearchParams(location.hash.slice(1)).get('token') ?? sessionStorage.getItem(TOKEN_KEY);
if (token) sessionStorage.setItem(TOKEN_KEY, token);

class AuthError extends Error {}

async function api<T>(path: string, init: RequestInit = {}): Promise<T> {
  const headers = new Headers(init.headers);
  if (token) headers.set('authorization', `Bearer ${token}`);
  const res = await fetch(path, { ...init, headers });
  if (res.status === 401 || res.status === 403) throw new AuthError(res.status === 401 ? 'a token is needed' : 'wrong token');
  const body = (await res.json()) as T & { error?: string; issues?: { path: string; message: string }[] };
  if (!res.ok) {
    const issues = (body.issues ?? []).map((i) => `${i.path}: ${i.message}`).join('; ');
    throw new Error(`${body.error ?? `HTTP ${res.status}`}${issues ? ` (${issues})` : ''}`);
  }
  return body;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Reads /api/v1/events as Server-Sent Events until `signal` aborts; reconnects with Last-Event-ID. */
async function streamEvents(after: number, onEvent: (e: HfEvent) => void, onConn: (live: boolean) => void, signal: AbortSignal): Promise<void> {
  let last = after;
  while (!signal.aborted) {
    try {
      const headers: Record<string, string> = { 'last-event-id': String(last) };
      if (token) headers.authorization = `Bearer ${token}`;
      const res = await fetch('/api/v1/events', { headers, signal });
      if (!res.ok || !res.body) throw new Error(`HTTP ${res.status}`);
      onConn(true);
      const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
      let buf = '';
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += value;
        let end: number;
        while ((end = buf.indexOf('\n\n')) >= 0) {
          const block = buf.slice(0, end);
          buf = buf.slice(end + 2);
          let data = '';
          for (const line of block.split('\n')) if (line.startsWith('data: ')) data += line.slice(6);
          if (data === '') continue;
          const e = JSON.parse(data) as HfEvent;
          if (typeof e.id === 'number') {
            last = e.id;
            onEvent(e);
          }
        }
      }
    } catch {
      // reconnect below
    }
    onConn(false);
    if (!signal.aborted) await sleep(RECONNECT_MS);
  }
}

const time = (ms: number) => new Date(ms).toLocaleTimeString(undefined, { hour12: false }) + '.' + String(ms % 1000).padStart(3, '0');
const pct = (x: number | undefined) => (x === undefined ? '–' : `${Math.round(x * 100)} %`);
const ago = (ms: number) => (ms <= 0 ? '' : `${Math.max(0, Math.round((Date.now() - ms) / 1000))} s ago`);

/** One line of the timeline: what happened, with the recovery time of a failover. */
function describe(e: HfEvent): string {
  const d = e.data as Record<string, string | number | null>;
  switch (e.type) {
    case 'backend:state':
      return `${d.service}/${d.backend}: ${d.from} → ${d.to} (${d.reason})`;
    case 'failover':
      return `${d.service}: failover ${d.backend ?? '?'} → ${d.to ?? 'none'} by ${d.strategy}: ${d.result}${typeof d.recoveryMs === 'number' && d.recoveryMs >= 0 ? `, recovered in ${d.recoveryMs.toFixed(1)} ms` : ''}`;
    case 'election:state':
      return `group ${d.group}: dispatcher ${d.node} is ${d.type} (epoch ${d.epoch}, ${d.reason})`;
    case 'admission:threshold':
      return `${d.service}: admission ${d.from} → ${d.to} at load ${pct(d.load as number)}`;
    case 'admission:move':
      return `${d.service}: ${d.threshold} ${(d.from as number).toFixed(2)} → ${(d.to as number).toFixed(2)} (${d.reason})`;
    case 'session:repin':
      return `${d.service}: session re-pinned ${d.from} → ${d.to ?? 'none'}`;
    case 'load:monitor':
      return `${d.service}/${d.backend}: load monitor ${d.state}`;
    default:
      return `${e.type} ${JSON.stringify(d)}`;
  }
}

/** A small uPlot chart of fractions in [0, 1] over time (seconds). */
function Chart({ data, series, width, title }: { data: uPlot.AlignedData; series: uPlot.Series[]; width: number; title: string }) {
  const el = useRef<HTMLDivElement>(null);
  const plot = useRef<uPlot | null>(null);
  useEffect(() => {
    if (!plot.current && el.current) {
      plot.current = new uPlot(
        {
          width,
          height: 90,
          legend: { show: false },
          scales: { y: { range: [0, 1] } },
          axes: [{ show: false }, { size: 50, splits: () => [0, 0.5, 1], values: (_u, v) => v.map((x) => `${Math.round(x * 100)} %`) }],
          series: [{}, ...series.map((x) => ({ points: { show: false }, ...x }))],
        },
        data,
        el.current,
      );
    } else {
      plot.current?.setData(data);
    }
  }, [data]);
  useEffect(() => () => plot.current?.destroy(), []);
  return html`<div class="chart" ref=${el} title=${title}></div>`;
}

const LOAD_SERIES: uPlot.Series[] = [
  { label: 'load', stroke: '#2e6fd8' },
  { label: 'forecast', stroke: '#e0a020', dash: [4, 3] },
];

function LoadChart({ points }: { points: HistoryBackend['history'] }) {
  const data: uPlot.AlignedData = [points.map((p) => p.at / 1000), points.map((p) => p.load), points.map((p) => p.forecast)];
  return html`<${Chart} data=${data} series=${LOAD_SERIES} width=${260} title="load (blue) and shell forecast (dashed)" />`;
}

const ADMISSION_SERIES: uPlot.Series[] = [
  { label: 'x = max(l, l_c)', stroke: '#222', width: 2 },
  { label: 'T1', stroke: '#2e9d49' },
  { label: 'T2', stroke: '#e0a020' },
  { label: 'T3', stroke: '#d2703c' },
  { label: 'C', stroke: '#d23c3c' },
];

function AdmissionChart({ a }: { a: Admission }) {
  const h = a.history;
  const data: uPlot.AlignedData = [
    h.map((p) => p.at / 1000),
    h.map((p) => p.load),
    h.map(() => a.configured.t1),
    h.map((p) => p.t2),
    h.map((p) => p.t3),
    h.map(() => a.configured.c),
  ];
  return html`<${Chart} data=${data} series=${ADMISSION_SERIES} width=${520} title="decision load (black) against T1, T2, T3 (moving, SARA eq. 4) and C" />`;
}

function App() {
  const [status, setStatus] = useState<Status | null>(null);
  const [history, setHistory] = useState<Map<string, HistoryBackend['history']>>(new Map());
  const [events, setEvents] = useState<HfEvent[]>([]);
  const [actions, setActions] = useState<Action[]>([]);
  const [replication, setReplication] = useState<Replication | null>(null);
  const [admission, setAdmission] = useState<Map<string, Admission>>(new Map());
  const [live, setLive] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const [needToken, setNeedToken] = useState(false);
  const [notice, setNotice] = useState<string | null>(null);
  const refreshRef = useRef<() => void>(() => {});

  useEffect(() => {
    const abort = new AbortController();
    let inFlight = false;
    const refresh = () => {
      if (inFlight) return;
      inFlight = true;
      api<Status>('/api/v1/status')
        .then((s) => {
          setStatus(s);
          setError(null);
        })
        .catch((err: Error) => {
          if (err instanceof AuthError) setNeedToken(true);
          setError(err.message);
        })
        .finally(() => (inFlight = false));
    };
    refreshRef.current = refresh;
    const loadHistory = () =>
      api<HistoryBackend[]>('/api/v1/backends')
        .then((bs) => setHistory(new Map(bs.map((b) => [`${b.service}/${b.id}`, b.history]))))
        .then(() => api<Admission[]>('/api/v1/admission'))
        .then((as) => setAdmission(new Map(as.map((a) => [a.service, a]))))
        .catch(() => {})
        .then(() => api<Replication>('/api/v1/replication'))
        .then(setReplication, () => {});
    refresh();
    loadHistory();
    api<Action[]>('/api/v1/actions').then(setActions, () => {});
    const polls = [setInterval(refresh, STATUS_POLL_MS), setInterval(loadHistory, HISTORY_POLL_MS)];
    api<{ lastId: number; events: HfEvent[] }>(`/api/v1/events/recent?limit=${TIMELINE_EVENTS}`)
      .then((recent) => {
        setEvents(recent.events.slice().reverse());
        return streamEvents(
          recent.lastId,
          (e) => {
            setEvents((old) => [e, ...old].slice(0, TIMELINE_EVENTS));
            if (e.type === 'backend:state' || e.type === 'election:state') refresh();
          },
          setLive,
          abort.signal,
        );
      })
      .catch(() => {});
    return () => {
      abort.abort();
      polls.forEach(clearInterval);
    };
  }, []);

  const act = (path: string, body: unknown, label: string, method = 'POST') => {
    setNotice(`${label}…`);
    api(path, method === 'DELETE' ? { method } : { method, body: JSON.stringify(body ?? {}), headers: { 'content-type': 'application/json' } })
      .then(() => setNotice(`${label}: done`), (err: Error) => setNotice(`${label}: ${err.message}`))
      .finally(() => refreshRef.current());
  };
  const has = (name: string) => actions.some((a) => a.name === name);

  if (needToken) {
    return html`<section>
      <h2>Admin token</h2>
      <p>This admin API needs a bearer token (admin.tokenFile or HOLDFAST_ADMIN_TOKEN on the dispatcher).</p>
      <form onSubmit=${(ev: Event) => {
        ev.preventDefault();
        const v = ((ev.target as HTMLFormElement).elements.namedItem('token') as HTMLInputElement).value.trim();
        sessionStorage.setItem(TOKEN_KEY, v);
        token = v;
        location.reload();
      }}>
        <input name="token" type="password" size="40" autocomplete="off" /> <button>Use</button>
      </form>
    </section>`;
  }

  const byProtocol = new Map<string, { sessions: number; flows: number; services: number }>();
  for (const s of status?.services ?? []) {
    const p = byProtocol.get(s.protocol) ?? { sessions: 0, flows: 0, services: 0 };
    p.sessions += s.sessions.active;
    p.flows += s.flows.active;
    p.services++;
    byProtocol.set(s.protocol, p);
  }

  return html`
    <header>
      <h1>holdfast</h1>
      <span>${status ? `v${status.version} · pid ${status.pid}` : ''}</span>
      ${has('reload') ? html`<button data-action="reload" title="re-read the configuration file and apply what can change live" onClick=${() => act('/api/v1/actions/reload', {}, 'reload the configuration')}>Reload configuration</button>` : null}
      ${has('kill-master') ? html`<button class="danger" data-action="kill-master" onClick=${() => act('/api/v1/actions/kill-master', {}, 'kill the master dispatcher')}>Kill the master dispatcher</button>` : null}
      <span class=${`conn ${live ? 'live' : ''}`} data-testid="connection">${live ? '● live' : '○ connecting'}</span>
    </header>
    ${error ? html`<p class="error">${error}</p>` : null}
    ${notice ? html`<p class="muted" data-testid="notice">${notice}</p>` : null}
    <main>
      <div>
        <section>
          <h2>Topology</h2>
          ${(status?.services ?? []).map(
            (s) => html`<div class="service" data-service=${s.name}>
              <h3>${s.name} <span class="muted">${s.protocol} on ${s.listen} · ${s.balancer} · cluster load ${pct(s.clusterLoad)}</span></h3>
              ${(() => {
                const a = admission.get(s.name);
                if (!a?.configured.enabled) return html`<div class="muted">admission control (SA2C) off</div>`;
                return html`<div class="admission" data-admission=${s.name}>
                  <span class="muted">SA2C: band ${a.band ?? '–'} · load ${pct(a.load)} · T1 ${pct(a.configured.t1)} · T2 ${pct(a.t2 ?? a.configured.t2)} · T3 ${pct(a.t3 ?? a.configured.t3)} · C ${pct(a.configured.c)} · refuse new ${pct(a.pNew)} · drop established ${pct(a.pEstablished)}</span>
                  ${a.history.length > 1 ? html`<${AdmissionChart} a=${a} />` : null}
                </div>`;
              })()}
              <div class="backends">
                ${s.backends.map((b) => {
                  const points = history.get(`${s.name}/${b.id}`) ?? [];
                  return html`<div class=${`backend state-${b.state}`} data-backend=${b.id} data-state=${b.state}>
                    <div><span class="name">${b.id}</span> <span class="muted">${b.address}</span></div>
                    <div><span class="state">${b.state}</span> <span class="muted">${b.reason} ${ago(b.since)}</span></div>
                    <div class="muted">in flight ${b.active} · weight ${b.weight}${b.load !== undefined ? ` · load ${pct(b.load)} · forecast ${pct(b.forecast)}` : ''}</div>
                    ${points.length > 1 ? html`<${LoadChart} points=${points} />` : html`<div class="muted">no load reports (no agent)</div>`}
                    <div>
                      ${b.state === 'draining'
                        ? html`<button onClick=${() => act(`/api/v1/services/${encodeURIComponent(s.name)}/backends/${encodeURIComponent(b.id)}/undrain`, {}, `undrain ${b.id}`)}>Undrain</button>`
                        : html`<button onClick=${() => act(`/api/v1/services/${encodeURIComponent(s.name)}/backends/${encodeURIComponent(b.id)}/drain`, {}, `drain ${b.id}`)}>Drain</button>`}
                      <button data-action="remove-backend" title="drained for good and removed (runtime only: the next reload resets to the file)" onClick=${() => act(`/api/v1/services/${encodeURIComponent(s.name)}/backends/${encodeURIComponent(b.id)}`, null, `remove ${b.id}`, 'DELETE')}>Remove</button>
                      ${has('kill-backend') ? html`<button class="danger" data-action="kill-backend" onClick=${() => act('/api/v1/actions/kill-backend', { backend: b.id }, `kill ${b.id}`)}>Kill</button>` : null}
                    </div>
                  </div>`;
                })}
              </div>
              <form class="add-backend" data-add-backend=${s.name} title="runtime only: the next reload resets to the file" onSubmit=${(ev: Event) => {
                ev.preventDefault();
                const form = ev.target as HTMLFormElement;
                const field = (n: string) => (form.elements.namedItem(n) as HTMLInputElement).value.trim();
                const weight = field('weight');
                act(`/api/v1/services/${encodeURIComponent(s.name)}/backends`, { id: field('id'), address: field('address'), ...(weight ? { weight: Number(weight) } : {}) }, `add ${field('id')}`);
              }}>
                <input name="id" placeholder="id" size="10" required />
                <input name="address" placeholder="host:port" size="18" required />
                <input name="weight" placeholder="weight" size="5" inputmode="numeric" />
                <button>Add backend</button>
              </form>
            </div>`,
          )}
        </section>
        <section>
          <h2>Sessions by protocol</h2>
          <table data-testid="sessions">
            <tr><th>protocol</th><th>services</th><th>sessions</th><th>flows</th></tr>
            ${[...byProtocol].map(([p, v]) => html`<tr><td>${p}</td><td>${v.services}</td><td>${v.sessions}</td><td>${v.flows}</td></tr>`)}
          </table>
        </section>
        <section>
          <h2>Dispatcher roles</h2>
          ${(status?.groups ?? []).length === 0
            ? html`<p class="muted">not replicated (no election group)</p>`
            : html`<table data-testid="groups">
                <tr><th>group</th><th>VIP</th><th>this dispatcher</th><th>epoch</th><th>master</th><th>VIP held</th><th>since</th><th></th></tr>
                ${status!.groups!.map(
                  (g) => html`<tr data-group=${g.name} data-role=${g.state}>
                    <td>${g.name}</td><td>${g.vip}</td><td>${g.state}</td><td>${g.epoch}</td><td>${g.master ?? '–'}</td><td>${g.vipHeld ? 'yes' : 'no'}</td><td>${ago(g.since)}</td>
                    <td>${g.state === 'master' ? html`<button title="planned switchover: resign, the backup takes the VIP" onClick=${() => act(`/api/v1/groups/${encodeURIComponent(g.name)}/switchover`, {}, `switch over ${g.name}`)}>Switch over</button>` : null}</td>
                  </tr>`,
                )}
              </table>`}
          ${(replication?.replicators ?? []).map(
            (r) => html`<p class="muted" data-testid="replication-lag">
              replication ·
              ${r.peers.map((p) => html`<span>to ${p.to}: ${p.lagMs === null ? 'not streaming' : `lag ${Math.round(p.lagMs)} ms`} · </span>`)}
              ${r.inbound.map((i) => html`<span>from dispatcher ${i.peer ?? '?'}: last frame applied ${Math.round(i.sinceLastFrameMs)} ms ago · </span>`)}
            </p>`,
          )}
        </section>
      </div>
      <section>
        <h2>Failover timeline</h2>
        <ul class="timeline" data-testid="timeline">
          ${events.length === 0 ? html`<li class="muted">nothing yet</li>` : null}
          ${events.map((e) => {
            const d = e.data as Record<string, unknown>;
            const cls = `ev-${e.type.replace(':', '-')} ${e.type === 'backend:state' ? `to-${String(d.to)}` : ''} ${e.type === 'failover' ? String(d.result) : ''}`;
            return html`<li key=${e.id} class=${cls} data-type=${e.type}><span class="t">${time(e.at)}</span>${describe(e)}</li>`;
          })}
        </ul>
      </section>
    </main>
  `;
}

const root = document.getElementById('app')!;
root.textContent = ''; // the "Loading…" placeholder (render() appends beside what is there)
render(html`<${App} />`, root);
