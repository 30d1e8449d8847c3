/**
 * livewidget.js: the browser client of livewidget (an ES module, no deps).
 *
 * For one widget it loads the buffered samples over REST, then follows new
 * ones over a WebSocket, and keeps a window of the newest samples ordered
 * by (timestamp, seq).  When the socket drops it reconnects with capped
 * exponential backoff and jitter, asking for `?after=<highest seq seen>`,
 * so nothing still buffered on the server is missed; when the server
 * answers `{"type":"reset"}` (samples it was asked for are gone) the
 * window is rebuilt from a fresh REST snapshot.
 *
 * The viewer token travels in the `Authorization` header (REST) and, for
 * the WebSocket, as the `access_token` query parameter: the bridge never
 * logs query strings.  Offering it as the `bearer.<jwt>` subprotocol
 * (`tokenInQuery: false`) is what the protocol also allows, but the
 * bridge's libwebsockets accepts at most 126 bytes of subprotocol list,
 * less than any real token takes, so that is only for other servers.
 *
 * Glossary: a *sample* is one buffered reading of a widget,
 * `{seq, timestamp, value, unit}`; the *window* is the client's ordered
 * copy of the newest `max` samples.
 *
 * @example
 *   import { subscribeWidget } from '/livewidget.js';
 *   const sub = subscribeWidget({
 *     dashboard: '3f0c...', widget: 'temperature', token: jwt,
 *     onSamples: (window, added) => draw(window),
 *     onStatus: (state, detail) => console.log(state, detail),
 *   });
 *   // later: sub.close();
 */

/** Samples kept per widget unless `max` says otherwise. */
export const DEFAULT_MAX = 50;

/** Upper bound for `max`: the server buffers at most 1000 per widget. */
export const MAX_LIMIT = 1000;

/** Reconnect delays: first retry, growth cap (milliseconds). */
export const BACKOFF_BASE_MS = 500;
export const BACKOFF_CAP_MS = 30000;

/* A connection open this long counts as healthy: the backoff restarts. */
const HEALTHY_MS = 5000;

/* Close codes of the contract that must not be retried as they are. */
const CLOSE_BAD_REQUEST = 4400;
const CLOSE_UNAUTHORIZED = 4401;
const CLOSE_FORBIDDEN = 4403;
const CLOSE_NOT_FOUND = 4404;

/**
 * An HTTP or protocol failure, with the HTTP status (or WebSocket close
 * code) that caused it.
 */
export class LivewidgetError extends Error {
  /**
   * @param {string} message  what failed, for people
   * @param {number} status   HTTP status or WebSocket close code; 0 when
   *                          the network failed before any answer
   */
  constructor(message, status) {
    super(message);
    this.name = 'LivewidgetError';
    this.status = status;
  }
}

function apiUrl(baseUrl, path) {
  return new URL(path, baseUrl || globalThis.location.href);
}

function dashboardPath(dashboard) {
  return '/api/dashboard-templates/' + encodeURIComponent(dashboard) +
    '/widgets/';
}

/*
 * GET a JSON document with the bearer token.  A non-2xx answer becomes a
 * LivewidgetError carrying the server's `{"error": ...}` text.
 */
async function getJson(url, token, signal) {
  let response;
  try {
    response = await fetch(url, {
      headers: { Authorization: 'Bearer ' + token, Accept: 'application/json' },
      cache: 'no-store',
      signal,
    });
  } catch (err) {
    if (err.name === 'AbortError') throw err;
    throw new LivewidgetError('could not reach the server: ' + err.message, 0);
  }
  let body = null;
  try {
    body = await response.json();
  } catch (err) {
    /* A proxy's HTML error page has no JSON body: keep the status. */
  }
  if (!response.ok) {
    const text = body && typeof body.error === 'string' ? body.error :
      'HTTP ' + response.status;
    throw new LivewidgetError(text, response.status);
  }
  return body;
}

/**
 * List the widgets (tracked variables) of a dashboard.
 *
 * @param {object} options
 * @param {string} options.dashboard  dashboard UUID
 * @param {string} options.token      viewer JWT
 * @param {string} [options.baseUrl]  server origin; default: this page's
 * @returns {Promise<Array<{widget_id: string, device_id: string,
 *   sensor_type: string, max_samples: number}>>}
 * @throws {LivewidgetError} with status 401, 403, 404, 503, ...
 */
