/** The download progress of `arclight serve`: a rewritten bar on a terminal, plain lines elsewhere. */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { createDownloadProgress, type ProgressStream } from '../../lib/cli/progress.js';

const MB = 1e6;

function fakeStream(isTTY: boolean): ProgressStream & { writes: string[] } {
  const writes: string[] = [];
  return { isTTY, columns: 200, writes, write: (text: string) => writes.push(text) };
}

/** A clock the test moves by hand. */
function fakeClock(): { now: () => number; advance: (ms: number) => void } {
  let t = 0;
  return { now: () => t, advance: (ms) => (t += ms) };
}

describe('download progress', () => {
  test('on a terminal: one line rewritten in place with bar, percent, rate and ETA, ended by done()', () => {
    const stream = fakeStream(true);
    const clock = fakeClock();
    const progress = createDownloadProgress({ label: 's3://b/model.onnx', stream, now: clock.now });
    clock.advance(1000);
    progress.update(40 * MB, 200 * MB);
    clock.advance(50);
    progress.update(42 * MB, 200 * MB); // within the redraw interval: not drawn
    clock.advance(1000);
    progress.update(80 * MB, 200 * MB);
    assert.equal(stream.writes.length, 2);
    for (const write of stream.writes) {
      assert.ok(write.startsWith('\r\x1b[K'), JSON.stringify(write));
      assert.ok(!write.includes('\n'));
    }
    assert.match(stream.writes[0]!, /s3:\/\/b\/model\.onnx \[#{5}-{19}\]\s+20% 40\.0\/200\.0 MB 40\.0 MB\/s ETA 4s/);
    assert.match(stream.writes[1]!, /40% 80\.0\/200\.0 MB 39\.0 MB\/s ETA 4s/);
    clock.advance(3000);
    progress.update(200 * MB, 200 * MB);
    progress.done();
    assert.match(stream.writes.at(-1)!, /\[#{24}\] 100% 200\.0\/200\.0 MB .* ETA done\n$/);
    progress.done();
    progress.update(1, 200 * MB);
    assert.equal(stream.writes.filter((w) => w.endsWith('\n')).length, 1, 'nothing after done()');
  });

  test('elsewhere: a plain line at once, then every 10 % or every 5 s, never a carriage return', () => {
    const stream = fakeStream(false);
    const clock = fakeClock();
    const progress = createDownloadProgress({ label: 'model', stream, now: clock.now });
    for (let received = 5; received <= 30; received += 5) {
      clock.advance(100);
      progress.update(received * MB, 100 * MB);
    }
    assert.deepEqual(
      stream.writes.map((w) => w.split(' (')[0]),
      ['model: 5%', 'model: 10%', 'model: 20%', 'model: 30%'],
    );
    clock.advance(5000);
    progress.update(31 * MB, 100 * MB); // same decile, but 5 s passed
    assert.equal(stream.writes.length, 5);
    assert.match(stream.writes[4]!, /^model: 31% \(31\.0\/100\.0 MB\) 5\.5 MB\/s, ETA 13s\n$/);
    progress.done();
    assert.equal(stream.writes.length, 5, 'the last state was already shown: done() repeats nothing');
    assert.ok(stream.writes.every((w) => !w.includes('\r') && w.endsWith('\n')));
  });

  test('elsewhere: done() shows a last state the throttle held back, so a log never ends on a stale figure', () => {
    const stream = fakeStream(false);
    const clock = fakeClock();
    const progress = createDownloadProgress({ label: 'model', stream, now: clock.now });
    progress.update(50 * MB, 100 * MB);
    clock.advance(100);
    progress.update(55 * MB, 100 * MB); // same decile, within 5 s: held back
    assert.equal(stream.writes.length, 1);
    progress.done();
    assert.deepEqual(
      stream.writes.map((w) => w.split(' (')[0]),
      ['model: 50%', 'model: 55%'],
    );
  });

  test('a small download shows nothing', () => {
    for (const tty of [true, false]) {
      const stream = fakeStream(tty);
      const progress = createDownloadProgress({ label: 'model', stream, now: fakeClock().now });
      progress.update(1 * MB, 2 * MB);
      progress.update(2 * MB, 2 * MB);
      progress.done();
      assert.deepEqual(stream.writes, []);
    }
  });
});
