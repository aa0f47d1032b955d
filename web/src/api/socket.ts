// The only module that opens a WebSocket. It trades the access token for a ticket, connects,
// reconnects with exponential backoff and jitter, resumes from the newest message id it has seen
// (`after=`), keeps the connection alive with app-level pings, and owns the outbox of chat
// messages: a `send` waits here until its `ack`, and is re-sent after a reconnect with the SAME
// `client_msg_id`, so the server stores it once whatever happens to the connection.
import type { ClientEnvelope, ClientFrame, MessageView, ServerFrame } from '../generated/protocol';

/** Where a message goes: a user (their direct conversation), or a conversation by id. */
export type SendTarget = { to: string } | { conversation_id: number };

export type FrameType = ServerFrame['type'];
export type FrameOf<T extends FrameType> = Extract<ServerFrame, { type: T }>;
export type SocketStatus = 'idle' | 'connecting' | 'open' | 'reconnecting' | 'closed';

/** The part of the browser WebSocket this module uses; tests inject a fake. */
export interface WebSocketLike {
  readonly readyState: number;
  onopen: ((ev: Event) => unknown) | null;
  onmessage: ((ev: MessageEvent) => unknown) | null;
  onclose: ((ev: CloseEvent) => unknown) | null;
  onerror: ((ev: Event) => unknown) | null;
  send(data: string): void;
  close(code?: number, reason?: string): void;
}
export type WebSocketCtor = new (url: string) => WebSocketLike;

export interface SocketOptions {
  /** Returns a single-use ticket (POST /api/ws/ticket). */
  getTicket: () => Promise<string>;
  /** Builds the URL; defaults to ws(s)://<this host>/ws?ticket=…&after=… */
  url?: (ticket: string, after: number) => string;
  WebSocketImpl?: WebSocketCtor;
  /** First reconnect delay, ms (doubles each failure up to maxDelayMs). */
  baseDelayMs?: number;
  maxDelayMs?: number;
  random?: () => number;
  /** Send an app-level `ping` after this long without sending anything (ms). */
  idlePingMs?: number;
  /** Consider the connection dead after this long without receiving anything (ms). */
  deadAfterMs?: number;
  /** How long a request() waits for its reply (ms). */
  requestTimeoutMs?: number;
  /** The server ended this sign-in (close code 4001: signed out elsewhere, password changed,
   * account disabled). The socket stops for good before this is called. */
  onSessionEnded?: () => void;
}

/** The close code of a connection whose session was revoked (docs/protocol.md). */
export const SESSION_ENDED = 4001;

interface Outgoing {
  frame: Extract<ClientFrame, { type: 'send' }>;
  resolve: (m: MessageView) => void;
  reject: (e: Error) => void;
  attempts: number;
}

interface Pending {
  resolve: (f: ServerFrame) => void;
  reject: (e: Error) => void;
  timer: ReturnType<typeof setTimeout>;
}

/** Errors for which re-sending the same frame cannot help. */
const PERMANENT = new Set(['validation_failed', 'user_not_found', 'invalid_frame', 'payload_too_large']);

export class SocketError extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
    this.name = 'SocketError';
  }
}

const OPEN = 1;

export class Socket {
  private ws: WebSocketLike | null = null;
  private statusValue: SocketStatus = 'idle';
  private cursor = 0;
  private attempt = 0;
  private seq = 0;
  private reconnectTimer: ReturnType<typeof setTimeout> | null = null;
  private pingTimer: ReturnType<typeof setInterval> | null = null;
  private lastSent = 0;
  private lastReceived = 0;
  private ready = false; // hello received on the current connection
  private stopped = true;
  private readonly handlers = new Map<string, Set<(f: ServerFrame) => void>>();
  private readonly statusHandlers = new Set<(s: SocketStatus) => void>();
  private readonly outbox = new Map<string, Outgoing>();
  private readonly pending = new Map<string, Pending>();
  private readonly o: Required<Omit<SocketOptions, 'WebSocketImpl' | 'url' | 'onSessionEnded'>> &
    Pick<SocketOptions, 'url' | 'WebSocketImpl' | 'onSessionEnded'>;

  constructor(opts: SocketOptions) {
    this.o = {
      baseDelayMs: 500,
      maxDelayMs: 15_000,
      random: Math.random,
      idlePingMs: 20_000,
      deadAfterMs: 75_000,
      requestTimeoutMs: 15_000,
      ...opts,
    };
  }

  get status(): SocketStatus {
    return this.statusValue;
  }
  /** The newest message id seen; the next connection resumes after it. */
  get lastId(): number {
    return this.cursor;
  }
  /** Moves the resume cursor forward (never back), e.g. after loading history over REST. */
  advanceCursor(id: number) {
    if (id > this.cursor) this.cursor = id;
  }
  /** Messages still waiting for their ack. */
  get queued(): number {
    return this.outbox.size;
  }