export async function listWidgets({ dashboard, token, baseUrl }) {
  const list = await getJson(apiUrl(baseUrl, dashboardPath(dashboard)), token);
  if (!Array.isArray(list)) {
    throw new LivewidgetError('unexpected widget list from the server', 200);
  }
  return list;
}

/**
 * Fetch the buffered samples of one widget, oldest first.
 *
 * @param {object} options
 * @param {string} options.dashboard  dashboard UUID
 * @param {string} options.widget     widget id
 * @param {string} options.token      viewer JWT
 * @param {string} [options.baseUrl]  server origin; default: this page's
 * @param {AbortSignal} [options.signal]
 * @returns {Promise<Array<{seq: number, timestamp: string, value: number,
 *   unit: (string|null)}>>}
 * @throws {LivewidgetError}
 */
export async function fetchSamples({ dashboard, widget, token, baseUrl, signal }) {
  const path = dashboardPath(dashboard) + encodeURIComponent(widget) +
    '/samples/';
  const list = await getJson(apiUrl(baseUrl, path), token, signal);
  if (!Array.isArray(list)) {
    throw new LivewidgetError('unexpected sample list from the server', 200);
  }
  return list.filter(isSample);
}

function isSample(s) {
  return s !== null && typeof s === 'object' && Number.isFinite(s.seq) &&
    typeof s.timestamp === 'string' && typeof s.value === 'number';
}

/*
 * Order of the window: by time, then by seq (two samples of one instant
 * keep the order the server gave them).
 */
function compareSamples(a, b) {
  return a.time - b.time || a.seq - b.seq;
}

/**
 * The newest `max` samples of a widget, ordered by (timestamp, seq), with
 * no two of the same seq.
 */
export class SampleWindow {
  /** @param {number} max  samples kept, 1 to MAX_LIMIT */
  constructor(max) {
    this.max = max;
    this.samples = [];
    this.highestSeq = null;
  }

  /**
   * Merge samples in; returns those that were new and are still in the
   * window after trimming.  The highest seq is remembered even for a
   * sample trimmed at once, since asking for it again would be useless.
   */
  add(incoming) {
    const known = new Set(this.samples.map((s) => s.seq));
    const fresh = [];
    for (const s of incoming) {
      if (!isSample(s) || known.has(s.seq)) continue;
      known.add(s.seq);
      const time = Date.parse(s.timestamp);
      fresh.push({ ...s, time: Number.isNaN(time) ? 0 : time });
      if (this.highestSeq === null || s.seq > this.highestSeq) {
        this.highestSeq = s.seq;
      }
    }
    if (fresh.length === 0) return [];
    this.samples = this.samples.concat(fresh).sort(compareSamples);
    if (this.samples.length > this.max) {
      this.samples = this.samples.slice(this.samples.length - this.max);
    }
    const kept = new Set(this.samples);
    return fresh.filter((s) => kept.has(s));
  }

  /** Replace the whole window (after a reset), keeping the highest seq. */
  replace(snapshot) {
    const highest = this.highestSeq;
    this.samples = [];
    this.highestSeq = null;
    const added = this.add(snapshot);
    if (highest !== null && (this.highestSeq === null || highest > this.highestSeq)) {
      this.highestSeq = highest;
    }
    return added;
  }
}

/**
 * The delay before reconnect attempt `attempt` (0 for the first): an
 * exponential step capped at BACKOFF_CAP_MS, of which a random half is
 * kept so that many browsers do not come back in step.
 *
 * @param {number} attempt
 * @returns {number} milliseconds
 */
export function backoffDelay(attempt) {
  const step = Math.min(BACKOFF_CAP_MS, BACKOFF_BASE_MS * 2 ** Math.min(attempt, 16));
  return Math.round(step / 2 + Math.random() * step / 2);
}

function websocketUrl(baseUrl, widget, after, token, tokenInQuery) {
  const url = apiUrl(baseUrl, '/ws/widgets/' + encodeURIComponent(widget) + '/');
  url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:';
  if (after !== null) url.searchParams.set('after', String(after));
  if (tokenInQuery) url.searchParams.set('access_token', token);
  return url.href;
}

