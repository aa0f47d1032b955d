import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import type { MessageView, ServerFrame } from '../src/generated/protocol';
import { Socket, type WebSocketLike } from '../src/api/socket';

class FakeWS implements WebSocketLike {
  static all: FakeWS[] = [];
  readyState = 0;
  sent: Record<string, unknown>[] = [];
  onopen: ((ev: Event) => unknown) | null = null;
  onmessage: ((ev: MessageEvent) => unknown) | null = null;
  onclose: ((ev: CloseEvent) => unknown) | null = null;
  onerror: ((ev: Event) => unknown) | null = null;
  constructor(readonly url: string) {
    FakeWS.all.push(this);
  }
  send(data: string) {
    this.sent.push(JSON.parse(data));
  }
  close(code?: number) {
    this.readyState = 3;
    this.onclose?.({ code } as CloseEvent);
  }
  /** Server side: open and say hello. */
  hello() {
    this.readyState = 1;
    this.receive({ type: 'hello', user: { id: 1, username: 'me', display_name: 'Me' }, connection_id: '1', heartbeat_interval_ms: 20000, protocol_version: 1 });
  }
  receive(f: ServerFrame) {
    this.onmessage?.({ data: JSON.stringify(f) } as MessageEvent);
  }
  sends() {
    return this.sent.filter((f) => f.type === 'send');
  }
}

const msg = (id: number, client_msg_id = `c${id}`, from = 'peer'): MessageView => ({
  id,
  conversation_id: 0, // not read: the socket orders by id
  from,
  to: from === 'me' ? 'peer' : 'me',
  kind: 'text',
  body: `m${id}`,
  client_msg_id,
  created_at: '2026-01-01T00:00:00Z',
});

function make(random = () => 0.5) {
  let tickets = 0;
  const s = new Socket({
    getTicket: async () => `t${++tickets}`,
    url: (t, after) => `ws://x/ws?ticket=${t}&after=${after}`,
    WebSocketImpl: FakeWS,
    baseDelayMs: 100,
    maxDelayMs: 1000,
    random,
  });
  return s;
}

async function flush() {
  for (let i = 0; i < 5; i++) await Promise.resolve();
}
const last = () => FakeWS.all[FakeWS.all.length - 1];

beforeEach(() => {
  FakeWS.all = [];
  vi.useFakeTimers();
});
afterEach(() => vi.useRealTimers());

