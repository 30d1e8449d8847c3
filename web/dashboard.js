/**
 * dashboard.js: the dashboard page, one live card per widget.
 *
 * The viewer token comes from the URL fragment (`#token=<jwt>`, removed
 * from the address bar at once and kept in sessionStorage for this tab),
 * else from a form.  The dashboard is the UUID in `/dashboards/<uuid>`; at
 * `/` it is the first one the token's `dashboards` claim names, with a
 * picker when it names several.  The claim is only read here, not
 * verified: the server checks the token on every request.
 */
import { listWidgets, subscribeWidget, LivewidgetError } from '/livewidget.js';

const TOKEN_KEY = 'livewidget.token';
const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
/* The plot is CHART_W x CHART_H; the time axis labels sit below it. */
const CHART_W = 300;
const CHART_H = 120;
const CHART_PAD = 6;
const AXIS_TICK = 5;
const AXIS_LABEL_Y = 132;
/* Below this span the axis labels show seconds too. */
const SECONDS_SPAN_MS = 2 * 60 * 1000;
const SVG_NS = 'http://www.w3.org/2000/svg';
/* Retry of the widget list while the server answers 503 or is down. */
const LIST_RETRY_MS = 3000;

const $ = (id) => document.getElementById(id);

let subscriptions = [];

/* ---- token ------------------------------------------------------------ */

/*
 * Take the token out of the fragment before anything else runs, so that
 * it does not linger in the address bar, history or a copied link.
 */
function takeTokenFromFragment() {
  const params = new URLSearchParams(location.hash.slice(1));
  const token = params.get('token');
  if (token === null) return;
  params.delete('token');
  const rest = params.toString();
  history.replaceState(null, '', location.pathname + location.search +
    (rest ? '#' + rest : ''));
  if (token.trim()) sessionStorage.setItem(TOKEN_KEY, token.trim());
}

function storedToken() {
  return sessionStorage.getItem(TOKEN_KEY);
}

/* The payload of a JWT, or null when it is not one. */
function jwtClaims(token) {
  const part = token.split('.')[1];
  if (!part) return null;
  try {
    const b64 = part.replace(/-/g, '+').replace(/_/g, '/');
    const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
    return JSON.parse(new TextDecoder().decode(bytes));
  } catch (err) {
    return null;
  }
}

function grantedDashboards(claims) {
  const list = claims && Array.isArray(claims.dashboards) ? claims.dashboards : [];
  return list.filter((d) => typeof d === 'string' && UUID_RE.test(d));
}

/* ---- messages ----------------------------------------------------------- */

function showError(text) {
  const box = $('error');
  box.textContent = text;
  box.hidden = !text;
}

function askForToken(reason) {
  if (reason) showError(reason);
  $('token-form').hidden = false;
  $('token-input').focus();
}

/* What a refused request means for the person looking at the page. */
function explain(err, dashboard) {
  const status = err instanceof LivewidgetError ? err.status : 0;
  switch (status) {
    case 401:
    case 4401:
      return 'The viewer token was refused: it is invalid or has expired (' +
        err.message + '). Enter a new one.';
    case 403:
    case 4403:
      return 'This token does not grant dashboard ' + dashboard + '.';
    case 404:
    case 4404:
      return 'Not found: ' + err.message + '.';
    case 503:
      return 'The server cannot reach its database right now; retrying.';
    case 0:
      return 'The server cannot be reached (' + err.message + '); retrying.';
    default:
      return 'The server answered ' + status + ': ' + err.message + '.';
  }
}

/* ---- formatting --------------------------------------------------------- */

function formatValue(value) {
  if (!Number.isFinite(value)) return String(value);
  const abs = Math.abs(value);
  if (abs !== 0 && (abs >= 1e6 || abs < 1e-3)) return value.toExponential(3);
  return value.toLocaleString(undefined, { maximumFractionDigits: abs >= 100 ? 1 : 3 });
}

function formatTime(sample) {
  const date = new Date(sample.timestamp);
  if (Number.isNaN(date.getTime())) return sample.timestamp;
  return date.toLocaleString(undefined, {
    year: 'numeric', month: 'short', day: 'numeric',
    hour: '2-digit', minute: '2-digit', second: '2-digit', timeZoneName: 'short',
  });
}

/* ---- cards -------------------------------------------------------------- */

/*
 * The widget is what the dashboard's author named (o3_response); which
 * device and sensor feed it (aq-multisensor · pt08_s5_o3) comes second.
 */
function makeCard(widget) {
  const card = $('card-template').content.firstElementChild.cloneNode(true);
  card.dataset.widgetId = widget.widget_id;
  card.querySelector('.widget-id').textContent = widget.widget_id;
  card.querySelector('.source').textContent =
    widget.device_id + ' · ' + widget.sensor_type;
  return card;
}