  on<T extends FrameType>(type: T, fn: (f: FrameOf<T>) => void): () => void {
    let set = this.handlers.get(type);
    if (!set) this.handlers.set(type, (set = new Set()));
    const h = fn as (f: ServerFrame) => void;
    set.add(h);
    return () => set.delete(h);
  }
  onStatus(fn: (s: SocketStatus) => void): () => void {
    this.statusHandlers.add(fn);
    return () => this.statusHandlers.delete(fn);
  }

  start() {
    if (!this.stopped) return;
    this.stopped = false;
    this.connect();
  }

  /** Closes for good (sign-out): pending messages are rejected. */
  stop() {
    this.stopped = true;
    if (this.reconnectTimer) clearTimeout(this.reconnectTimer);
    this.reconnectTimer = null;
    this.stopPing();
    const ws = this.ws;
    this.ws = null;
    if (ws) {
      ws.onclose = ws.onmessage = ws.onerror = ws.onopen = null;
      ws.close(1000, 'bye');
    }
    this.failPending(new SocketError('closed', 'Signed out'));
    for (const o of this.outbox.values()) o.reject(new SocketError('closed', 'Signed out'));
    this.outbox.clear();
    this.setStatus('closed');
  }

  /** Drops the current connection as if the network failed (reconnects with backoff). */
  drop() {
    this.ws?.close(4000, 'dropped');
  }

  private setStatus(s: SocketStatus) {
    if (s === this.statusValue) return;
    this.statusValue = s;
    this.statusHandlers.forEach((fn) => fn(s));
  }

  private defaultUrl(ticket: string, after: number): string {
    const proto = location.protocol === 'https:' ? 'wss:' : 'ws:';
    const q = new URLSearchParams({ ticket });
    if (after > 0) q.set('after', String(after));
    return `${proto}//${location.host}/ws?${q}`;
  }

  private async connect() {
    if (this.stopped) return;
    this.setStatus(this.attempt === 0 && this.statusValue !== 'reconnecting' ? 'connecting' : 'reconnecting');
    let ticket: string;
    try {
      ticket = await this.o.getTicket();
    } catch {
      this.scheduleReconnect();
      return;
    }
    if (this.stopped) return;
    const url = (this.o.url ?? ((t, a) => this.defaultUrl(t, a)))(ticket, this.cursor);
    const Impl = this.o.WebSocketImpl ?? (WebSocket as unknown as WebSocketCtor);
    let ws: WebSocketLike;
    try {
      ws = new Impl(url);
    } catch {
      this.scheduleReconnect();
      return;
    }
    this.ws = ws;
    this.ready = false;
    ws.onmessage = (ev) => this.onMessage(ws, ev);
    ws.onclose = (ev) => this.onClose(ws, ev);
    ws.onerror = () => {
      /* a close follows */
    };
  }

  /** The delay before reconnect attempt `n` (0-based): exponential, capped, with jitter. */
  backoffDelay(n: number): number {
    const exp = Math.min(this.o.maxDelayMs, this.o.baseDelayMs * 2 ** n);
    return Math.round(exp / 2 + (exp / 2) * this.o.random());
  }

