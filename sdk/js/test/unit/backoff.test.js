// Reconnect backoff: exponential growth, the cap, jitter bounds, reset.
import assert from "node:assert/strict";
import { test } from "node:test";
import { Backoff } from "../../dist/index.js";

test("grows by the factor up to the cap, at the ceiling when the draw is 0", () => {
  const backoff = new Backoff({ base: 100, max: 1000, factor: 2, jitter: 0.5 }, () => 0);
  const delays = Array.from({ length: 7 }, () => backoff.next());
  assert.deepEqual(delays, [100, 200, 400, 800, 1000, 1000, 1000]);
  assert.equal(backoff.attempt, 7);
});

test("jitter takes at most its share off each delay", () => {
  const low = new Backoff({ base: 100, max: 1000, factor: 2, jitter: 0.5 }, () => 1);
  assert.deepEqual([low.next(), low.next(), low.next()], [50, 100, 200]);
  const none = new Backoff({ base: 100, jitter: 0 }, () => 0.9);
  assert.deepEqual([none.next(), none.next()], [100, 200]);
  const full = new Backoff({ base: 100, jitter: 1 }, () => 0.999);
  assert.ok(full.next() <= 1);
});

test("random delays stay within [ceiling × (1 − jitter), ceiling] and spread", () => {
  const seen = new Set();
  for (let i = 0; i < 200; i++) {
    const backoff = new Backoff({ base: 1000, max: 8000, factor: 2, jitter: 0.5 });
    for (const ceiling of [1000, 2000, 4000, 8000, 8000]) {
      const delay = backoff.next();
      assert.ok(delay >= ceiling / 2 && delay <= ceiling, `${delay} outside [${ceiling / 2}, ${ceiling}]`);
      if (ceiling === 1000) seen.add(delay);
    }
  }
  assert.ok(seen.size > 50, `jitter spreads the first delay (${seen.size} distinct of 200)`);
});

test("reset starts again from base", () => {
  const backoff = new Backoff({ base: 10, max: 10_000, factor: 3 }, () => 0);
  backoff.next();
  backoff.next();
  assert.equal(backoff.next(), 90);
  backoff.reset();
  assert.equal(backoff.attempt, 0);
  assert.equal(backoff.next(), 10);
});

test("defaults: 500 ms doubling to 30 s", () => {
  const backoff = new Backoff({}, () => 0);
  const delays = Array.from({ length: 9 }, () => backoff.next());
  assert.deepEqual(delays, [500, 1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000]);
});

test("refuses settings that make no sense", () => {
  assert.throws(() => new Backoff({ base: 100, max: 50 }), RangeError);
  assert.throws(() => new Backoff({ factor: 0.5 }), RangeError);
  assert.throws(() => new Backoff({ jitter: 1.5 }), RangeError);
  assert.throws(() => new Backoff({ base: -1 }), RangeError);
});