function setState(card, state, text) {
  const el = card.querySelector('.state');
  el.dataset.state = state;
  el.title = text;
  el.querySelector('.state-text').textContent = state;
}

function showSamples(card, samples) {
  const last = samples[samples.length - 1];
  if (last) {
    card.querySelector('.value').textContent = formatValue(last.value);
    card.querySelector('.unit').textContent = last.unit || '';
    const time = card.querySelector('time');
    time.dateTime = last.timestamp;
    time.textContent = formatTime(last);
    time.title = last.timestamp;
  }
  drawChart(card.querySelector('.chart'), samples);
  const values = samples.map((s) => s.value);
  card.querySelector('.min').textContent =
    values.length ? 'min ' + formatValue(Math.min(...values)) : '';
  card.querySelector('.max').textContent =
    values.length ? 'max ' + formatValue(Math.max(...values)) : '';
}

/*
 * Draw the samples as a line, x by time (gaps in the data stay visible),
 * y scaled to the samples' own range.  A flat series sits mid-height.
 */
function drawChart(svg, samples) {
  /* The drawn range, also for automated checks of the page. */
  svg.dataset.points = String(samples.length);
  svg.dataset.oldest = samples.length ? samples[0].timestamp : '';
  svg.dataset.newest = samples.length ? samples[samples.length - 1].timestamp : '';
  const line = svg.querySelector('.line');
  const dot = svg.querySelector('.last');
  const axis = svg.querySelector('.axis');
  if (samples.length === 0) {
    line.setAttribute('points', '');
    dot.setAttribute('cx', '-10');
    axis.replaceChildren();
    return;
  }
  const t0 = samples[0].time;
  const tSpan = samples[samples.length - 1].time - t0;
  const values = samples.map((s) => s.value);
  const lo = Math.min(...values);
  const span = Math.max(...values) - lo;
  const x = (s, i) => CHART_PAD + (CHART_W - 2 * CHART_PAD) *
    (tSpan > 0 ? (s.time - t0) / tSpan : (samples.length > 1 ? i / (samples.length - 1) : 1));
  const y = (v) => CHART_H - CHART_PAD - (CHART_H - 2 * CHART_PAD) *
    (span > 0 ? (v - lo) / span : 0.5);
  const points = samples.map((s, i) => x(s, i).toFixed(1) + ',' + y(s.value).toFixed(1));
  line.setAttribute('points', points.join(' '));
  const end = points[points.length - 1].split(',');
  dot.setAttribute('cx', end[0]);
  dot.setAttribute('cy', end[1]);
  drawGrid(svg.querySelector('.grid'));
  drawAxis(axis, samples, Number(end[0]));
}

/*
 * Time labels under the chart, in the viewer's time zone and locale: the
 * first sample's time at the left end, the last one's at the right end.
 * When the whole span lies within one local day the date is left out, and
 * the labels are short enough for a third one, the time halfway, in the
 * middle (x is time, so the middle of the axis is the middle of the
 * span).  A single instant gets one label, under its point.
 */
function drawAxis(group, samples, lastX) {
  const first = samples[0];
  const last = samples[samples.length - 1];
  const span = last.time - first.time;
  const withDate = new Date(first.time).toDateString() !==
    new Date(last.time).toDateString();
  let ticks = [{ time: last.time, iso: last.timestamp, x: lastX, where: 'end' }];
  if (span > 0) {
    ticks = [
      { time: first.time, iso: first.timestamp, x: CHART_PAD, where: 'start' },
      { time: last.time, iso: last.timestamp, x: CHART_W - CHART_PAD, where: 'end' },
    ];
    if (!withDate) {
      ticks.splice(1, 0, { time: first.time + span / 2, x: CHART_W / 2, where: 'middle' });
    }
  }
  group.replaceChildren(...ticks.flatMap((t) => axisTick(t, withDate, span)));
}

function axisTick(tick, withDate, span) {
  const date = new Date(tick.time);
  const mark = document.createElementNS(SVG_NS, 'line');
  mark.setAttribute('x1', String(tick.x));
  mark.setAttribute('x2', String(tick.x));
  mark.setAttribute('y1', String(CHART_H - CHART_PAD));
  mark.setAttribute('y2', String(CHART_H - CHART_PAD + AXIS_TICK));
  const label = document.createElementNS(SVG_NS, 'text');
  label.classList.add(tick.where);
  label.setAttribute('x', String(tick.x));
  label.setAttribute('y', String(AXIS_LABEL_Y));
  label.dataset.time = tick.iso || date.toISOString();
  label.textContent = date.toLocaleString(undefined, {
    ...(withDate ? { day: 'numeric', month: 'short' } : {}),
    hour: '2-digit', minute: '2-digit',
    ...(span < SECONDS_SPAN_MS ? { second: '2-digit' } : {}),
  });
  const full = document.createElementNS(SVG_NS, 'title');
  full.textContent = formatTime({ timestamp: label.dataset.time });
  label.appendChild(full);
  return [mark, label];
}

