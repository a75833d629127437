// The Client survives its scheduler's crash (issue 16): a real
// `dask-scheduler --journal DIR` is killed with SIGKILL and started again
// on the same port and journal; the client connects again, resumes its
// session (dask/1.1 hello `session`), keeps its futures and gets the
// outcomes it missed. A scheduler that kept no session makes the futures
// lost; a scheduler that never comes back makes them fail once the
// reconnect timeout ends. A JS worker registers again, on a new data port,
// and the result it held is adopted, not computed again.

import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';

import { Client, ConnectionError, LostError, Worker } from '../index.js';
import { WAIT_MS, eventually } from './support/cluster.mjs';
import { freePort, journalDir, kill, killAll, scheduler, worker } from './support/processes.mjs';

describe('Client reconnection', { timeout: 4 * WAIT_MS }, () => {
  after(killAll);

  it('resumes its session after the scheduler is killed and restarted, and its futures get their outcomes', async () => {
    const port = await freePort();
    const journal = journalDir();
    let s = await scheduler(port, journal);
    const w = await worker(port);
    const client = await Client.connect(`tcp://127.0.0.1:${port}`, { name: 'js-resume' });
    try {
      const done = client.submit('inc', [41]);
      assert.equal(await done.result({ timeout: WAIT_MS }), 42);
      // Running when the scheduler dies: sleep(1.5 s) then 7, and what depends on it.
      const slow = client.submit('sleep', [1.5, 7]);
      const total = client.submit('add', [slow, done]);
      await new Promise((r) => setTimeout(r, 300));
      await kill(s);
      await eventually(() => !client.connected, 'the client to see the loss');
      assert.equal(total.status, 'pending', 'a future survives the loss');
      s = await scheduler(port, journal);
      // The outcome missed while away comes; the key finished before the
      // crash is still there.
      assert.equal(await total.result({ timeout: WAIT_MS }), 49);
      assert.equal(await done.result({ timeout: WAIT_MS }), 42);
      assert.equal(client.connected, true);
      // The resumed session takes new work.
      assert.equal(await client.submit('inc', [1]).result({ timeout: WAIT_MS }), 2);
    } finally {
      await client.close();
      await kill(w);
      await kill(s);
    }
  });

  it('sends again a gather cut by the loss', async () => {
    const port = await freePort();
    const journal = journalDir();
    let s = await scheduler(port, journal);
    const w = await worker(port);
    const client = await Client.connect(`tcp://127.0.0.1:${port}`, { name: 'js-gather' });
    try {
      // Over the inline bound (4 KiB): the result needs a gather.
      const big = client.submit('sleep', [0, 'x'.repeat(100_000)]);
      assert.equal(await big.wait({ timeout: WAIT_MS }), 'finished');
      // The worker is stopped: the gather waits on it, and the scheduler dies meanwhile.
      w.kill('SIGSTOP');
      let settled = false;
      const result = big.result({ timeout: WAIT_MS });
      result.finally(() => {
        settled = true;
      }).catch(() => {});
      await new Promise((r) => setTimeout(r, 300));
      assert.equal(settled, false, 'the gather waits on the stopped worker');
      await kill(s);
      s = await scheduler(port, journal);
      w.kill('SIGCONT');
      assert.equal((await result).length, 100_000);
    } finally {
      w.kill('SIGCONT');
      await client.close();
      await kill(w);
      await kill(s);
    }
  });

  it('marks its futures lost when the restarted scheduler kept no session', async () => {
    const port = await freePort();
    let s = await scheduler(port, journalDir());
    const w = await worker(port);
    const client = await Client.connect(`tcp://127.0.0.1:${port}`, { name: 'js-lost' });
    try {
      // One graph: the quick task's event shows the scheduler accepted it
      // (a graph nothing acknowledged would be sent again, and run anew).
      const [quick, slow] = client.map('sleep', [0, 30]);
      assert.equal(await quick.wait({ timeout: WAIT_MS }), 'finished');
      await kill(s);
      // Another journal: it knows nothing of this session.
      s = await scheduler(port, journalDir());
      await assert.rejects(slow.result({ timeout: WAIT_MS }), (e) => {
        assert.ok(e instanceof LostError, `${e}`);
        assert.match(e.message, /did not keep this client's session/);
        return true;
      });
      assert.equal(slow.status, 'lost');
    } finally {
      await client.close();
      await kill(w);
      await kill(s);
    }
  });

  it('sends again a graph the scheduler died before writing, even to a scheduler that kept no session', async () => {
    const port = await freePort();
    const journal = journalDir();
    let s = await scheduler(port, journal);
    const w = await worker(port);
    const client = await Client.connect(`tcp://127.0.0.1:${port}`, { name: 'js-unacked' });
    try {
      // Killed (SIGSTOP, then SIGKILL) before it reads the graph: nothing
      // of this session reaches its journal.
      s.kill('SIGSTOP');
      const f = client.submit('inc', [1]);
      await new Promise((r) => setTimeout(r, 200));
      await kill(s);
      s = await scheduler(port, journal);
      assert.equal(await f.result({ timeout: WAIT_MS }), 2);
    } finally {
      await client.close();
      await kill(w);
      await kill(s);
    }
  });

  it('gives up after reconnectTimeout when the scheduler does not come back', async () => {
    const port = await freePort();
    const s = await scheduler(port, journalDir());
    const client = await Client.connect(`tcp://127.0.0.1:${port}`, { name: 'js-gone', reconnectTimeout: 800 });
    try {
      const never = client.submit('inc', [1]); // no worker: it stays pending
      await new Promise((r) => setTimeout(r, 200));
      await kill(s);
      await assert.rejects(never.result({ timeout: WAIT_MS }), (e) => {
        assert.ok(e instanceof ConnectionError, `${e}`);
        assert.match(e.message, /not resumed/);
        return true;
      });
      assert.equal(client.connected, false);
    } finally {
      await client.close();
    }
  });
});

describe('Worker reconnection', { timeout: 4 * WAIT_MS }, () => {
  after(killAll);

  it('registers again after the scheduler is killed and restarted, and the result it held is adopted', async () => {
    const port = await freePort();
    const journal = journalDir();
    const address = `tcp://127.0.0.1:${port}`;
    let s = await scheduler(port, journal);
    let runs = 0;
    // Default reconnectTimeout (60 s).
    const w = await Worker.start(address, {
      name: 'js-reconnect-a',
      functions: {
        'jstest.count': (x) => {
          runs += 1;
          return 2 * x;
        },
      },
    });
    const once = await Worker.start(address, { name: 'js-reconnect-b', reconnectTimeout: 0 });
    const client = await Client.connect(address, { name: 'js-worker-resume' });
    try {
      const held = client.submit('jstest.count', [21]);
      assert.equal(await held.result({ timeout: WAIT_MS }), 42);
      assert.equal(runs, 1);
      const firstAddress = w.address;
      await kill(s);
      // Without a reconnect time the worker ends with its connection.
      await assert.rejects(once.join(), ConnectionError);
      s = await scheduler(port, journal);
      // Runs on the worker that came back, with the result it held.
      const next = client.submit('jstest.count', [held]);
      assert.equal(await next.result({ timeout: WAIT_MS }), 84);
      assert.equal(runs, 2, 'the held result was adopted, not computed again');
      assert.notEqual(w.address, firstAddress, 'it registered again on a new data port');
    } finally {
      await client.close();
      await w.stop();
      await kill(s);
    }
  });

  it('refuses a negative reconnectTimeout', () => {
    assert.throws(() => new Worker({ reconnectTimeout: -1 }), /reconnectTimeout/);
  });
});
