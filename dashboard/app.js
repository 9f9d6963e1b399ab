// The Nereid dashboard: reads /dashboard/api/stream (Server-Sent Events over fetch, so that a bearer
// token can travel in a header) and draws the overview, a model's live charts and the try-it panel.
import { lineChart } from './charts.js';
import { answerKind, compactJson, detectionShapes, drawShapes, imageModeOf, phaseTimings, requestTemplate, SHOWN_ITEMS, textShapes } from './try-it.js';

const API = new URL('api/', new URL('..', import.meta.url)).pathname;
const ROOT = new URL('../..', import.meta.url).pathname; // the server's root, for the V2 routes
/** Seconds of intervals a version's charts keep: five minutes, at whatever pace the server streams (--dashboard-interval-ms). */
const HISTORY_S = 300;
const TOKEN_KEY = 'nereid-dashboard-token';

const main = document.getElementById('main');
const connection = document.getElementById('connection');

// ---------------------------------------------------------------------------------------------
// Markup: interpolated values are escaped unless wrapped in raw().

const RAW = Symbol('raw');
const raw = (text) => ({ [RAW]: text });
const escape = (value) => String(value).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
function html(strings, ...values) {
  let out = strings[0];
  values.forEach((value, index) => {
    const parts = Array.isArray(value) ? value : [value];
    out += parts.map((part) => (part === undefined || part === null || part === false ? '' : part[RAW] !== undefined ? part[RAW] : escape(part))).join('');
    out += strings[index + 1];
  });
  return raw(out);
}
const FOCUSABLE = 'a[href], button, input, select, textarea, [tabindex]';
/** Where a focused element sits in `element`: the nearest ancestor that names what it shows (a model version's row, a job) and its place among that ancestor's focusable elements. */
function focusPlace(element) {
  const focused = document.activeElement;
  if (!focused || focused === element || !element.contains(focused)) return undefined;
  const holder = focused.closest('[data-model], [data-job]');
  const scope = holder && element.contains(holder) ? holder : element;
  const selector = scope === element ? '' : holder.dataset.job !== undefined ? `[data-job="${CSS.escape(holder.dataset.job)}"]` : `[data-model="${CSS.escape(holder.dataset.model)}"][data-version="${CSS.escape(holder.dataset.version ?? '')}"]`;
  return { selector, index: [...scope.querySelectorAll(FOCUSABLE)].indexOf(focused) };
}
/**
 * Replaces an element's markup. The pages redraw on every event of the stream, and focus would fall back to the
 * page's start each time: a person tabbing through the models table would lose their place, so the
 * same logical element (the same place in the same model version's row or job) takes it back.
 */
const render = (element, markup) => {
  const place = focusPlace(element);
  element.innerHTML = markup[RAW];
  if (!place || place.index < 0) return;
  const scope = place.selector ? element.querySelector(place.selector) : element;
  scope?.querySelectorAll(FOCUSABLE)[place.index]?.focus({ preventScroll: true });
};

const number = (value, digits = 1) => (value === undefined || value === null || Number.isNaN(value) ? '–' : Number(value).toLocaleString(undefined, { maximumFractionDigits: digits }));
const percent = (value) => (value === undefined || value === null ? '–' : `${(value * 100).toFixed(1)} %`);
function bytes(value) {
  if (value === undefined || value === null) return '–';
  const units = ['B', 'KiB', 'MiB', 'GiB'];
  let scaled = value;
  let unit = 0;
  while (scaled >= 1024 && unit < units.length - 1) {
    scaled /= 1024;
    unit += 1;
  }
  return `${scaled.toFixed(unit ? 1 : 0)} ${units[unit]}`;
}
/** Dollars to the cent; under a cent in scientific notation rather than a row of zeros. */
// Small amounts in plain decimals ($0.00000300), which a reader of prices reads, not in exponent notation.
const dollars = (value) => (value === 0 || value >= 0.01 ? `$${value.toFixed(value >= 100 ? 0 : 2)}` : `$${value.toLocaleString('en-US', { maximumSignificantDigits: 3, maximumFractionDigits: 20 })}`);
function duration(seconds) {
  const s = Math.floor(seconds);
  const parts = [[Math.floor(s / 86400), 'd'], [Math.floor((s % 86400) / 3600), 'h'], [Math.floor((s % 3600) / 60), 'm'], [s % 60, 's']];
  return parts.filter(([value], index) => value > 0 || index === 3).slice(0, 2).map(([value, unit]) => `${value}${unit}`).join(' ');
}

// ---------------------------------------------------------------------------------------------
// Token: asked for when the API answers 401, kept in this tab only.

const codePoint = (character) => `U+${character.codePointAt(0).toString(16).toUpperCase().padStart(4, '0')}`;
/**
 * Why a token cannot be one of this server's: they are printable ASCII (nereid serve refuses others),
 * and a header cannot carry some characters at all (fetch throws on a pasted zero-width space).
 */
function tokenFault(value) {
  const character = value.match(/[^\x21-\x7e]/u)?.[0];
  return character && `That token holds ${codePoint(character)}, which no token of this server holds (tokens are printable ASCII): paste it again without it.`;
}
/** Why the token kept in this tab was dropped, said when the dialog next asks for one. */
let droppedToken = '';
const token = () => {
  const kept = sessionStorage.getItem(TOKEN_KEY);
  const fault = kept && tokenFault(kept);
  if (!fault) return kept;
  // One kept before it could be checked (an older page) is dropped like a refused token, so that the tab asks again.
  sessionStorage.removeItem(TOKEN_KEY);
  droppedToken = fault;
  return null;
};
const authorized = (init = {}) => {
  const headers = new Headers(init.headers);
  if (token()) headers.set('authorization', `Bearer ${token()}`);
  return { ...init, headers };
};

let tokenWaiters = [];
/** Fires 'change' when this tab is given another token: the live updates it shares with other tabs follow it. */
const tokenChanges = new EventTarget();
const tokenButton = document.getElementById('token-open');
/** Asks for a token; `refusal` is the server's word on the one sent (a token of another scope is told which it lacks). */
function askForToken(refusal) {
  const dialog = document.getElementById('token-dialog');
  const error = document.getElementById('token-error');
  const said = droppedToken || (refusal ? `The server refused that token: ${refusal}` : '');
  droppedToken = '';
  error.hidden = !said;
  error.textContent = said;
  tokenButton.hidden = true;
  if (!dialog.open) dialog.showModal();
  return new Promise((resolve) => tokenWaiters.push(resolve));
}
// Escape (or the browser's own close) puts the prompt away: the page waits, saying so, and the
// header's button asks again; the requests waiting for a token go out once one is given.
document.getElementById('token-dialog').addEventListener('cancel', () => {
  tokenButton.hidden = false;
  connection.dataset.state = 'down';
  connection.textContent = 'no token: the data needs one';
});
tokenButton.addEventListener('click', () => {
  tokenButton.hidden = true;
  document.getElementById('token-dialog').showModal();
});
document.getElementById('token-form').addEventListener('submit', (event) => {
  const value = document.getElementById('token-input').value.trim();
  const fault = tokenFault(value);
  if (fault) {
    // The dialog stays open, saying what is wrong with the token pasted.
    event.preventDefault();
    const error = document.getElementById('token-error');
    error.textContent = fault;
    error.hidden = false;
    return;
  }
  sessionStorage.setItem(TOKEN_KEY, value);
  tokenChanges.dispatchEvent(new Event('change'));
  const waiters = tokenWaiters;
  tokenWaiters = [];
  waiters.forEach((resolve) => resolve());
});

/** Why a request got no answer: the server is down, or the network between. */
class Unreachable extends Error {}

/** fetch with the token; a 401 (no token, or a wrong one) or 403 (a token of another scope) asks for one and tries again. No answer at all throws Unreachable, saying where. */
async function call(path, init) {
  for (;;) {
    let response;
    try {
      response = await fetch(path, authorized(init));
    } catch (error) {
      if (error instanceof TypeError) throw new Unreachable(`cannot reach the server at ${location.origin}`);
      throw error;
    }
    if (response.status !== 401 && response.status !== 403) return response;
    const refusal = token() ? await response.json().then((answer) => answer.error, () => undefined) : undefined;
    await askForToken(refusal ?? (token() ? 'it does not open this server' : undefined));
  }
}

