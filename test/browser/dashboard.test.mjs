/**
 * dashboard.test.mjs: the dashboard page in headless Chromium, against a
 * running bridge (started by test/demo/test_demo.py through demo/run).
 *
 *   LW_DASHBOARD_URL   the URL demo/run printed, with its #token=<jwt>
 *   LW_FOREIGN_TOKEN   optional: a valid token that does not grant that
 *                      dashboard (the page must say so)
 *   LW_SCREENSHOT      optional: a PNG path for a picture of the page
 *
 * The page runs under the bridge's Content-Security-Policy (scripts and
 * styles from 'self' only); every check watches for CSP violations, console
 * errors and failed requests (a missing favicon counts).
 *
 *   cd test/browser && npm ci && LW_DASHBOARD_URL=... node --test
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { chromium } from 'playwright-core';

const URL_WITH_TOKEN = process.env.LW_DASHBOARD_URL;
const FOREIGN_TOKEN = process.env.LW_FOREIGN_TOKEN;
/* How long the live checks wait for the replay to move the page. */
const LIVE_WAIT_MS = 20000;

/* A zone with a half-hour offset: hourly UTC samples show as hh:30. */
const VIEWER_ZONE = 'Asia/Kolkata';
const VIEWER_LOCALE = 'en-GB';

let browser;
let page;
let problems;

function pageUrl() {
  assert.ok(URL_WITH_TOKEN, 'set LW_DASHBOARD_URL to the dashboard URL with #token=');
  const url = new URL(URL_WITH_TOKEN);
  const token = new URLSearchParams(url.hash.slice(1)).get('token');
  assert.ok(token, 'LW_DASHBOARD_URL has no #token=');
  url.hash = '';
  return { bare: url.href, token, dashboard: url.pathname.split('/')[2] };
}

/* Snapshot of what each card shows, by widget id. */
function readCards(p) {
  return p.$$eval('.card', (cards) => Object.fromEntries(cards.map((c) => [
    c.dataset.widgetId, {
      value: c.querySelector('.value').textContent,
      time: c.querySelector('time').getAttribute('datetime'),
      points: Number(c.querySelector('.chart').dataset.points),
      state: c.querySelector('.state').dataset.state,
    }])));
}

/*
 * Everything that went wrong on a page: CSP violations (reported as DOM
 * events, collected by a script injected outside the page's CSP), console
 * errors and warnings, uncaught exceptions, and requests that failed or
 * were answered with an error status.
 */
async function watch(p) {
  const seen = [];
  await p.addInitScript(() => {
    window.lwViolations = [];
    document.addEventListener('securitypolicyviolation', (e) => {
      window.lwViolations.push(e.violatedDirective + ' blocked ' + (e.blockedURI || 'inline'));
    });
  });
  p.on('console', (m) => {
    if (m.type() === 'error' || m.type() === 'warning') seen.push('console ' + m.type() + ': ' + m.text());
  });
  p.on('pageerror', (err) => seen.push('uncaught: ' + err));
  p.on('requestfailed', (r) => seen.push('failed request: ' + r.url()));
  p.on('response', (r) => {
    if (r.status() >= 400) seen.push('HTTP ' + r.status() + ': ' + r.url().split('#')[0]);
  });
  return async () => seen.concat(await p.evaluate(() => window.lwViolations || []));
}

function cardsLive(p) {
  return p.waitForFunction(() => document.querySelectorAll('.card').length > 0 &&
    [...document.querySelectorAll('.card')].every(
      (c) => Number(c.querySelector('.chart').dataset.points) > 0 &&
        c.querySelector('.state').dataset.state === 'live'),
  null, { timeout: LIVE_WAIT_MS });
}

before(async () => {
  browser = await chromium.launch({
    executablePath: '/usr/bin/chromium',
    args: ['--no-sandbox', '--disable-background-networking',
      '--disable-component-update', '--disable-gpu'],
  });
  page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  problems = await watch(page);
  await page.goto(URL_WITH_TOKEN);
});

after(async () => {
  if (browser) await browser.close();
});

test('every widget of the dashboard gets a card', async () => {
  const { token, dashboard, bare } = pageUrl();
  const api = new URL('/api/dashboard-templates/' + dashboard + '/widgets/', bare);
  const res = await fetch(api, { headers: { Authorization: 'Bearer ' + token } });
  assert.equal(res.status, 200);
  const widgets = await res.json();
  assert.ok(widgets.length > 0, 'the dashboard has no widgets');
  await page.waitForFunction((n) => document.querySelectorAll('.card').length === n,
    widgets.length, { timeout: 10000 });
  const shown = Object.keys(await readCards(page)).sort();
  assert.deepEqual(shown, widgets.map((w) => w.widget_id).sort());
  /* The widget's own name is the title; what feeds it, the subtitle. */
  const shownTitles = await page.$$eval('.card', (cards) => cards.map((c) => [
    c.dataset.widgetId, c.querySelector('h2').textContent,
    c.querySelector('.source').textContent]));
  assert.deepEqual(shownTitles.sort(), widgets.map((w) => [
    w.widget_id, w.widget_id, w.device_id + ' · ' + w.sensor_type]).sort());
});

test('the token is gone from the address bar', async () => {
  const { token } = pageUrl();
  const href = await page.evaluate(() => location.href);
  assert.ok(!href.includes('token='), 'address bar still holds the token: ' + href);
  assert.ok(!href.includes(token));
});