  private scheduleReconnect() {
    if (this.stopped || this.reconnectTimer) return;
    this.setStatus('reconnecting');
    const delay = this.backoffDelay(this.attempt);
    this.attempt++;
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = null;
      this.connect();
    }, delay);
  }

  private onClose(ws: WebSocketLike, ev?: CloseEvent) {
    if (ws !== this.ws) return;
    if (ev?.code === SESSION_ENDED) {
      // Reconnecting cannot work: this sign-in is over.
      this.stop();
      this.o.onSessionEnded?.();
      return;
    }
    this.ws = null;
    this.ready = false;
    this.stopPing();
    // Requests in flight get no reply on a new connection; outbox entries are re-sent instead.
    this.failPending(new SocketError('disconnected', 'Connection lost'));
    this.scheduleReconnect();
  }

  private failPending(err: Error) {
    for (const p of this.pending.values()) {
      clearTimeout(p.timer);
      p.reject(err);
    }
    this.pending.clear();
  }

  private onMessage(ws: WebSocketLike, ev: MessageEvent) {
    if (ws !== this.ws) return;
    this.lastReceived = Date.now();
    let frame: ServerFrame;
    try {
      frame = JSON.parse(String(ev.data)) as ServerFrame;
    } catch {
      return;
    }
    switch (frame.type) {
      case 'hello':
        this.ready = true;
        this.attempt = 0;
        this.setStatus('open');
        this.startPing(frame.heartbeat_interval_ms);
        this.flushOutbox();
        break;
      case 'message':
        this.advanceCursor(frame.message.id);
        break;
      case 'read_receipt':
        this.advanceCursor(frame.seq);
        break;
      case 'read_state':
        // A read that moved a position is an event of the log; one that moved nothing has no seq.
        if (frame.seq !== undefined) this.advanceCursor(frame.seq);
        break;
      case 'replay_end':
        this.advanceCursor(frame.last_id);
        break;
      case 'resync_required':
        // The app reloads what it shows over REST; continue from the newest id.
        this.advanceCursor(frame.newest_id);
        break;
      case 'ack': {
        const out = this.outbox.get(frame.message.client_msg_id);
        if (out) {
          this.outbox.delete(frame.message.client_msg_id);
          this.frameIds.delete(frame.message.client_msg_id);
          out.resolve(frame.message);
        }
        break;
      }
      case 'error': {
        const out = frame.id ? this.findOutboxByFrameId(frame.id) : undefined;
        if (out) {
          if (PERMANENT.has(frame.code)) {
            this.outbox.delete(out.frame.client_msg_id);
            out.reject(new SocketError(frame.code, frame.message));
          } else {
            // database_unavailable, rate_limited…: the same frame again, a little later.
            setTimeout(() => this.transmitOutgoing(out), Math.min(5000, 250 * 2 ** out.attempts));
          }
        }
        break;
      }
    }
    const id = 'id' in frame ? frame.id : undefined;
    if (id && this.pending.has(id)) {
      const p = this.pending.get(id)!;
      this.pending.delete(id);
      clearTimeout(p.timer);
      if (frame.type === 'error') p.reject(new SocketError(frame.code, frame.message));
      else p.resolve(frame);
    }
    this.handlers.get(frame.type)?.forEach((fn) => {
      try {
        fn(frame);
      } catch (e) {
        console.error('socket handler failed', e);
      }
    });
  }

  private findOutboxByFrameId(id: string): Outgoing | undefined {
    for (const o of this.outbox.values()) if (this.frameIds.get(o.frame.client_msg_id) === id) return o;
    return undefined;
  }
  private readonly frameIds = new Map<string, string>();

  private startPing(heartbeatMs: number) {
    this.stopPing();
    const idle = Math.min(this.o.idlePingMs, heartbeatMs > 0 ? heartbeatMs : this.o.idlePingMs);
    this.lastSent = this.lastReceived = Date.now();
    const tick = Math.max(250, Math.floor(idle / 4));
    this.pingTimer = setInterval(() => {
      const now = Date.now();
      if (now - this.lastReceived > this.o.deadAfterMs) {
        this.drop();
        return;
      }
      if (now - this.lastSent >= idle) this.rawSend({ type: 'ping' });
    }, tick);
  }
  private stopPing() {
    if (this.pingTimer) clearInterval(this.pingTimer);
    this.pingTimer = null;
  }

  private rawSend(frame: ClientEnvelope): boolean {
    const ws = this.ws;
    if (!ws || !this.ready || ws.readyState !== OPEN) return false;
    try {
      ws.send(JSON.stringify(frame));
    } catch {
      return false;
    }
    this.lastSent = Date.now();
    return true;
  }

  private nextId(prefix: string) {
    return `${prefix}${++this.seq}`;
  }

  /** Sends a frame now if connected (typing, signal…); returns false when it could not. */
  send(frame: ClientEnvelope): boolean {
    return this.rawSend(frame);
  }

  /** Sends a frame with an id and resolves with the reply that echoes it (or rejects on `error`). */
  request(frame: ClientFrame): Promise<ServerFrame> {
    const id = this.nextId('r');
    return new Promise((resolve, reject) => {
      if (!this.rawSend({ ...frame, id })) {
        reject(new SocketError('disconnected', 'Not connected'));
        return;
      }
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new SocketError('timeout', 'No reply'));
      }, this.o.requestTimeoutMs);
      this.pending.set(id, { resolve, reject, timer });
    });
  }

  /**
   * Queues a chat message; resolves with the stored message once acked. While disconnected it
   * waits, and after every reconnect it is sent again with the same client_msg_id.
   */
  sendMessage(target: SendTarget, body: string, client_msg_id: string = newClientMsgId()): Promise<MessageView> {
    const existing = this.outbox.get(client_msg_id);
    if (existing) {
      return new Promise((resolve, reject) => {
        const prev = { resolve: existing.resolve, reject: existing.reject };
        existing.resolve = (m) => (prev.resolve(m), resolve(m));
        existing.reject = (e) => (prev.reject(e), reject(e));
        this.transmitOutgoing(existing);
      });
    }
    return new Promise((resolve, reject) => {
      const frame: Outgoing['frame'] = { type: 'send', ...target, body, client_msg_id };
      const out: Outgoing = { frame, resolve, reject, attempts: 0 };
      this.outbox.set(client_msg_id, out);
      this.transmitOutgoing(out);
    });
  }

  private transmitOutgoing(out: Outgoing) {
    if (!this.outbox.has(out.frame.client_msg_id)) return;
    const id = this.nextId('s');
    if (this.rawSend({ ...out.frame, id })) {
      out.attempts++;
      this.frameIds.set(out.frame.client_msg_id, id);
    }
  }

  private flushOutbox() {
    for (const out of this.outbox.values()) this.transmitOutgoing(out);
  }
}

export function newClientMsgId(): string {
  const c = globalThis.crypto;
  if (c && 'randomUUID' in c) return 'c-' + c.randomUUID();
  return 'c-' + Math.random().toString(36).slice(2) + Date.now().toString(36);
}