// ---------------------------------------------------------------------------------------------
// State: the latest snapshot and, per model version, the last minutes of intervals.

const state = { snapshot: undefined, history: new Map(), configs: new Map() };

function record({ snapshot, interval }) {
  state.snapshot = snapshot;
  if (!interval) return;
  const at = snapshot.at / 1000;
  for (const model of snapshot.models) {
    for (const version of model.versions) {
      const key = `${version.name}/${version.version}`;
      const rates = interval.versions[key];
      if (!rates) continue;
      const points = state.history.get(key) ?? [];
      points.push({ at, rates, queued: version.queued, inFlight: version.in_flight });
      while (points[0].at < at - HISTORY_S) points.shift();
      state.history.set(key, points);
    }
  }
  state.cpuCores = interval.cpu_cores;
}

function showConnection(status, text) {
  connection.dataset.state = status;
  connection.textContent = text;
}

function receive(event) {
  record(event);
  update();
}

/** Reads the server's event stream until `signal` aborts, handing over each event and each change of the connection. */
async function stream(signal, deliver, show) {
  while (!signal.aborted) {
    try {
      const response = await call(`${API}stream`, { signal });
      if (!response.ok || !response.body) throw new Error(`stream answered ${response.status}`);
      show('live', 'live');
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffered = '';
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffered += value;
        let end;
        while ((end = buffered.indexOf('\n\n')) >= 0) {
          const event = buffered.slice(0, end);
          buffered = buffered.slice(end + 2);
          const data = event.split('\n').filter((line) => line.startsWith('data: ')).map((line) => line.slice(6)).join('\n');
          if (data) deliver(JSON.parse(data));
        }
      }
      show('down', 'reconnecting…');
    } catch (error) {
      if (signal.aborted) return;
      console.warn('dashboard stream', error);
      show('down', error instanceof Unreachable ? `${error.message}, retrying` : `the live updates failed (${error.message}), retrying`);
    }
    await new Promise((resolve) => {
      const timer = setTimeout(resolve, 2000);
      signal.addEventListener('abort', () => resolve(clearTimeout(timer)), { once: true });
    });
  }
}

/** Tabs that share a stream hold the same token (or none): a tab is shown only what its own token opens. */
async function tokenKey() {
  const kept = token();
  if (!kept) return 'none';
  const digest = new Uint8Array(await crypto.subtle.digest('SHA-256', new TextEncoder().encode(kept)));
  return [...digest.slice(0, 8)].map((byte) => byte.toString(16).padStart(2, '0')).join('');
}

/**
 * Live updates. A browser opens at most six HTTP/1.1 connections to one server, and each open stream holds one, so
 * a seventh tab would wait for ever. The tabs of this browser that hold the same token therefore share one stream:
 * the one holding a Web Lock reads it and passes each event on over a BroadcastChannel; when it closes, another takes
 * the lock and the stream. Where those APIs are missing (a page over plain HTTP from another host is no secure
 * context), each tab reads its own.
 */
async function liveUpdates() {
  if (typeof BroadcastChannel !== 'function' || !navigator.locks || !crypto.subtle) return stream(new AbortController().signal, receive, showConnection);
  for (;;) {
    const retoken = new AbortController();
    const abort = () => retoken.abort();
    tokenChanges.addEventListener('change', abort, { once: true });
    const key = await tokenKey();
    const channel = new BroadcastChannel(`nereid-dashboard:${key}`);
    let leading = false;
    channel.onmessage = ({ data }) => {
      if (leading) return;
      if (data.event) {
        // A tab that came after the stream went live learns it from the events.
        if (connection.dataset.state !== 'live') showConnection('live', 'live');
        receive(data.event);
      } else showConnection(data.status, data.text);
    };
    try {
      await navigator.locks.request(`nereid-dashboard-stream:${key}`, { signal: retoken.signal }, async () => {
        leading = true;
        await stream(
          retoken.signal,
          (event) => {
            receive(event);
            channel.postMessage({ event });
          },
          (status, text) => {
            showConnection(status, text);
            channel.postMessage({ status, text });
          },
        );
      });
    } catch (error) {
      if (!retoken.signal.aborted) throw error; // an AbortError: the token changed while another tab held the stream
    }
    tokenChanges.removeEventListener('change', abort);
    channel.close();
  }
}

// ---------------------------------------------------------------------------------------------
// Pages, chosen by the URL's hash: #/ · #/model/<name>/<version> · #/try/<name> · #/jobs

let page = { name: '', update() {}, leave() {} };