test('charts get samples and every card goes live', async () => {
  await cardsLive(page);
  const cards = await readCards(page);
  for (const [id, c] of Object.entries(cards)) {
    assert.notEqual(c.value, '–', id + ' shows no value');
    assert.ok(c.time, id + ' shows no time');
    const points = await page.$eval(`.card[data-widget-id="${id}"] .line`,
      (l) => l.getAttribute('points').trim().split(/\s+/).length);
    assert.equal(points, c.points, id + ': drawn points and count disagree');
  }
});

test('values move as new readings arrive', async () => {
  const first = await readCards(page);
  const ids = Object.keys(first);
  /* Missing values in the recording may hold a channel still: a majority
     of the cards must move, not every one. */
  const need = Math.ceil(ids.length / 2);
  await page.waitForFunction(({ before, need: n }) => {
    let moved = 0;
    for (const c of document.querySelectorAll('.card')) {
      const was = before[c.dataset.widgetId];
      const time = c.querySelector('time').getAttribute('datetime');
      if (was && time !== was.time) moved += 1;
    }
    return moved >= n;
  }, { before: first, need }, { timeout: LIVE_WAIT_MS });
  const later = await readCards(page);
  const moved = ids.filter((id) => later[id].time !== first[id].time);
  for (const id of moved) {
    assert.ok(later[id].time > first[id].time, id + ' went back in time');
    assert.ok(later[id].points <= 50, id + ' draws more than 50 samples');
  }
  if (process.env.LW_SCREENSHOT) {
    await page.screenshot({ path: process.env.LW_SCREENSHOT, fullPage: true });
  }
});

test('the page runs under its CSP without a violation or a failed request', async () => {
  await cardsLive(page);
  assert.deepEqual(await problems(), []);
  const favicon = await page.$eval('link[rel="icon"]', (l) => l.getAttribute('href'));
  assert.equal(favicon, 'data:,');
});

/* The hours and minutes of an instant as the viewer's clock shows them. */
function clock(iso) {
  return new Intl.DateTimeFormat(VIEWER_LOCALE, {
    timeZone: VIEWER_ZONE, hour: '2-digit', minute: '2-digit', hourCycle: 'h23',
  }).format(new Date(iso));
}

test('the time axis shows the first and last sample times in the viewer\'s zone', async () => {
  const context = await browser.newContext({
    timezoneId: VIEWER_ZONE, locale: VIEWER_LOCALE, viewport: { width: 1280, height: 900 },
  });
  try {
    const viewer = await context.newPage();
    const viewerProblems = await watch(viewer);
    await viewer.goto(URL_WITH_TOKEN);
    await cardsLive(viewer);
    const axes = await viewer.$$eval('.card', (cards) => cards.map((c) => {
      const chart = c.querySelector('.chart');
      return {
        id: c.dataset.widgetId,
        labels: [...chart.querySelectorAll('.axis text')].map((t) => ({
          time: t.dataset.time, text: t.firstChild.textContent,
          where: t.getAttribute('class'),
        })),
      };
    }));
    assert.ok(axes.length > 0);
    for (const axis of axes) {
      const first = axis.labels[0];
      const last = axis.labels[axis.labels.length - 1];
      assert.ok(axis.labels.length >= 2, axis.id + ': ' + JSON.stringify(axis.labels));
      assert.equal(first.where, 'start', axis.id);
      assert.equal(last.where, 'end', axis.id);
      for (const label of [first, last]) {
        assert.ok(label.text.includes(clock(label.time)),
          `${axis.id}: "${label.text}" does not show ${clock(label.time)} (${label.time})`);
        /* Whole UTC hours: :30 past in Kolkata, never :00. */
        assert.match(label.text, /:30\b/, axis.id + ': ' + label.text);
      }
    }
    /* The labels bound what the chart drew (read in one go: the replay
       moves the charts meanwhile). */
    const bounds = await viewer.$$eval('.chart', (charts) => charts.map((ch) => {
      const t = [...ch.querySelectorAll('.axis text')].map((x) => x.dataset.time);
      return [ch.dataset.oldest, ch.dataset.newest, t[0], t[t.length - 1]];
    }));
    for (const [oldest, newest, first, last] of bounds) {
      assert.equal(first, oldest);
      assert.equal(last, newest);
    }
    assert.deepEqual(await viewerProblems(), []);
  } finally {
    await context.close();
  }
});

test('a wrong token shows the error and asks for another', async () => {
  const { bare } = pageUrl();
  const other = await browser.newPage();
  try {
    await other.goto(bare + '#token=not.a-valid.token');
    await other.waitForSelector('#error:not([hidden])', { timeout: 10000 });
    const text = await other.textContent('#error');
    assert.match(text, /token was refused/);
    assert.ok(await other.isVisible('#token-form'));
    assert.equal(await other.$$eval('.card', (c) => c.length), 0);
    assert.ok(!(await other.evaluate(() => location.href)).includes('token='));
  } finally {
    await other.close();
  }
});

test('a token for another dashboard is told so', { skip: !FOREIGN_TOKEN }, async () => {
  const { bare, dashboard } = pageUrl();
  const other = await browser.newPage();
  try {
    await other.goto(bare + '#token=' + FOREIGN_TOKEN);
    await other.waitForSelector('#error:not([hidden])', { timeout: 10000 });
    assert.equal(await other.textContent('#error'),
      'This token does not grant dashboard ' + dashboard + '.');
  } finally {
    await other.close();
  }
});
