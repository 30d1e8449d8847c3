/**
 * follow-page.mjs: keeps one dashboard page open in headless Chromium and
 * answers questions about it, one JSON line per command on stdin, so that
 * a test can restart the server underneath the page.
 *
 *   node follow-page.mjs URL
 *   stdin:  {"wait": {"widget": ID, "state": S, "points": N, "newest": T}}
 *   stdout: {"ok": true, ...} or {"ok": false, "error": "..."}
 *
 * "wait" waits (up to 20 s) until the widget's card shows every given
 * field, then answers with what the card shows.
 */
import readline from 'node:readline';
import { chromium } from 'playwright-core';

const WAIT_MS = 20000;

function cardState(id) {
  const card = document.querySelector(`.card[data-widget-id="${id}"]`);
  if (!card) return null;
  const chart = card.querySelector('.chart');
  return {
    state: card.querySelector('.state').dataset.state,
    points: Number(chart.dataset.points),
    oldest: chart.dataset.oldest || null,
    newest: chart.dataset.newest || null,
    value: card.querySelector('.value').textContent,
  };
}

const browser = await chromium.launch({
  executablePath: '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-background-networking',
    '--disable-component-update', '--disable-gpu'],
});
const page = await browser.newPage();
/* The reader is installed as an init script, outside the page's CSP. */
await page.addInitScript('window.lwCardState = ' + cardState.toString());
const errors = [];
page.on('pageerror', (err) => errors.push(String(err)));
await page.goto(process.argv[2]);

async function answer(cmd) {
  if (errors.length) return { ok: false, error: errors.join('; ') };
  if (cmd.wait) {
    const want = cmd.wait;
    try {
      await page.waitForFunction((w) => {
        const got = window.lwCardState(w.widget);
        return got && Object.keys(w).every((k) => k === 'widget' || got[k] === w[k]);
      }, want, { timeout: WAIT_MS });
    } catch (err) {
      const got = await page.evaluate((id) => window.lwCardState(id), want.widget);
      return { ok: false, error: 'timed out', card: got };
    }
    return { ok: true, card: await page.evaluate((id) => window.lwCardState(id), want.widget) };
  }
  return { ok: false, error: 'unknown command' };
}

const input = readline.createInterface({ input: process.stdin });
for await (const line of input) {
  if (!line.trim()) continue;
  console.log(JSON.stringify(await answer(JSON.parse(line))));
}
await browser.close();