describe('Socket', () => {
  it('connects with a ticket, and resumes after the newest message id it saw', async () => {
    const s = make();
    s.start();
    await flush();
    expect(last().url).toBe('ws://x/ws?ticket=t1&after=0');
    last().hello();
    expect(s.status).toBe('open');
    last().receive({ type: 'message', message: msg(41) });
    last().receive({ type: 'message', message: msg(42) });
    last().close();
    expect(s.status).toBe('reconnecting');
    await vi.advanceTimersByTimeAsync(1000);
    expect(FakeWS.all).toHaveLength(2);
    expect(last().url).toBe('ws://x/ws?ticket=t2&after=42');
    last().hello();
    last().receive({ type: 'replay_end', last_id: 50, replayed: 3 });
    expect(s.lastId).toBe(50);
    s.stop();
  });

  it('stops for good when the server ends the session (4001)', async () => {
    let ended = 0;
    const s = new Socket({
      getTicket: async () => 't',
      url: (t) => `ws://x/ws?ticket=${t}`,
      WebSocketImpl: FakeWS,
      onSessionEnded: () => ended++,
    });
    s.start();
    await flush();
    last().hello();
    const sent = s.sendMessage({ to: 'peer' }, 'hello', 'c-ended');
    last().close(4001);
    await expect(sent).rejects.toThrow();
    expect(ended).toBe(1);
    expect(s.status).toBe('closed');
    await vi.advanceTimersByTimeAsync(60_000);
    expect(FakeWS.all).toHaveLength(1);
  });

  it('takes resync_required.newest_id as the new cursor', async () => {
    const s = make();
    s.start();
    await flush();
    last().hello();
    const seen = vi.fn();
    s.on('resync_required', seen);
    last().receive({ type: 'resync_required', newest_id: 5000 });
    expect(seen).toHaveBeenCalledOnce();
    expect(s.lastId).toBe(5000);
    s.stop();
  });

  it('resumes after the read events it saw too (a read without seq moves nothing)', async () => {
    const s = make();
    s.start();
    await flush();
    last().hello();
    last().receive({ type: 'read_receipt', conversation_id: 1, by: 'bob', up_to: 40, seq: 42 });
    expect(s.lastId).toBe(42);
    last().receive({ type: 'read_state', conversation_id: 1, up_to: 40, unread: 0 });
    expect(s.lastId).toBe(42);
    last().receive({ type: 'read_state', conversation_id: 1, up_to: 43, unread: 0, seq: 44 });
    expect(s.lastId).toBe(44);
    s.stop();
  });

  it('backs off exponentially with jitter, capped, and resets after a hello', async () => {
    const s = make(() => 1);
    expect([0, 1, 2, 3, 4, 5].map((n) => s.backoffDelay(n))).toEqual([100, 200, 400, 800, 1000, 1000]);
    const low = make(() => 0);
    expect([0, 1, 2].map((n) => low.backoffDelay(n))).toEqual([50, 100, 200]);

    s.start();
    await flush();
    last().close(); // attempt 0 fails → 100 ms
    await vi.advanceTimersByTimeAsync(99);
    expect(FakeWS.all).toHaveLength(1);
    await vi.advanceTimersByTimeAsync(1);
    expect(FakeWS.all).toHaveLength(2);
    last().close(); // → 200 ms
    await vi.advanceTimersByTimeAsync(199);
    expect(FakeWS.all).toHaveLength(2);
    await vi.advanceTimersByTimeAsync(1);
    expect(FakeWS.all).toHaveLength(3);
    last().hello();
    last().close(); // reset: 100 ms again
    await vi.advanceTimersByTimeAsync(100);
    expect(FakeWS.all).toHaveLength(4);
    s.stop();
  });

  it('retries a send after a reconnect with the same client_msg_id, and resolves once', async () => {
    const s = make();
    s.start();
    await flush();
    last().hello();
    const p = s.sendMessage({ to: 'peer' }, 'hello', 'c-abc');
    const first = last().sends();
    expect(first).toHaveLength(1);
    expect(first[0]).toMatchObject({ type: 'send', to: 'peer', body: 'hello', client_msg_id: 'c-abc' });
    // The connection drops before the ack.
    last().close();
    await vi.advanceTimersByTimeAsync(1000);
    last().hello();
    const again = last().sends();
    expect(again).toHaveLength(1);
    expect(again[0].client_msg_id).toBe('c-abc');
    const stored = msg(7, 'c-abc', 'me');
    last().receive({ type: 'ack', id: again[0].id as string, message: stored });
    await expect(p).resolves.toEqual(stored);
    expect(s.queued).toBe(0);
    // A duplicate ack (the server answering an earlier copy) changes nothing.
    last().receive({ type: 'ack', message: stored });
    expect(s.queued).toBe(0);
    s.stop();
  });

  it('queues sends while disconnected and flushes them after hello', async () => {
    const s = make();
    s.start();
    await flush();
    const p1 = s.sendMessage({ to: 'peer' }, 'one', 'c1');
    const p2 = s.sendMessage({ to: 'peer' }, 'two', 'c2');
    expect(last().sent).toHaveLength(0);
    last().hello();
    expect(last().sends().map((f) => f.client_msg_id)).toEqual(['c1', 'c2']);
    last().receive({ type: 'ack', message: msg(1, 'c1', 'me') });
    last().receive({ type: 'ack', message: msg(2, 'c2', 'me') });
    await expect(Promise.all([p1, p2])).resolves.toHaveLength(2);
    s.stop();
  });

  it('a manual retry of a queued message reuses its entry (never a second message)', async () => {
    const s = make();
    s.start();
    await flush();
    last().hello();
    const p1 = s.sendMessage({ to: 'peer' }, 'x', 'c-same');
    const p2 = s.sendMessage({ to: 'peer' }, 'x', 'c-same');
    expect(s.queued).toBe(1);
    expect(new Set(last().sends().map((f) => f.client_msg_id))).toEqual(new Set(['c-same']));
    last().receive({ type: 'ack', message: msg(9, 'c-same', 'me') });
    expect((await p1).id).toBe(9);
    expect((await p2).id).toBe(9);
    s.stop();
  });

  it('rejects a send the server refuses for good, retries a transient error', async () => {
    const s = make();
    s.start();
    await flush();
    last().hello();
    const bad = s.sendMessage({ to: 'nobody' }, 'x', 'c-bad');
    const badFrame = last().sends()[0];
    last().receive({ type: 'error', id: badFrame.id as string, code: 'user_not_found', message: 'no' });
    await expect(bad).rejects.toMatchObject({ code: 'user_not_found' });

    const ok = s.sendMessage({ to: 'peer' }, 'y', 'c-ok');
    const f = last().sends()[1];
    last().receive({ type: 'error', id: f.id as string, code: 'database_unavailable', message: 'later' });
    await vi.advanceTimersByTimeAsync(1000);
    const retried = last().sends().filter((x) => x.client_msg_id === 'c-ok');
    expect(retried).toHaveLength(2);
    last().receive({ type: 'ack', message: msg(3, 'c-ok', 'me') });
    await expect(ok).resolves.toMatchObject({ id: 3 });
    s.stop();
  });

  it('sends an app-level ping when idle, and typed events reach subscribers', async () => {
    const s = make();
    const typing = vi.fn();
    s.on('typing', typing);
    s.start();
    await flush();
    last().hello();
    last().receive({ type: 'typing', conversation_id: 1, from: 'peer' });
    expect(typing).toHaveBeenCalledWith({ type: 'typing', conversation_id: 1, from: 'peer' });
    await vi.advanceTimersByTimeAsync(21000);
    expect(last().sent.some((f) => f.type === 'ping')).toBe(true);
    s.stop();
  });

  it('request() resolves with the reply that echoes its id, or rejects on error', async () => {
    const s = make();
    s.start();
    await flush();
    last().hello();
    const r = s.request({ type: 'room_join', name: 'x' });
    const f = last().sent[0];
    last().receive({ type: 'error', id: f.id as string, code: 'room_not_found', message: 'nope' });
    await expect(r).rejects.toMatchObject({ code: 'room_not_found' });
    s.stop();
  });
});