function route() {
  const [, kind, ...rest] = location.hash.replace(/^#/, '').split('/').map(decodeURIComponent);
  page.leave();
  document.querySelectorAll('[data-nav]').forEach((link) => link.classList.toggle('current', link.dataset.nav === (kind === 'try' || kind === 'jobs' ? kind : 'overview')));
  if (kind === 'model' && rest[0]) page = modelPage(rest[0], rest[1]);
  else if (kind === 'try') page = tryPage(rest[0]);
  else if (kind === 'jobs') page = jobsPage();
  else page = overviewPage();
  update();
}

function update() {
  if (state.snapshot) page.update(state.snapshot);
}

const latestRates = (key) => state.history.get(key)?.at(-1)?.rates;

function stateBadge(version) {
  const label = version.state ?? 'NOT LOADED';
  // A version unloaded on purpose (an unload, a policy that left it out) is not a failure.
  const kind = label === 'READY' ? 'ok' : label === 'UNAVAILABLE' && version.reason !== 'unloaded' ? 'bad' : 'idle';
  return html`<span class="badge ${kind}" data-testid="state">${label}</span>`;
}

/** A monitored version's drift state and out-of-distribution share, so that a model failing politely stands out on the overview. */
function driftCell(monitor) {
  if (!monitor?.monitored) return '';
  const ood = monitor.ood?.share === undefined ? '' : html` <small title="flagged out of distribution in the recent window">${percent(monitor.ood.share)} OOD</small>`;
  return html`<span class="level" data-level="${monitor.state}">${monitor.state.replace('_', ' ')}</span>${ood}`;
}

function overviewPage() {
  render(main, html`<section class="cards" id="server-cards"></section><section class="panel"><h2>Models</h2><div id="models" class="table-wrap"></div></section>`);
  return {
    name: 'overview',
    leave() {},
    update(snapshot) {
      const { server } = snapshot;
      render(
        document.getElementById('server-cards'),
        html`
        ${card('Server', server.ready ? 'ready' : server.live ? 'not ready' : 'stopping', server.ready || !server.live ? `nereid ${server.version}` : 'a model it loaded at start is not ready, or it is draining', 'server-state')}
        ${card('Uptime', duration(server.uptime_s), '', 'uptime')}
        ${card('CPU', state.cpuCores === undefined ? '–' : `${(state.cpuCores * 100).toFixed(0)} %`, 'of one core, this process', 'cpu')}
        ${card('Memory', bytes(server.rss_bytes), `heap ${bytes(server.heap_used_bytes)}`, 'memory')}
        ${card('Models', String(snapshot.models.length), `${snapshot.models.filter((m) => m.versions.some((v) => v.state === 'READY')).length} ready`, 'model-count')}`,
      );
      const rows = snapshot.models.flatMap((model) =>
        model.versions.map((version) => {
          const rates = latestRates(`${version.name}/${version.version}`);
          const link = version.stats ? html`<a href="#/model/${encodeURIComponent(version.name)}/${encodeURIComponent(version.version)}">${version.name}</a>` : html`${version.name}`;
          return html`<tr data-model="${version.name}" data-version="${version.version}">
            <td class="name">${link}${pipelineNote(snapshot, version)}</td><td data-label="Version">${version.version || '–'}${version.quantization ? html` <span class="quantized" data-testid="quantized" title="${version.quantization.description}, quantized from version ${version.quantization.from_version}: ${version.quantization.size_ratio.toFixed(2)}× its file">${quantizedLabel(version.quantization)}</span>` : ''}</td><td class="state">${stateBadge(version)}</td>
            <td class="num wide">${model.shadows?.some((s) => s.shadow_version === version.version) ? 'shadow' : version.traffic_share === undefined ? '' : percent(version.traffic_share)}</td>
            <td class="num" data-label="req/s">${version.stats ? number(rates?.requests_per_s) : ''}</td><td class="num wide">${version.stats ? number(rates?.inferences_per_s) : ''}</td>
            <td class="num wide">${version.stats ? number(version.stats.inference_stats.success.count, 0) : ''}</td>
            <td class="num${version.stats?.inference_stats.fail.count ? ' failing' : ''}" data-testid="failures" data-label="Failures">${version.stats ? number(version.stats.inference_stats.fail.count, 0) : ''}</td>
            <td data-testid="drift" data-label="Drift">${driftCell(version.monitor)}</td>
            <td class="wide">${version.residency ?? ''}${version.memory_bytes === undefined ? '' : ` · ${bytes(version.memory_bytes)}`}</td>
            <td class="reason" data-testid="reason">${version.reason ?? ''}</td></tr>`;
        }),
      );
      render(
        document.getElementById('models'),
        html`<table class="models"><thead><tr><th>Model</th><th>Version</th><th>State</th><th class="num wide">Traffic</th><th class="num">req/s</th><th class="num wide">inf/s</th><th class="num wide">Requests</th><th class="num" title="failed requests since load (req/s and Requests count those answered)">Failures</th><th title="the drift monitor's state and the share of the recent window flagged out of distribution (versions with a reference profile)">Drift</th><th class="wide">Residency</th><th>Reason</th></tr></thead><tbody>${rows}</tbody></table>`,
      );
    },
  };
}

function card(title, value, detail, id, level) {
  return html`<div class="card" data-testid="${id}" data-level="${level ?? ''}"><div class="card-title">${title}</div><div class="card-value">${value}</div><div class="card-detail">${detail}</div></div>`;
}

const CHARTS = [
  { id: 'throughput', title: 'Throughput', unit: '/s', series: ['requests/s', 'inferences/s', 'failures/s'], pick: (p) => [p.rates.requests_per_s, p.rates.inferences_per_s, p.rates.failures_per_s] },
  {
    id: 'latency',
    title: 'Request latency in the model (ms, log scale)',
    log: true,
    series: ['p50', 'p95', 'p99', 'mean'],
    pick: (p) => [p.rates.percentiles.request?.p50, p.rates.percentiles.request?.p95, p.rates.percentiles.request?.p99, p.rates.mean_ms.request],
  },
  { id: 'batch', title: 'Batch size (rows per execution)', series: ['mean', 'p95 (bucket)'], pick: (p) => [p.rates.mean_batch_size, p.rates.percentiles.batch_size?.p95] },
  { id: 'queue', title: 'Queue and in flight', series: ['queued', 'in flight'], decimals: 0, pick: (p) => [p.queued, p.inFlight] },
  { id: 'cache', title: 'Cache hit rate', unit: '%', decimals: 0, max: 100, series: ['hit rate'], pick: (p) => [p.rates.cache_hit_rate === undefined ? null : p.rates.cache_hit_rate * 100] },
];

/**
 * The phases of a request, each with the metrics histogram its percentiles come from and the
 * statistics field its mean and count come from (compute: the model run, compute_infer).
 */
const PHASES = [
  { id: 'queue', title: 'Queue', histogram: 'queue', field: 'queue' },
  { id: 'preprocess', title: 'Pre-process', histogram: 'preprocess', field: 'preprocess' },
  { id: 'compute', title: 'Compute', histogram: 'compute_infer', field: 'compute_infer' },
  { id: 'postprocess', title: 'Post-process', histogram: 'postprocess', field: 'postprocess' },
];
const PHASE_CHARTS = PHASES.map((phase) => ({
  id: `phase-${phase.id}`,
  phase,
  title: `${phase.title} (ms, log scale)`,
  log: true,
  height: 150,
  compact: true,
  series: ['p50', 'p95', 'p99', 'mean'],
  pick: (p) => {
    const percentiles = p.rates.percentiles[phase.histogram];
    return [percentiles?.p50, percentiles?.p95, percentiles?.p99, p.rates.mean_ms[phase.field]];
  },
}));

function modelPage(name, versionName) {
  const key = () => {
    const model = state.snapshot?.models.find((m) => m.name === name);
    const version = model?.versions.find((v) => (versionName ? v.version === versionName : v.stats));
    return version && `${name}/${version.version}`;
  };
  render(
    main,
    html`<h1 class="page-title"><a href="#/">Models</a> › <span data-testid="model-name">${name}</span> <span id="version-label"></span></h1>
    <section class="cards" id="model-cards"></section>
    <section class="charts">${CHARTS.map((chart) => html`<div class="chart panel" id="chart-${chart.id}"></div>`)}</section>
    <section class="panel phases"><h2>Latency by phase: p50, p95, p99 and mean</h2>
      <div class="phase-charts">${PHASE_CHARTS.map((chart) => html`<div class="chart" id="chart-${chart.id}" data-testid="${chart.id}"></div>`)}</div>
      <div class="table-wrap"><table class="narrow" id="phase-table" data-testid="phase-table"></table></div>
    </section>
    <section class="panel"><h2>Errors by code</h2><div id="errors"></div></section>
    <section class="panel" id="monitor-panel" hidden><h2>Drift and accuracy</h2><div id="monitor"></div></section>
    <section class="panel" id="shadow-panel" hidden><h2>Shadow agreement</h2><div id="shadows" class="table-wrap"></div></section>
    <p class="note">Rates and means are taken between successive statistics (one each update); percentiles from the metrics' histograms of the same interval (interpolated inside their buckets, as Prometheus's histogram_quantile does).</p>`,
  );
  const charts = [...CHARTS, ...PHASE_CHARTS].map((chart) => ({ ...chart, view: lineChart(document.getElementById(`chart-${chart.id}`), chart) }));
  return {
    name: 'model',
    leave() {
      charts.forEach((chart) => chart.view.destroy());
    },
    update(snapshot) {
      const shown = key();
      const model = snapshot.models.find((m) => m.name === name);
      const version = model?.versions.find((v) => `${v.name}/${v.version}` === shown);
      const quantized = version?.quantization ? ` · ${version.quantization.description} from version ${version.quantization.from_version} (${version.quantization.size_ratio.toFixed(2)}× its file)` : '';
      const steps = version?.steps ? ` · an ensemble of ${version.steps.join(', ')}` : '';
      document.getElementById('version-label').textContent = version ? `version ${version.version}${quantized}${steps}` : '';
      if (!version?.stats) {
        render(document.getElementById('model-cards'), html`<p class="reason">${version?.reason ?? `model '${name}' has no loaded version`}</p>`);
        return;
      }
      const stats = version.stats;
      const rates = latestRates(shown);
      const cost = stats.cost.usd_per_1000_inferences;
      const lookups = stats.inference_stats.cache_hit.count + stats.inference_stats.cache_miss.count;
      render(
        document.getElementById('model-cards'),
        html`${card('State', version.state, version.reason ?? '', 'model-state')}
        ${card('Requests', number(stats.inference_stats.success.count, 0), `${number(rates?.requests_per_s)} /s now`, 'requests')}
        ${card('Inferences', number(stats.inference_count, 0), `${number(rates?.inferences_per_s)} /s now`, 'inferences')}
        ${card('Executions', number(stats.execution_count, 0), meanBatchDetail(rates, stats), 'executions')}
        ${card('Failures', number(stats.inference_stats.fail.count, 0), '', 'failures')}
        ${card('Queue', number(version.queued, 0), `${number(version.in_flight, 0)} in flight`, 'queued')}
        ${card('Cache hits', lookups ? percent(stats.inference_stats.cache_hit.count / lookups) : '–', lookups ? `${lookups} lookups` : 'no response cache', 'cache')}
        ${costCard(cost)}
        ${version.memory_bytes === undefined ? '' : card('Memory', bytes(version.memory_bytes), version.residency ?? '', 'memory')}`,
      );
      // A model without a response cache has no hit rate to draw.
      document.getElementById('chart-cache').hidden = lookups === 0;
      // Nor a phase the model has not got (pre- and post-processing are declared per model).
      for (const chart of PHASE_CHARTS) document.getElementById(`chart-${chart.id}`).hidden = stats.inference_stats[chart.phase.field].count === 0;
      const points = state.history.get(shown) ?? [];
      const times = points.map((point) => point.at);
      for (const chart of charts) {
        const columns = chart.series.map((_, index) => points.map((point) => chart.pick(point)[index] ?? null));
        chart.view.update(times, columns);
      }
      showPhaseTable(points, stats, version.percentiles_since_load);
      const failures = Object.entries(version.failures ?? {});
      render(
        document.getElementById('errors'),
        failures.length
          ? html`<table class="narrow"><thead><tr><th>Code</th><th class="num">Since load</th><th class="num">Last update</th></tr></thead><tbody>${failures.map(
              ([code, count]) => html`<tr><td>${code}</td><td class="num">${count}</td><td class="num">${rates?.failures[code] ?? 0}</td></tr>`,
            )}</tbody></table>`
          : html`<p class="muted">No failed requests since load.</p>`,
      );
      showMonitor(version.monitor, version.confidence);
      showShadows(model.shadows);
    },
  };
}

/** The cost per 1,000 predictions, or per million where that is under a cent, so it reads as a price, not a long decimal. */
function costCard(cost) {
  if (cost === null) return card('Cost / 1,000', '–', 'set --cost-per-core-hour', 'cost');
  const perMillion = cost > 0 && cost < 0.01;
  return card(perMillion ? 'Cost / 1M' : 'Cost / 1,000', dollars(perMillion ? cost * 1000 : cost), 'predictions', 'cost');
}

/**
 * The mean batch of the last interval with executions; before the page has seen one, the mean since load. Both are the
 * rows executed per execution, from batch_stats: inference_count counts successful rows only, so a batch with a request
 * the model refused would pull it down.
 */
function meanBatchDetail(rates, stats) {
  if (rates?.mean_batch_size !== undefined && rates.mean_batch_size !== null) return `mean batch ${number(rates.mean_batch_size)}`;
  let executions = 0;
  let rows = 0;
  for (const batch of stats.batch_stats ?? []) {
    executions += batch.compute_infer.count;
    rows += batch.batch_size * batch.compute_infer.count;
  }
  return executions > 0 ? `mean batch ${number(rows / executions)} since load` : 'mean batch –';
}

/**
 * The latest percentiles of each phase, from the last interval that had requests through it: the
 * numbers the charts end on, for a reader who wants figures.
 */
function showPhaseTable(points, stats, sinceLoad) {
  // Counted from the latest update (--dashboard-interval-ms apart), which may be more or less than a second.
  const ago = (seconds) => (seconds <= 0 ? 'latest update' : seconds < 1 ? `${Math.round(seconds * 1000)} ms before the latest` : `${duration(seconds)} before the latest`);
  const latest = (pick) => {
    for (let index = points.length - 1; index >= 0; index -= 1) {
      const value = pick(points[index]);
      if (value !== undefined) return { value, at: points[index].at };
    }
    return undefined;
  };
  const rows = [{ id: 'request', title: 'Whole request', histogram: 'request', field: 'success' }, ...PHASES]
    .filter((phase) => stats.inference_stats[phase.field].count > 0)
    .map((phase) => {
      const found = latest((point) => point.rates.percentiles[phase.histogram]);
      // Opened after the traffic it is asked about, the page has no interval with requests: the percentiles since load stand
      // in, or for a phase without a histogram (compute input and output) the mean since load.
      const fromLoad = found ? undefined : sinceLoad?.[phase.histogram];
      const shown = found?.value ?? fromLoad;
      const ms = (value) => (value === undefined ? '–' : number(value, value < 1 ? 3 : 1));
      const counted = stats.inference_stats[phase.field];
      const measured = found ? ago(points.at(-1).at - found.at) : fromLoad ? 'since load' : `mean ${ms(Number(counted.ns) / counted.count / 1e6)} since load`;
      return html`<tr data-phase="${phase.id}"><td>${phase.title}</td><td class="num" data-q="p50">${ms(shown?.p50)}</td><td class="num" data-q="p95">${ms(shown?.p95)}</td><td class="num" data-q="p99">${ms(shown?.p99)}</td><td class="num muted" data-q="measured">${measured}</td></tr>`;
    });
  render(
    document.getElementById('phase-table'),
    html`<thead><tr><th>Phase</th><th class="num">p50 ms</th><th class="num">p95 ms</th><th class="num">p99 ms</th><th class="num">measured</th></tr></thead><tbody>${rows}</tbody>`,
  );
}

/** Columns of counts, each with its label under it and its count on hover. */
function columns(title, entries, id) {
  const most = Math.max(1, ...entries.map(([, count]) => count));
  return html`<figure class="columns-figure" data-testid="${id}"><figcaption>${title}</figcaption><div class="columns">${entries.map(
    ([label, count]) => html`<div class="column" title="${label}: ${count}"><span style="height:calc((100% - 1.1rem) * ${(count / most).toFixed(3)})"></span><small>${label}</small></div>`,
  )}</div></figure>`;
}

function showMonitor(monitor, confidence) {
  const panel = document.getElementById('monitor-panel');
  panel.hidden = !monitor;
  if (!monitor) return;
  const features = monitor.top_features ?? [];
  const confidenceColumns = confidence
    ? confidence.le.map((bound, index) => [`≤${bound}`, confidence.cumulative[index] - (index ? confidence.cumulative[index - 1] : 0)])
    : [];
  const classColumns = Object.entries(monitor.class_counts ?? {});
  render(
    document.getElementById('monitor'),
    html`<div class="cards">
      ${card('Drift', monitor.monitored ? monitor.state.replace('_', ' ') : 'not monitored', monitor.monitored ? driftDetail(monitor) : monitor.reason, 'drift', monitor.state)}
      ${monitor.ood ? card('Out of distribution', percent(monitor.ood.share), `expected ${percent(monitor.ood.expected_share)}`, 'ood') : ''}
      ${monitor.accuracy ? estimatedAccuracyCard(monitor.accuracy) : ''}
      ${monitor.accuracy?.labelled > 0 ? labelledAccuracyCard(monitor.accuracy) : ''}
    </div>
    <div class="histograms">
      ${confidenceColumns.length ? columns(`Top-1 confidence of ${confidence.count} predictions since load`, confidenceColumns, 'confidence-histogram') : ''}
      ${classColumns.length ? columns('Predicted classes in the recent window', classColumns, 'class-histogram') : ''}
    </div>
    ${features.length ? html`<table class="narrow"><thead><tr><th>Top drifting feature</th><th class="num">PSI</th><th class="num" title="the PSI a window this size drawn from the reference scores by chance, taken off: what the level is judged on">beyond chance</th><th>Level</th></tr></thead><tbody>${features.map((f) => html`<tr><td>${f.feature}</td><td class="num">${number(f.psi, 3)}</td><td class="num">${number(Math.max(0, f.psi - (f.chance_psi ?? 0)), 3)}</td><td><span class="level" data-level="${f.level}">${f.level}</span></td></tr>`)}</tbody></table>` : ''}`,
  );
}

/**
 * The score of the window now, and, where it differs, the score of the evaluation the state is from: the state moves
 * only on evaluations every few rows, with hysteresis, so "warning · score 0.277" beside a drift threshold of 0.25
 * read as a contradiction when nothing said the state was from an evaluation at 0.19.
 */
function driftDetail(monitor) {
  const now = `score ${number(monitor.drift_score, 3)} now · ${monitor.window.rows} rows`;
  const evaluated = monitor.state_evaluation;
  if (!evaluated?.at || number(evaluated.drift_score, 3) === number(monitor.drift_score, 3)) return now;
  const at = new Date(evaluated.at).toLocaleTimeString();
  return `${now} · the state is from the evaluation at ${at}${evaluated.drift_score === undefined ? ' (too few rows to score)' : ` (score ${number(evaluated.drift_score, 3)})`}`;
}

/**
 * The accuracy expected from calibrated confidence; with the state other than ok it may be far from the truth (inverted
 * images: 75 % expected, 33 % realised), so it is shown as the caution the server gives rather than as a figure to trust.
 */
function estimatedAccuracyCard(accuracy) {
  const detail = accuracy.caution ?? `from calibrated confidence, ${number(accuracy.predictions, 0)} rows`;
  return card('Accuracy (estimated)', percent(accuracy.expected), detail, 'accuracy', accuracy.caution ? 'doubtful' : undefined);
}

/**
 * The realised accuracy beside the estimate over the same rows: labels come back for some rows only
 * (often the easy ones), so the window's estimate would set a realised figure against other rows.
 */
function labelledAccuracyCard(accuracy) {
  return card('Accuracy on labelled rows', percent(accuracy.realised), `realised on ${number(accuracy.labelled, 0)} labelled rows; estimated ${percent(accuracy.expected_on_labelled)} on them`, 'labelled-accuracy');
}

/** 'int8 ← v1' or 'fp16 ← v1': what a quantized version is and where it came from, short enough for the version column. */
/**
 * Where a model stands in the pipelines: an ensemble's steps, or the ensembles a model is a step of, so that the
 * steps' traffic (counted in their own rows as well) is read as the pipeline's.
 */
function pipelineNote(snapshot, version) {
  if (version.steps) return html`<div class="pipeline" data-testid="pipeline">steps: ${version.steps.join(', ')}</div>`;
  const ensembles = [...new Set(snapshot.models.flatMap((model) => model.versions.filter((v) => v.steps?.includes(version.name)).map((v) => v.name)))];
  return ensembles.length > 0 ? html`<div class="pipeline" data-testid="pipeline">step of ${ensembles.join(', ')}</div>` : '';
}

function quantizedLabel(quantization) {
  return `${quantization.method === 'fp16' ? 'fp16' : 'int8'} ← v${quantization.from_version}`;
}

function showShadows(shadows) {
  const panel = document.getElementById('shadow-panel');
  panel.hidden = !shadows?.length;
  if (!shadows?.length) return;
  render(
    document.getElementById('shadows'),
    html`<table class="narrow"><thead><tr><th>Primary → shadow</th><th class="num">Compared</th><th class="num">Top-1 agreement</th><th class="num">Mean |Δ|</th><th class="num" title="each version's mean answer time over the copies compared: the speed a quantized shadow is meant to buy">Mean ms (primary / shadow)</th><th class="num">Failed</th></tr></thead><tbody>${shadows.map(
      (s) => html`<tr><td>v${s.primary_version} → v${s.shadow_version}</td><td class="num">${s.compared}</td><td class="num">${percent(s.top1_agreement)}</td><td class="num">${number(s.mean_abs_delta, 4)}</td><td class="num" data-testid="shadow-ms">${number(s.primary_mean_ms, 2)} / ${number(s.shadow_mean_ms, 2)}</td><td class="num">${s.failed}</td></tr>`,
    )}</tbody></table>`,
  );
}

// ---------------------------------------------------------------------------------------------
// Try it: an image to /classify (labels), /detect (boxes and labels) or an OCR model's /infer
// (boxes and text), or a V2 JSON request to /infer.

async function configOf(name) {
  if (!state.configs.has(name)) {
    const response = await call(`${ROOT}v2/models/${encodeURIComponent(name)}/config`);
    state.configs.set(name, response.ok ? await response.json() : undefined);
  }
  return state.configs.get(name);
}

/** The model's metadata (its inputs and outputs as requests carry them), read afresh: a reload may change them. */
async function metadataOf(name) {
  const response = await call(`${ROOT}v2/models/${encodeURIComponent(name)}`);
  return response.ok ? response.json() : undefined;
}

/** The defaults an operation of the OpenAPI document declares for its query parameters, by name. */
const queryDefaults = (operation) =>
  Object.fromEntries((operation?.parameters ?? []).filter((parameter) => parameter.in === 'query' && parameter.schema?.default !== undefined).map((parameter) => [parameter.name, parameter.schema.default]));

/**
 * The routes for images this server has, from its OpenAPI document (made from its registered routes), and the
 * defaults of /detect's options there (the server's own), where the detection controls start.
 */
let imageRoutes;
async function imageRoutesOf() {
  imageRoutes ??= fetch(`${ROOT}openapi.json`)
    .then((response) => (response.ok ? response.json() : { paths: {} }))
    .then((document) => ({
      classify: Boolean(document.paths?.['/v2/models/{model}/classify']),
      detect: Boolean(document.paths?.['/v2/models/{model}/detect']),
      detectDefaults: queryDefaults(document.paths?.['/v2/models/{model}/detect']?.post),
    }))
    .catch(() => ({ classify: true, detect: false }));
  return imageRoutes;
}

const IMAGE_MODES = {
  classify: { label: 'labels (/classify)', hint: (model) => `send a photo and get its labels back (POST /v2/models/${model}/classify)` },
  detect: { label: 'boxes and labels (/detect)', hint: (model) => `send a photo and get the objects found in it, boxed (POST /v2/models/${model}/detect)` },
  text: { label: 'boxes and text (/infer)', hint: (model) => `send an image and get its lines of text, boxed (POST /v2/models/${model}/infer, the image as its BYTES input)` },
};

/** The detection controls' slider ids by /detect's query parameter; each shows its value beside it in `<id>-value`. */
const DETECT_SLIDERS = { threshold: 'try-threshold', iou_threshold: 'try-iou' };

/** Sets the detection controls (threshold, iou_threshold, max_detections; each where given). */
function setDetectOptions(defaults) {
  for (const [parameter, id] of Object.entries(DETECT_SLIDERS)) {
    if (defaults[parameter] === undefined) continue;
    document.getElementById(id).value = String(defaults[parameter]);
    document.getElementById(`${id}-value`).textContent = Number(defaults[parameter]).toFixed(2);
  }
  if (defaults.max_detections !== undefined) document.getElementById('try-max-detections').value = String(defaults.max_detections);
}

/** The detection options the controls are set to, as /detect's query takes them. */
function detectOptions() {
  const value = (id) => Number(document.getElementById(id).value);
  return { threshold: value('try-threshold'), iou_threshold: value('try-iou'), max_detections: value('try-max-detections') };
}

/** Why a model has no version ready, in the server's words (the repository index's reasons), for the try-it panel. */
function notReadyReason(snapshot, name) {
  const model = snapshot.models.find((candidate) => candidate.name === name);
  if (!model) return `the server has no model named '${name}' (the overview lists those it has)`;
  const reasons = model.versions.map((version) => version.reason || `version ${version.version || '?'} is ${(version.state ?? 'not loaded').toLowerCase()}`);
  return [...new Set(reasons)].join('; ') || 'it has no version loaded';
}

function tryPage(chosen) {
  render(
    main,
    html`<h1 class="page-title">Try a model</h1>
    <section class="panel try">
      <label>Model <select id="try-model" data-testid="try-model"></select></label>
      <div class="alert" role="alert" id="try-unavailable" data-testid="try-unavailable" hidden></div>
      <div class="tabs"><button type="button" data-tab="image" class="current">Image</button><button type="button" data-tab="json">V2 JSON</button></div>
      <div data-pane="image">
        <label class="mode">Answer <select id="try-mode" data-testid="try-mode"></select></label>
        <p class="muted" id="image-hint"></p>
        <div class="detect-options" id="detect-options" data-testid="detect-options" hidden>
          <label>Score threshold <input type="range" id="try-threshold" data-testid="try-threshold" min="0" max="1" step="0.01"> <output id="try-threshold-value" for="try-threshold"></output></label>
          <label title="two boxes of one class that overlap more than this (intersection over union) are taken as one object">Merge overlap above <input type="range" id="try-iou" data-testid="try-iou" min="0" max="1" step="0.05"> <output id="try-iou-value" for="try-iou"></output> IoU</label>
          <label>At most <input type="number" id="try-max-detections" data-testid="try-max-detections" min="1" max="1000" step="1"> boxes</label>
        </div>
        <label class="drop" id="drop">
          <input type="file" accept="image/*" id="try-file" data-testid="try-file" disabled>
          <span>Drop an image here, or pick one</span>
        </label>
      </div>
      <div data-pane="json" hidden>
        <p class="note" id="try-json-note" data-testid="try-json-note" hidden></p>
        <textarea id="try-json" rows="10" spellcheck="false" placeholder='{"inputs": [{"name": "INPUT0", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}]}'></textarea>
        <button type="button" id="try-send">Send to /infer</button>
      </div>
    </section>
    <section class="panel" id="try-result" hidden>
      <div class="result">
        <figure class="preview" id="try-figure"><img id="try-preview" alt="the image sent"><svg id="try-overlay" data-testid="try-overlay" aria-hidden="true"></svg></figure>
        <div id="try-answer" data-testid="try-answer"></div>
      </div>
    </section>`,
  );
  const select = document.getElementById('try-model');
  const modeSelect = document.getElementById('try-mode');
  const sendButton = document.getElementById('try-send');
  // The models offered follow the repository index of each snapshot, as the overview does: a model
  // loaded after the page opened is added, one unloaded goes (the choice moves to the first left).
  // The model the address names (#/try/<name>) is not swapped for another while it is not ready: the
  // person would be trying a model they did not ask for. It stays chosen, with why it cannot be tried,
  // until it is ready or they pick another.
  let named = chosen;
  let listed;
  let detectionSet = false;
  const fill = (snapshot) => {
    const ready = snapshot.models.filter((model) => model.versions.some((version) => version.state === 'READY')).map((model) => model.name);
    const missing = named && !ready.includes(named) ? named : undefined;
    const why = missing ? notReadyReason(snapshot, missing) : '';
    const key = [...ready, missing ?? '', why].join('\n');
    if (key === listed) return;
    const first = listed === undefined;
    listed = key;
    // A model unloaded may come back with another config.
    for (const name of state.configs.keys()) if (!ready.includes(name)) state.configs.delete(name);
    const previous = select.value;
    const wasMissing = select.selectedOptions[0]?.dataset.unavailable !== undefined;
    const options = [
      ...(missing ? [html`<option value="${missing}" data-unavailable="${why}" disabled>${missing} (not available)</option>`] : []),
      ...ready.map((name) => html`<option value="${name}">${name}</option>`),
    ];
    render(select, options.length ? html`${options}` : html`<option value="">no model is ready</option>`);
    select.disabled = ready.length === 0;
    const wanted = first ? chosen : previous;
    if (wanted && (ready.includes(wanted) || wanted === missing)) select.value = wanted;
    if (select.value !== previous || first || wasMissing || missing) void describe();
    // Once ready it is a model like the others: unloaded later, the choice moves to the first left.
    if (!missing) named = undefined;
  };
  const showHint = () => {
    const mode = IMAGE_MODES[modeSelect.value];
    document.getElementById('image-hint').textContent = mode ? `${select.value}: ${mode.hint(select.value)}.` : `${select.value} takes tensors, not images: use the V2 JSON tab.`;
    document.getElementById('try-file').disabled = !mode;
    document.getElementById('detect-options').hidden = modeSelect.value !== 'detect';
  };
  const describe = async () => {
    const model = select.value;
    const unavailable = select.selectedOptions[0]?.dataset.unavailable;
    const alert = document.getElementById('try-unavailable');
    alert.hidden = unavailable === undefined;
    sendButton.disabled = !model || unavailable !== undefined;
    if (!model || unavailable !== undefined) {
      render(modeSelect, html``);
      document.getElementById('image-hint').textContent = model ? `Nothing is sent to ${model} until it is ready; pick another model to try that one.` : 'No model is ready: load one, and it appears here.';
      document.getElementById('try-file').disabled = true;
      document.getElementById('try-json').value = '';
      document.getElementById('try-json-note').hidden = true;
      if (unavailable !== undefined) render(alert, html`<strong>${model} is not available:</strong> ${unavailable}`);
      return;
    }
    // The inputs as the server takes them on the wire (its metadata), not as the model runs them (its config).
    const [config, metadata, routes] = await Promise.all([configOf(model), metadataOf(model), imageRoutesOf()]);
    if (select.value !== model) return; // another model was chosen (or this one went) meanwhile
    const versions = state.snapshot?.models.find((model) => model.name === select.value)?.versions ?? [];
    const imageRoutes = versions.find((version) => version.image_routes)?.image_routes;
    const mode = imageModeOf(metadata, imageRoutes, routes);
    // Every route the server has stays pickable: a person may know better.
    const offered = Object.keys(IMAGE_MODES).filter((name) => name === 'text' || routes[name]);
    render(modeSelect, html`${offered.map((name) => html`<option value="${name}">${IMAGE_MODES[name].label}</option>`)}<option value="">none: tensors only</option>`);
    modeSelect.value = mode ?? '';
    if (!detectionSet) {
      // Once per page: a value the person chose stays when they try another detector.
      detectionSet = true;
      setDetectOptions(routes.detectDefaults ?? {});
    }
    showHint();
    const { request, notes } = requestTemplate(metadata, config);
    document.getElementById('try-json').value = metadata ? `{\n  "inputs": [\n${request.inputs.map((input) => `    ${JSON.stringify(input)}`).join(',\n')}\n  ]\n}` : '';
    const note = document.getElementById('try-json-note');
    note.textContent = notes.join('; ');
    note.hidden = notes.length === 0;
  };
  select.addEventListener('change', () => {
    if (select.value !== named) named = undefined;
    void describe();
  });
  modeSelect.addEventListener('change', showHint);
  main.querySelectorAll('[data-tab]').forEach((tab) =>
    tab.addEventListener('click', () => {
      main.querySelectorAll('[data-tab]').forEach((other) => other.classList.toggle('current', other === tab));
      main.querySelectorAll('[data-pane]').forEach((pane) => (pane.hidden = pane.dataset.pane !== tab.dataset.tab));
    }),
  );
  const file = document.getElementById('try-file');
  const drop = document.getElementById('drop');
  // The image last sent, so that a new threshold or count asks the detector again for the same one.
  let lastImage;
  const send = (image) => {
    lastImage = image;
    void sendImage(select.value, modeSelect.value, image, detectOptions());
  };
  file.addEventListener('change', () => file.files[0] && send(file.files[0]));
  const sliders = Object.values(DETECT_SLIDERS).map((id) => document.getElementById(id));
  for (const slider of sliders) slider.addEventListener('input', () => (document.getElementById(`${slider.id}-value`).textContent = Number(slider.value).toFixed(2)));
  for (const option of [...sliders, document.getElementById('try-max-detections')]) {
    option.addEventListener('change', () => lastImage && modeSelect.value === 'detect' && option.checkValidity() && send(lastImage));
  }
  drop.addEventListener('dragover', (event) => event.preventDefault());
  drop.addEventListener('drop', (event) => {
    event.preventDefault();
    const dropped = event.dataTransfer?.files[0];
    if (dropped) send(dropped);
  });
  sendButton.addEventListener('click', () => void infer(select.value, document.getElementById('try-json').value));
  return { name: 'try', leave() {}, update: fill };
}

/**
 * A V2 request carrying one encoded image as the BYTES input of `config` (Triton's binary tensor
 * data: the JSON header, then the element's 4-byte little-endian length and its bytes), asking for
 * every output as JSON.
 */
async function binaryImageRequest(config, image) {
  const input = config?.input?.find((candidate) => candidate.data_type === 'TYPE_STRING') ?? config?.input?.[0];
  if (!input) throw new Error('the model declares no input to send the image to');
  const bytes = new Uint8Array(await image.arrayBuffer());
  const shape = [...(config.max_batch_size > 0 ? [1] : []), ...input.dims.map((d) => (d < 0 ? 1 : d))];
  const header = new TextEncoder().encode(
    JSON.stringify({
      inputs: [{ name: input.name, datatype: 'BYTES', shape, parameters: { binary_data_size: bytes.length + 4 } }],
      outputs: (config.output ?? []).map((output) => ({ name: output.name, parameters: { binary_data: false } })),
    }),
  );
  const body = new Uint8Array(header.length + 4 + bytes.length);
  body.set(header, 0);
  new DataView(body.buffer).setUint32(header.length, bytes.length, true);
  body.set(bytes, header.length + 4);
  return { body, headers: { 'content-type': 'application/octet-stream', 'inference-header-content-length': String(header.length) } };
}

/**
 * The try-it panel's latest request: an answer to an earlier one (a slow model's, sent before the
 * person chose another image or model) is not shown over the answer to the request that replaced it.
 */
let tryRequests = 0;
/** Starts a try-it request: the previous answer goes, a "sending" note stands until this one's answer. */
function startTry() {
  document.getElementById('try-result').hidden = false;
  render(document.getElementById('try-answer'), html`<p class="muted" data-testid="try-sending">Sending…</p>`);
  const request = ++tryRequests;
  return () => request !== tryRequests;
}

/** The server's refusals of a file's bytes as an image (the format, a truncated or empty file), as opposed to its limits or the model's. */
const UNREADABLE_IMAGE = /not an image|truncated or corrupt|image is empty/i;

async function sendImage(model, mode, image, detection) {
  if (!IMAGE_MODES[mode]) return;
  const replaced = startTry();
  const preview = document.getElementById('try-preview');
  const figure = document.getElementById('try-figure');
  const overlay = document.getElementById('try-overlay');
  overlay.replaceChildren();
  figure.hidden = false;
  // Boxes need the image large enough to read; labels alone do with a thumbnail.
  figure.classList.toggle('large', mode !== 'classify');
  // A file the browser cannot decode (corrupt, or in a format it lacks) would show as a broken-image
  // icon with its alt text over the preview's black: the figure goes, and the answer says what is wrong.
  const displayed = new Promise((resolve) => {
    preview.onload = () => resolve(true);
    preview.onerror = () => {
      figure.hidden = true;
      resolve(false);
    };
  });
  if (preview.src.startsWith('blob:')) URL.revokeObjectURL(preview.src);
  preview.src = URL.createObjectURL(image);
  const started = performance.now();
  let response;
  try {
    const path = `${ROOT}v2/models/${encodeURIComponent(model)}`;
    if (mode === 'text') response = await call(`${path}/infer`, { method: 'POST', ...(await binaryImageRequest(await configOf(model), image)) });
    // The server tells the format by the bytes. The browser's type is a guess from the file's name (text/plain for a
    // scan saved as .txt), which the server would refuse before looking at the bytes.
    else {
      const query = mode === 'classify' ? 'top_k=5' : new URLSearchParams(Object.entries(detection).map(([name, value]) => [name, String(value)])).toString();
      response = await call(`${path}/${mode}?${query}`, { method: 'POST', headers: { 'content-type': 'application/octet-stream' }, body: image });
    }
  } catch (error) {
    if (replaced()) return;
    document.getElementById('try-result').hidden = false;
    return render(document.getElementById('try-answer'), html`<p class="error">${error.message}</p>`);
  }
  const text = await response.text();
  if (replaced()) return;
  const elapsed = performance.now() - started;
  let answer;
  try {
    answer = JSON.parse(text);
  } catch {
    answer = { error: text };
  }
  document.getElementById('try-result').hidden = false;
  const target = document.getElementById('try-answer');
  if (!response.ok) {
    const name = image.name || 'this file';
    const verdict = response.status >= 500 ? `The server failed on ${name} (${response.status}):` : UNREADABLE_IMAGE.test(answer.error) ? `${name} is not an image the server can read:` : `The server refused ${name} (${response.status}):`;
    return render(target, html`<div class="alert" role="alert" data-testid="try-error"><strong>${verdict}</strong> ${answer.error}</div>`);
  }
  await displayed;
  if (replaced()) return;
  // A small image shown large keeps its pixels sharp, as the classifier's thumbnail does.
  preview.classList.toggle('pixels', preview.naturalWidth < 200);
  showAnswer(target, overlay, model, answer, { width: answer.image?.width ?? preview.naturalWidth, height: answer.image?.height ?? preview.naturalHeight }, elapsed, detection);
}

/**
 * The answer's out-of-distribution verdict (a model with a reference profile gives one per image). A
 * classifier names one of its classes whatever it is shown, often with high confidence: the verdict
 * is what tells a person that a logo called "Bag 99 %" is no bag, so it stands above the labels.
 */
function oodVerdict(ood) {
  if (!ood) return '';
  const figures = `OOD score ${number(ood.score)}, ${ood.out_of_distribution ? 'above' : 'under'} the threshold ${number(ood.threshold)}`;
  if (ood.out_of_distribution) {
    return html`<div class="alert" role="alert" data-testid="ood-warning"><strong>Out of distribution:</strong> this image is unlike the model's training data; the label is not to be trusted. <span class="note" data-testid="ood-score">${figures}.</span></div>`;
  }
  return html`<p class="note" data-testid="ood-score">Like the training data (${figures}).</p>`;
}

/**
 * Where the server says the answer's time went (see phaseTimings): /classify's and /detect's phases, or the OCR
 * pipeline's steps. The round trip beside them is the browser's, which adds the upload and the network.
 */
function timingsTable(answer) {
  const rows = phaseTimings(answer);
  if (!rows) return '';
  return html`<table class="timings" data-testid="timings"><tbody>${rows.map(
    ([phase, ms]) => html`<tr><td>${phase}</td><td class="num">${ms.toFixed(2)} ms</td></tr>`,
  )}</tbody></table>`;
}

/** Draws an answer by its shape: detections (boxes and labels), OCR outputs (boxes and text) or predictions (labels). */
function showAnswer(target, overlay, model, answer, size, elapsed, detection) {
  const kind = answerKind(answer);
  const title = html`<h2>${model} v${answer.model_version}</h2>`;
  if (kind === 'detections' || kind === 'text') {
    const shapes = kind === 'detections' ? detectionShapes(answer) : textShapes(answer);
    drawShapes(overlay, shapes, size, { numbered: kind === 'text' });
    const threshold = kind === 'detections' && detection ? ` · score ≥ ${detection.threshold.toFixed(2)}, merged above ${detection.iou_threshold.toFixed(2)} IoU, at most ${detection.max_detections}` : '';
    return render(
      target,
      html`${title}
      <p class="muted" data-testid="try-summary">${shapes.length} ${kind === 'detections' ? 'object(s)' : 'line(s) of text'}${threshold} · ${elapsed.toFixed(1)} ms (round trip)</p>
      <ol class="labels ${kind}">${shapes.map(
        (shape) => html`<li data-testid="${kind === 'detections' ? 'detection' : 'text-line'}"><span class="label-name">${shape.label}</span><span class="bar"><span style="width:${((shape.score ?? 0) * 100).toFixed(1)}%"></span></span><span class="num" data-testid="confidence">${percent(shape.score)}</span></li>`,
      )}</ol>
      ${shapes.length === 0 ? html`<p class="muted">Nothing found${kind === 'detections' ? ' above the threshold: lower it to see weaker detections' : ''}.</p>` : ''}
      ${timingsTable(answer)}`,
    );
  }
  if (kind === 'predictions') {
    const untrusted = answer.ood?.out_of_distribution === true;
    return render(
      target,
      html`${title}
      ${oodVerdict(answer.ood)}
      <ol class="labels${untrusted ? ' untrusted' : ''}">${answer.predictions.map(
        (p) => html`<li data-testid="label"><span class="label-name">${p.label}</span><span class="bar"><span style="width:${(p.score * 100).toFixed(1)}%"></span></span><span class="num" data-testid="confidence">${percent(p.score)}</span></li>`,
      )}</ol>
      ${answer.confidence?.low_confidence ? html`<p class="warn">Low confidence: the model is unsure of this one.</p>` : ''}
      ${timingsTable(answer)}`,
    );
  }
  render(target, html`${title}`);
  showJson(target, model, answer, JSON.stringify(answer));
}

/** The most characters of an answer "Show all" lays out in the page; a larger one is for downloading (laying out 8 MB took 13 s). */
const SHOW_ALL_LIMIT = 2_000_000;
let answerDownload;

/**
 * Appends a JSON answer (or a text that is not JSON) to `target`, compact and cut (see compactJson); when something
 * was cut, the whole answer can be shown (up to SHOW_ALL_LIMIT characters) or downloaded. A text that is not JSON (a
 * proxy's HTML error page, a binary answer) is shown as it came, up to SHOW_ALL_LIMIT characters, and says so: the
 * note on arrays and strings cut would be wrong of it.
 */
function showJson(target, model, answer, text) {
  const pre = document.createElement('pre');
  pre.dataset.testid = 'try-json-answer';
  const parsed = answer !== undefined;
  const shown = parsed ? compactJson(answer) : { text: text.length > SHOW_ALL_LIMIT ? `${text.slice(0, SHOW_ALL_LIMIT)} … ${(text.length - SHOW_ALL_LIMIT).toLocaleString('en')} more characters` : text, truncated: text.length > SHOW_ALL_LIMIT };
  pre.textContent = shown.text;
  if (!parsed) {
    const note = document.createElement('p');
    note.className = 'note';
    note.dataset.testid = 'try-json-not-json';
    note.textContent = 'The answer is not JSON: it is shown as the server sent it.';
    target.append(note);
  }
  target.append(pre);
  if (!shown.truncated) return;
  const blob = new Blob([text], { type: parsed ? 'application/json' : 'text/plain' });
  if (answerDownload) URL.revokeObjectURL(answerDownload);
  answerDownload = URL.createObjectURL(blob);
  const size = `${(blob.size / 1e6).toFixed(1)} MB in all`;
  const tools = document.createElement('p');
  tools.className = 'note';
  tools.dataset.testid = 'try-json-cut';
  render(
    tools,
    html`${parsed ? `Arrays are cut to their first ${SHOWN_ITEMS} values and strings to their start (${size}).` : `Only its first ${SHOW_ALL_LIMIT.toLocaleString('en')} characters are shown (${size}).`}
      ${parsed && text.length <= SHOW_ALL_LIMIT ? html`<button type="button" data-testid="try-json-all">Show all</button>` : ''}
      <a href="${answerDownload}" download="${model}-answer.${parsed ? 'json' : 'txt'}" data-testid="try-json-download">Download the whole answer</a>`,
  );
  tools.querySelector('button')?.addEventListener('click', () => {
    pre.textContent = compactJson(answer, { maxItems: Infinity, maxCharacters: Infinity }).text;
    tools.remove();
  });
  target.append(tools);
}

async function infer(model, body) {
  const replaced = startTry();
  const started = performance.now();
  let response;
  let text;
  try {
    response = await call(`${ROOT}v2/models/${encodeURIComponent(model)}/infer`, { method: 'POST', headers: { 'content-type': 'application/json' }, body });
    text = await response.text();
  } catch (error) {
    if (replaced()) return;
    document.getElementById('try-figure').hidden = true;
    return render(document.getElementById('try-answer'), html`<p class="error" data-testid="try-error">${error.message}</p>`);
  }
  if (replaced()) return;
  const elapsed = performance.now() - started;
  document.getElementById('try-result').hidden = false;
  document.getElementById('try-figure').hidden = true;
  let answer;
  try {
    answer = JSON.parse(text);
  } catch {
    // not JSON: shown as it came
  }
  const target = document.getElementById('try-answer');
  render(target, html`<p class="${response.ok ? 'muted' : 'error'}">${response.status} in ${elapsed.toFixed(1)} ms (round trip)</p>`);
  showJson(target, model, answer, text);
}

// ---------------------------------------------------------------------------------------------
// Batch jobs: the jobs of the Redis queue the server follows (--jobs-queue), read every few seconds.

const JOBS_POLL_MS = 3000;

function jobsPage() {
  render(main, html`<h1 class="page-title">Batch jobs</h1><div id="jobs" data-testid="jobs"><p class="muted">Reading the queue…</p></div>`);
  let timer;
  let left = false;
  const poll = async () => {
    try {
      const response = await call(`${API}jobs`);
      const answer = await response.json();
      if (left) return;
      const target = document.getElementById('jobs');
      if (!response.ok) render(target, html`<p class="error" data-testid="jobs-error">${response.status}: ${answer.error}</p>`);
      else if (!answer.configured) render(target, html`<section class="panel"><p data-testid="jobs-hint">${answer.hint}</p></section>`);
      else showJobs(target, answer);
    } catch (error) {
      console.warn('dashboard jobs', error);
    }
    if (!left) timer = setTimeout(poll, JOBS_POLL_MS);
  };
  void poll();
  return {
    name: 'jobs',
    leave() {
      left = true;
      clearTimeout(timer);
    },
    update() {},
  };
}

function showJobs(target, answer) {
  const read = new Date().toLocaleTimeString();
  render(
    target,
    html`<p class="muted">Queue <strong>${answer.queue_name}</strong> at ${answer.queue} · read at ${read}, every ${JOBS_POLL_MS / 1000} s</p>
    ${answer.jobs.length === 0 ? html`<section class="panel"><p class="muted">No jobs on this queue yet: <code>nereid batch --queue ${answer.queue} …</code> submits one.</p></section>` : ''}
    ${answer.jobs.map((job) => {
      const states = job.chunkStates;
      const done = job.records > 0 ? job.recordsWritten / job.records : 0;
      // Written whole (every record, with its answer or its error), being worked on, waiting for a worker, or neither: its submitter stopped.
      const finished = job.recordsWritten >= job.records;
      // Cancelled (nereid batch cancel): the chunks workers held when it came may still be running.
      const status = finished ? (job.recordsFailed >= job.records ? 'failed' : 'done') : job.cancelledAt ? (states.active > 0 ? 'cancelling' : 'cancelled') : states.active > 0 ? 'running' : states.waiting + states.delayed > 0 ? 'waiting' : 'stopped';
      const badge = { done: job.recordsFailed > 0 ? 'caution' : 'ok', failed: 'bad', stopped: 'bad', cancelled: 'caution', cancelling: 'caution', running: 'idle', waiting: 'idle' }[status];
      return html`<section class="panel job" data-job="${job.job}">
        <h2>${job.job} <span class="badge ${badge}" data-testid="job-status">${status}</span></h2>
        <p class="muted">model <strong>${job.model}</strong> · ${number(job.records, 0)} records in ${number(job.chunks, 0)} chunk(s) of ${job.chunkSize}${job.submittedAt ? ` · submitted ${new Date(job.submittedAt).toLocaleString()}` : ''}</p>
        <div class="progress" title="${percent(done)} written, ${number(job.recordsFailed, 0)} with errors"><span style="width:${(Math.max(0, job.recordsWritten - job.recordsFailed) / Math.max(1, job.records) * 100).toFixed(1)}%"></span><span class="failed" style="width:${(job.recordsFailed / Math.max(1, job.records) * 100).toFixed(1)}%"></span></div>
        <div class="cards">
          ${card('Written', `${number(job.recordsWritten, 0)} / ${number(job.records, 0)}`, percent(done), 'job-written')}
          ${card('With errors', number(job.recordsFailed, 0), 'records written with their error', 'job-failed', job.recordsFailed > 0 ? 'warning' : '')}
          ${card('Chunks', `${states.completed} done`, `${states.active} active · ${states.waiting} waiting · ${states.delayed} retrying`, 'job-chunks')}
          ${card('Failed chunks', String(states.failed), states.failed ? 'after all their attempts' : 'none', 'job-failed-chunks', states.failed > 0 ? 'drift' : '')}
        </div>
        ${job.activeChunks.length ? html`<table class="narrow"><thead><tr><th>Active chunk</th><th>Worker</th><th class="num">Attempt</th></tr></thead><tbody>${job.activeChunks.map((chunk) => html`<tr><td>${chunk.chunk}</td><td>${chunk.worker ?? '?'}</td><td class="num">${chunk.attempt}</td></tr>`)}</tbody></table>` : ''}
        ${job.failedChunks.length ? html`<div class="table-wrap"><table data-testid="failed-chunks"><thead><tr><th>Failed chunk</th><th class="num">Attempts</th><th>Last error</th></tr></thead><tbody>${job.failedChunks.map((chunk) => html`<tr><td>${chunk.chunk}</td><td class="num">${chunk.attempts}</td><td class="reason">${chunk.reason}</td></tr>`)}</tbody></table></div>` : ''}
        <p class="note">input ${job.input} → output ${job.output}${job.updatedAt ? ` · updated ${new Date(job.updatedAt).toLocaleTimeString()}` : ''}</p>
      </section>`;
    })}`,
  );
}

window.addEventListener('hashchange', route);
route();
void liveUpdates();