/**
 * Follow one widget live.
 *
 * States reported to `onStatus(state, detail)`:
 *  - `'connecting'`   loading the snapshot or opening the socket
 *  - `'live'`         the socket is open and samples flow
 *  - `'resyncing'`    the server said samples were lost; reloading
 *  - `'reconnecting'` waiting `detail.delay` ms after `detail.code`
 *  - `'stopped'`      given up for good: `detail.error` is a
 *                     LivewidgetError whose status is 401/4401 (token
 *                     refused), 403/4403 (dashboard not granted) or
 *                     404/4404 (unknown widget); 4400 (the server
 *                     refused the request as malformed)
 *  - `'closed'`       `close()` was called
 *
 * @param {object} options
 * @param {string} options.dashboard      dashboard UUID
 * @param {string} options.widget         widget id
 * @param {string} [options.token]        viewer JWT
 * @param {function(): (string|Promise<string>)} [options.getToken]
 *   returns a fresh JWT; called first when no token is given and again
 *   whenever the server refuses the current one
 * @param {string} [options.baseUrl]      server origin; default: the page's
 * @param {number} [options.max=50]       samples kept, 1 to 1000
 * @param {boolean} [options.tokenInQuery=true]  send the token as
 *   `access_token` in the WebSocket URL; false offers it as the
 *   `bearer.<jwt>` subprotocol instead (see above)
 * @param {function(Array<object>, Array<object>)} [options.onSamples]
 *   called with (window, added) whenever the window changes; `window` is
 *   oldest first and must not be modified
 * @param {function(string, object)} [options.onStatus]
 * @returns {{close: function(): void, samples: function(): Array<object>}}
 */
export function subscribeWidget(options) {
  const sub = new Subscription(options);
  sub.start();
  return { close: () => sub.close(), samples: () => sub.window.samples };
}

class Subscription {
  constructor(o) {
    if (!o || !o.dashboard || !o.widget) {
      throw new TypeError('subscribeWidget needs a dashboard and a widget');
    }
    if (!o.token && typeof o.getToken !== 'function') {
      throw new TypeError('subscribeWidget needs a token or getToken()');
    }
    const max = o.max === undefined ? DEFAULT_MAX : o.max;
    if (!Number.isInteger(max) || max < 1 || max > MAX_LIMIT) {
      throw new RangeError('max must be an integer from 1 to ' + MAX_LIMIT);
    }
    this.o = Object.assign({ tokenInQuery: true }, o);
    this.token = o.token || null;
    this.window = new SampleWindow(max);
    this.ws = null;
    this.timer = null;
    this.attempt = 0;
    this.stopped = false;
    this.abort = null;
    this.refusals = 0;        /* token refusals since the last good answer */
  }

  status(state, detail = {}) {
    if (this.o.onStatus) this.o.onStatus(state, detail);
  }

  emit(added) {
    if (added.length > 0) this.changed(added);
  }

  /* Report the window, also when a snapshot left it empty or smaller. */
  changed(added) {
    if (this.o.onSamples) this.o.onSamples(this.window.samples, added);
  }

  async start() {
    this.status('connecting', {});
    try {
      if (!this.token) this.token = await this.o.getToken();
      const snapshot = await this.snapshot();
      if (this.stopped) return;
      this.refusals = 0;
      this.changed(this.window.replace(snapshot));
      this.open();
    } catch (err) {
      this.failed(err);
    }
  }

  snapshot() {
    this.abort = new AbortController();
    return fetchSamples({
      dashboard: this.o.dashboard, widget: this.o.widget, token: this.token,
      baseUrl: this.o.baseUrl, signal: this.abort.signal,
    });
  }

  /*
   * A failure of the REST step: stop for refusals that a retry cannot
   * fix, get a new token for 401, else retry the whole start later.
   */
  failed(err) {
    if (this.stopped || err.name === 'AbortError') return;
    const status = err instanceof LivewidgetError ? err.status : 0;
    if (status === 401 && this.canRenewToken()) {
      this.token = null;
      this.retry(status, err.message);
    } else if (status === 401 || status === 403 || status === 404) {
      this.stop(err);
    } else {
      this.retry(status, err.message);
    }
  }

