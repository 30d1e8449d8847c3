/**
 * livewidget.test.mjs: the parts of web/livewidget.js that need no server
 * (the sample window, the backoff, argument checks), under node --test.
 * The network side is driven in Chromium against the real bridge.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  SampleWindow, backoffDelay, subscribeWidget, BACKOFF_CAP_MS, BACKOFF_BASE_MS,
} from '../../web/livewidget.js';

const s = (seq, minute, value = seq) => ({
  seq, timestamp: `2024-01-01T00:${String(minute).padStart(2, '0')}:00Z`, value, unit: null,
});

test('window orders by timestamp, then seq, and drops repeated seqs', () => {
  const w = new SampleWindow(10);
  w.add([s(3, 5), s(1, 7), s(2, 5)]);
  const added = w.add([s(2, 5), s(4, 1)]);
  assert.deepEqual(added.map((x) => x.seq), [4]);
  assert.deepEqual(w.samples.map((x) => x.seq), [4, 2, 3, 1]);
  assert.equal(w.highestSeq, 4);
});

test('window keeps the newest max samples and remembers the highest seq', () => {
  const w = new SampleWindow(3);
  w.add([s(1, 1), s(2, 2), s(3, 3), s(4, 4)]);
  assert.deepEqual(w.samples.map((x) => x.seq), [2, 3, 4]);
  /* Older than the whole full window: not kept, but seen. */
  assert.deepEqual(w.add([s(9, 0)]), []);
  assert.deepEqual(w.samples.map((x) => x.seq), [2, 3, 4]);
  assert.equal(w.highestSeq, 9);
});

test('replace takes the snapshot and keeps the highest seq seen', () => {
  const w = new SampleWindow(5);
  w.add([s(1, 1), s(7, 2)]);
  w.replace([s(5, 3), s(6, 4)]);
  assert.deepEqual(w.samples.map((x) => x.seq), [5, 6]);
  assert.equal(w.highestSeq, 7);
});

test('malformed samples are ignored', () => {
  const w = new SampleWindow(5);
  assert.deepEqual(w.add([null, { seq: 'x' }, { seq: 1, value: 2 }, s(2, 2)])
    .map((x) => x.seq), [2]);
});

test('backoff grows, is capped and jittered within its step', () => {
  for (let attempt = 0; attempt < 30; attempt++) {
    const step = Math.min(BACKOFF_CAP_MS, BACKOFF_BASE_MS * 2 ** attempt);
    const d = backoffDelay(attempt);
    assert.ok(d >= step / 2 && d <= step, `attempt ${attempt}: ${d}`);
  }
  assert.ok(backoffDelay(50) <= BACKOFF_CAP_MS);
});

test('subscribeWidget refuses bad arguments', () => {
  const base = { dashboard: 'd', widget: 'w', token: 't' };
  assert.throws(() => subscribeWidget({ ...base, max: 0 }), RangeError);
  assert.throws(() => subscribeWidget({ ...base, max: 1001 }), RangeError);
  assert.throws(() => subscribeWidget({ ...base, token: undefined }), TypeError);
  assert.throws(() => subscribeWidget({ ...base, widget: '' }), TypeError);
});