function drawGrid(group) {
  if (group.childElementCount) return;
  for (const f of [0, 0.5, 1]) {
    const rule = document.createElementNS('http://www.w3.org/2000/svg', 'line');
    const yPos = CHART_PAD + (CHART_H - 2 * CHART_PAD) * f;
    rule.setAttribute('x1', '0');
    rule.setAttribute('x2', String(CHART_W));
    rule.setAttribute('y1', String(yPos));
    rule.setAttribute('y2', String(yPos));
    group.appendChild(rule);
  }
}

function follow(card, dashboard, widget, token) {
  const problem = card.querySelector('.problem');
  return subscribeWidget({
    dashboard,
    widget: widget.widget_id,
    token,
    onSamples: (samples) => showSamples(card, samples),
    onStatus: (state, detail) => {
      setState(card, state, detail.reason || state);
      if (state === 'stopped') {
        problem.textContent = explain(detail.error, dashboard);
        problem.hidden = false;
        if (detail.code === 4401 || detail.code === 401) {
          askForToken(explain(detail.error, dashboard));
        }
      } else if (state === 'live') {
        problem.hidden = true;
      }
    },
  });
}

/* ---- page --------------------------------------------------------------- */

function stopAll() {
  for (const sub of subscriptions) sub.close();
  subscriptions = [];
  $('widgets').replaceChildren();
  $('empty').hidden = true;
}

function showPicker(granted, current) {
  const nav = $('dashboards');
  const pick = $('dashboard-pick');
  nav.hidden = granted.length < 2;
  pick.replaceChildren(...granted.map((d) => new Option(d, d, false, d === current)));
  pick.onchange = () => {
    history.pushState(null, '', '/dashboards/' + pick.value);
    start();
  };
}

function dashboardFromPath() {
  const m = location.pathname.match(/^\/dashboards\/([^/]+)\/?$/);
  return m ? decodeURIComponent(m[1]) : null;
}

async function load(dashboard, token) {
  let widgets;
  try {
    widgets = await listWidgets({ dashboard, token });
  } catch (err) {
    if (err.status === 401) {
      askForToken(explain(err, dashboard));
    } else if (err.status === 0 || err.status >= 500) {
      showError(explain(err, dashboard));
      setTimeout(() => { if (storedToken() === token) start(); }, LIST_RETRY_MS);
    } else {
      showError(explain(err, dashboard));
    }
    return;
  }
  showError('');
  $('empty').hidden = widgets.length > 0;
  for (const widget of widgets) {
    const card = makeCard(widget);
    $('widgets').appendChild(card);
    subscriptions.push(follow(card, dashboard, widget, token));
  }
}

function start() {
  stopAll();
  $('token-form').hidden = true;
  const token = storedToken();
  $('forget').hidden = !token;
  if (!token) {
    askForToken('');
    return;
  }
  const granted = grantedDashboards(jwtClaims(token));
  let dashboard = dashboardFromPath();
  if (dashboard === null && location.pathname !== '/' &&
      location.pathname !== '/index.html') {
    showError('Unknown page ' + location.pathname + '.');
    return;
  }
  if (dashboard === null) dashboard = granted[0] || null;
  showPicker(granted, dashboard);
  if (dashboard === null) {
    askForToken('This token names no dashboard (no "dashboards" claim). ' +
      'Open /dashboards/<uuid> or use another token.');
    return;
  }
  if (!UUID_RE.test(dashboard)) {
    showError('"' + dashboard + '" is not a dashboard UUID.');
    return;
  }
  $('dashboard-id').textContent = 'Dashboard ' + dashboard;
  document.title = 'livewidget · ' + dashboard;
  load(dashboard, token);
}

function init() {
  takeTokenFromFragment();
  $('token-form').addEventListener('submit', (event) => {
    event.preventDefault();
    const value = $('token-input').value.trim();
    if (!value) return;
    sessionStorage.setItem(TOKEN_KEY, value);
    $('token-input').value = '';
    showError('');
    start();
  });
  $('forget').addEventListener('click', () => {
    sessionStorage.removeItem(TOKEN_KEY);
    start();
  });
  window.addEventListener('hashchange', () => {
    if (new URLSearchParams(location.hash.slice(1)).has('token')) {
      takeTokenFromFragment();
      start();
    }
  });
  window.addEventListener('popstate', start);
  start();
}

init();