  /* A second refusal in a row means the new token is no better. */
  canRenewToken() {
    this.refusals += 1;
    return typeof this.o.getToken === 'function' && this.refusals <= 2;
  }

  /*
   * Open the socket; `after` is 0 before any sample was seen, so that
   * samples committed between the snapshot and the socket are not lost.
   */
  open() {
    const after = this.window.highestSeq === null ? 0 : this.window.highestSeq;
    const url = websocketUrl(this.o.baseUrl, this.o.widget, after, this.token,
      this.o.tokenInQuery);
    const protocols = this.o.tokenInQuery ? ['livewidget'] :
      ['livewidget', 'bearer.' + this.token];
    let ws;
    try {
      ws = new WebSocket(url, protocols);
    } catch (err) {
      this.retry(0, err.message);
      return;
    }
    this.ws = ws;
    let openedAt = 0;
    ws.onopen = () => {
      openedAt = Date.now();
      this.status('live', {});
    };
    ws.onmessage = (event) => this.message(event.data);
    ws.onclose = (event) => {
      if (this.ws !== ws) return;
      this.ws = null;
      if (openedAt && Date.now() - openedAt >= HEALTHY_MS) this.attempt = 0;
      this.closed(event.code, event.reason);
    };
  }

  message(data) {
    let msg;
    try {
      msg = JSON.parse(data);
    } catch (err) {
      return;                 /* not ours to interpret; keep the stream */
    }
    if (msg && msg.type === 'reset') {
      this.resync();
      return;
    }
    this.refusals = 0;
    this.emit(this.window.add(Array.isArray(msg) ? msg : [msg]));
  }

  /*
   * The server could not send everything after our highest seq: reload
   * the snapshot and make it the window.  Samples that arrive on the
   * socket meanwhile are merged, not lost.
   */
  async resync() {
    this.status('resyncing', {});
    try {
      const snapshot = await this.snapshot();
      if (this.stopped) return;
      const newest = snapshot.reduce((m, s) => Math.max(m, s.seq), -Infinity);
      const live = this.window.samples.filter((s) => s.seq > newest);
      const added = this.window.replace(snapshot);
      added.push(...this.window.add(live));
      this.changed(added);
      if (this.ws) this.status('live', {});
    } catch (err) {
      /* The socket is still open; the next close will retry the start. */
      if (err.name !== 'AbortError' && this.ws) this.ws.close(4000, 'resync failed');
    }
  }

  closed(code, reason) {
    if (this.stopped) return;
    if (code === CLOSE_UNAUTHORIZED) {
      if (this.canRenewToken()) {
        this.token = null;
        this.retry(code, reason);
      } else {
        this.stop(new LivewidgetError(reason || 'token refused', code));
      }
    } else if (code === CLOSE_FORBIDDEN || code === CLOSE_NOT_FOUND ||
        code === CLOSE_BAD_REQUEST) {
      this.stop(new LivewidgetError(reason || 'refused', code));
    } else {
      this.retry(code, reason);
    }
  }

  /*
   * Wait, then reconnect: with a token, by the socket alone (resuming
   * after the highest seq); without one (it was refused), by the full
   * start, which asks getToken() and reloads the snapshot.
   */
  retry(code, reason) {
    const delay = backoffDelay(this.attempt);
    this.attempt += 1;
    this.status('reconnecting', { code, reason, delay, attempt: this.attempt });
    this.timer = setTimeout(() => {
      this.timer = null;
      if (this.stopped) return;
      if (this.token && this.window.highestSeq !== null) {
        this.status('connecting', {});
        this.open();
      } else {
        this.start();
      }
    }, delay);
  }

  stop(error) {
    this.halt();
    this.status('stopped', { code: error.status, reason: error.message, error });
  }

  halt() {
    this.stopped = true;
    clearTimeout(this.timer);
    if (this.abort) this.abort.abort();
    if (this.ws) {
      const ws = this.ws;
      this.ws = null;
      ws.close(1000, 'closed by the client');
    }
  }

  close() {
    if (this.stopped) return;
    this.halt();
    this.status('closed', {});
  }
}
