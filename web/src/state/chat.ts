// Chat state: conversations, message threads, pending sends, read positions, typing, presence.
// The reducers are pure functions (unit-tested); ChatService wires them to the socket and REST.
import type { MessageView } from '../generated/protocol';
import type { ActiveCall, ConversationView, HistoryPage, Http, Presence, UserView } from '../api/http';
import { newClientMsgId, type SendTarget, type Socket, type SocketStatus, SocketError } from '../api/socket';
import { createStore, type Store } from './store';
import { toast } from './toasts';

/**
 * Conversations and threads are keyed by a *thread key*: the peer's user name for a direct
 * conversation (so `#/chat/bob` is the chat with bob before it has an id), `#<id>` for a group.
 */
export interface Conversation {
  /** The thread key. */
  peer: string;
  /** The server's conversation id, once known. */
  id?: number;
  kind: 'direct' | 'group';
  /** How many members a group has. */
  members?: number;
  /** False once I left or was removed from a group: it is read-only then. */
  member: boolean;
  displayName: string;
  presence: Presence;
  last?: MessageView;
  unread: number;
  /** The newest id *I* have read. */
  lastReadId: number;
  /** A group's call going on (as of the last fetch of the group). */
  activeCall?: ActiveCall;
}
export interface PendingMessage {
  client_msg_id: string;
  /** The thread key it was typed in. */
  to: string;
  body: string;
  created_at: string;
  error?: string;
}
export interface Thread {
  messages: MessageView[];
  pending: PendingMessage[];
  hasMore: boolean;
  loaded: boolean;
  loadingOlder: boolean;
}
export interface ChatState {
  me: string;
  conversations: Record<string, Conversation>;
  threads: Record<string, Thread>;
  /** How far each peer has read *my* messages (from read_receipt). */
  peerRead: Record<string, number>;
  /** Peer → time (ms) until which "typing…" shows. */
  typing: Record<string, number>;
  connection: SocketStatus;
  active: string | null;
}
export type Delivery = 'sending' | 'failed' | 'sent' | 'read';

export const TYPING_SHOW_MS = 3500;

export function initialChatState(me: string): ChatState {
  return { me, conversations: {}, threads: {}, peerRead: {}, typing: {}, connection: 'idle', active: null };
}

export function emptyThread(): Thread {
  return { messages: [], pending: [], hasMore: true, loaded: false, loadingOlder: false };
}

export function groupKey(id: number): string {
  return `#${id}`;
}

export function isGroupKey(key: string): boolean {
  return key.startsWith('#');
}

/** The thread a message belongs to: the direct peer's name, or the group's key. */
export function peerOf(me: string, m: MessageView): string {
  if (m.to === undefined) return groupKey(m.conversation_id);
  return m.from === me ? m.to : m.from;
}

/** What users write (and missed calls), as against a change to a group. */
export function isMessage(m: MessageView): boolean {
  return m.kind === 'text' || m.kind === 'missed_call';
}

/** A change to a group, in words ("ann added bob and cid"). */
export function describeChange(me: string, m: MessageView): string {
  const who = (name: string) => (name === me ? 'you' : name);
  const by = m.from === me ? 'You' : m.from;
  const subjects = (m.subjects ?? []).map(who).join(', ');
  switch (m.kind) {
    case 'group_created':
      return `${by} created the group “${m.title ?? ''}”`;
    case 'members_added':
      return `${by} added ${subjects}`;
    case 'member_removed':
      return `${by} removed ${subjects}`;
    case 'member_left':
      return subjects ? `${by} left; ${subjects} now own${subjects === 'you' ? '' : 's'} the group` : `${by} left`;
    case 'role_changed':
      return `${by} made ${subjects} ${m.role === 'owner' ? 'the owner' : m.role === 'admin' ? 'an admin' : 'a member'}`;
    case 'title_changed':
      return `${by} renamed the group to “${m.title ?? ''}”`;
    case 'call_started':
      return `${by} started a ${m.call?.media === 'video' ? 'video' : 'voice'} call`;
    case 'call_ended':
      return `The call ended${m.call?.duration_secs !== undefined ? ` · ${callDuration(m.call.duration_secs)}` : ''}`;
    default:
      return m.body;
  }
}

/** A call's length as "4:05" (or "1:02:03"). */
export function callDuration(secs: number): string {
  const two = (n: number) => String(n).padStart(2, '0');
  const h = Math.floor(secs / 3600);
  const m = Math.floor((secs % 3600) / 60);
  const s = secs % 60;
  return h > 0 ? `${h}:${two(m)}:${two(s)}` : `${m}:${two(s)}`;
}

/** Whether a change took me out of the group. */
function removesMe(me: string, m: MessageView): boolean {
  return (m.kind === 'member_removed' && (m.subjects ?? []).includes(me)) || (m.kind === 'member_left' && m.from === me);
}

function newConversation(key: string, id?: number): Conversation {
  return {
    peer: key,
    id,
    kind: isGroupKey(key) ? 'group' : 'direct',
    member: true,
    displayName: isGroupKey(key) ? 'Group' : key,
    presence: { status: 'offline' },
    unread: 0,
    lastReadId: 0,
  };
}

/** Merges messages into a sorted, duplicate-free list (by server id). */
export function mergeById(a: MessageView[], b: MessageView[]): MessageView[] {
  if (b.length === 0) return a;
  const byId = new Map<number, MessageView>();
  for (const m of a) byId.set(m.id, m);
  for (const m of b) byId.set(m.id, m);
  return [...byId.values()].sort((x, y) => x.id - y.id);
}

/** Adds live or replayed messages (from `message` or `ack`). */
export function addMessages(s: ChatState, msgs: MessageView[]): ChatState {
  if (msgs.length === 0) return s;
  const conversations = { ...s.conversations };
  const threads = { ...s.threads };
  for (const m of msgs) {
    const peer = peerOf(s.me, m);
    const t = threads[peer] ?? emptyThread();
    const isNew = !t.messages.some((x) => x.id === m.id);
    threads[peer] = {
      ...t,
      messages: isNew ? mergeById(t.messages, [m]) : t.messages,
      pending: t.pending.filter((p) => p.client_msg_id !== m.client_msg_id || m.from !== s.me),
    };
    const c = conversations[peer] ?? newConversation(peer, m.conversation_id);
    const newer = !c.last || m.id > c.last.id;
    const unreadBump = isNew && isMessage(m) && m.from !== s.me && m.id > c.lastReadId && newer ? 1 : 0;
    const added = m.kind === 'members_added' || m.kind === 'group_created';
    conversations[peer] = {
      ...c,
      id: m.conversation_id,
      displayName: m.title && newer ? m.title : c.displayName,
      member: newer && removesMe(s.me, m) ? false : newer && added && (m.subjects ?? []).includes(s.me) ? true : c.member,
      last: newer ? m : c.last,
      // A message I sent means I have read everything before it.
      unread: m.from === s.me && newer ? 0 : c.unread + unreadBump,
      // A message I sent means I have seen everything before it.
      lastReadId: m.from === s.me ? Math.max(c.lastReadId, m.id) : c.lastReadId,
    };
    if (m.from !== s.me && s.typing[peer]) {
      const typing = { ...s.typing };
      delete typing[peer];
      s = { ...s, typing };
    }
  }
  return { ...s, conversations, threads };
}

export function addPending(s: ChatState, p: PendingMessage): ChatState {
  const t = s.threads[p.to] ?? emptyThread();
  return { ...s, threads: { ...s.threads, [p.to]: { ...t, pending: [...t.pending, p] } } };
}

export function setPendingError(s: ChatState, peer: string, client_msg_id: string, error: string | undefined): ChatState {
  const t = s.threads[peer];
  if (!t) return s;
  return {
    ...s,
    threads: {
      ...s.threads,
      [peer]: { ...t, pending: t.pending.map((p) => (p.client_msg_id === client_msg_id ? { ...p, error } : p)) },
    },
  };
}

/** A page of history: `older` pages go before what we have (infinite scroll upward). */
export function applyHistory(s: ChatState, peer: string, page: HistoryPage, older: boolean): ChatState {
  const t = s.threads[peer] ?? emptyThread();
  const hasMore = older || !t.loaded ? page.has_more : t.hasMore;
  return {
    ...s,
    threads: {
      ...s.threads,
      [peer]: {
        ...t,
        messages: mergeById(t.messages, page.messages),
        hasMore,
        loaded: true,
        loadingOlder: false,
        pending: t.pending.filter((p) => !page.messages.some((m) => m.client_msg_id === p.client_msg_id && m.from === s.me)),
      },
    },
  };
}

export function applyConversations(s: ChatState, list: ConversationView[]): ChatState {
  const conversations: Record<string, Conversation> = { ...s.conversations };
  const peerRead = { ...s.peerRead };
  for (const c of list) {
    if (c.kind === 'group' || !c.peer) {
      const key = groupKey(c.id);
      conversations[key] = {
        ...newConversation(key, c.id),
        displayName: c.title ?? 'Group',
        members: c.members_count,
        activeCall: c.active_call,
        last: c.last_message,
        unread: c.unread_count,
        lastReadId: c.last_read_id,
      };
      continue;
    }
    const key = c.peer.username;
    peerRead[key] = Math.max(peerRead[key] ?? 0, c.peer_last_read_id ?? 0);
    conversations[key] = {
      ...newConversation(key, c.id),
      displayName: c.peer.display_name || c.peer.username,
      presence: c.presence ?? { status: 'offline' },
      last: c.last_message,
      unread: c.unread_count,
      lastReadId: c.last_read_id,
    };
  }
  return { ...s, conversations, peerRead };
}

export function ensureConversation(s: ChatState, user: Pick<UserView, 'username' | 'display_name'>, presence?: Presence): ChatState {
  const c = s.conversations[user.username];
  const next: Conversation = c
    ? { ...c, displayName: user.display_name || c.displayName, presence: presence ?? c.presence }
    : {
        ...newConversation(user.username),
        displayName: user.display_name || user.username,
        presence: presence ?? { status: 'offline' },
      };
  return { ...s, conversations: { ...s.conversations, [user.username]: next } };
}

export function applyReadState(s: ChatState, peer: string, up_to: number, unread: number): ChatState {
  const c = s.conversations[peer];
  if (!c) return s;
  return { ...s, conversations: { ...s.conversations, [peer]: { ...c, lastReadId: Math.max(c.lastReadId, up_to), unread } } };
}

export function applyReadReceipt(s: ChatState, by: string, up_to: number): ChatState {
  if ((s.peerRead[by] ?? 0) >= up_to) return s;
  return { ...s, peerRead: { ...s.peerRead, [by]: up_to } };
}

export function applyTyping(s: ChatState, from: string, now: number): ChatState {
  return { ...s, typing: { ...s.typing, [from]: now + TYPING_SHOW_MS } };
}

export function isTyping(s: ChatState, peer: string, now: number): boolean {
  return (s.typing[peer] ?? 0) > now;
}

export function applyPresence(s: ChatState, user: string, presence: Presence): ChatState {
  const c = s.conversations[user];
  if (!c) return s;
  return { ...s, conversations: { ...s.conversations, [user]: { ...c, presence } } };
}

/** Most recent first; conversations without messages (just opened) on top. */
export function sortedConversations(s: ChatState): Conversation[] {
  return Object.values(s.conversations).sort((a, b) => (b.last?.id ?? Infinity) - (a.last?.id ?? Infinity) || a.peer.localeCompare(b.peer));
}

export function totalUnread(s: ChatState): number {
  return Object.values(s.conversations).reduce((n, c) => n + c.unread, 0);
}

export function delivery(s: ChatState, m: MessageView): Delivery {
  // Groups have no read receipts (yet): a stored message is "sent".
  if (m.to === undefined) return 'sent';
  return (s.peerRead[m.to] ?? 0) >= m.id ? 'read' : 'sent';
}

/** The newest message from someone else that I have not marked read, if any. */
export function unreadUpTo(s: ChatState, peer: string): number | null {
  const t = s.threads[peer];
  const c = s.conversations[peer];
  if (!t || !c) return null;
  for (let i = t.messages.length - 1; i >= 0; i--) {
    const m = t.messages[i];
    if (m.from !== s.me && isMessage(m)) return m.id > c.lastReadId ? m.id : null;
  }
  return null;
}

/** Where a thread's messages go over the socket. */
export function targetOf(key: string): SendTarget {
  return isGroupKey(key) ? { conversation_id: Number(key.slice(1)) } : { to: key };
}

// ------------------------------------------------------------------------------------------------

const TYPING_SEND_EVERY_MS = 2000;

export class ChatService {
  readonly store: Store<ChatState>;
  private lastTypingSent: Record<string, number> = {};
  private offs: (() => void)[] = [];
  private typingTimer: ReturnType<typeof setInterval> | null = null;

  constructor(
    private readonly http: Http,
    private readonly socket: Socket,
    me: string,
  ) {
    this.store = createStore(initialChatState(me));
  }

  private update(fn: (s: ChatState) => ChatState) {
    this.store.set(fn);
  }

  async start() {
    const sk = this.socket;
    this.offs.push(
      sk.onStatus((connection) => this.update((s) => ({ ...s, connection }))),
      sk.on('message', (f) => {
        const before = this.store.get();
        this.update((s) => addMessages(s, [f.message]));
        const m = f.message;
        const peer = peerOf(before.me, m);
        if (m.from !== before.me && (before.active !== peer || document.visibilityState !== 'visible')) {
          const name = before.conversations[peer]?.displayName ?? peer;
          const group = isGroupKey(peer);
          if (m.kind === 'missed_call') toast(`Missed call from ${name}`, 'info');
          else if (isMessage(m)) toast(group ? `${m.from} in ${name}: ${truncate(m.body, 80)}` : `${name}: ${truncate(m.body, 80)}`, 'info');
          // A group's call rings, and shows its "join" bar: a toast would say it twice.
          else if (m.kind !== 'call_started' && m.kind !== 'call_ended') toast(describeChange(before.me, m), 'info');
        }
        // A new group, or a change to one (its title, members, my role): fetch it as it is now.
        if (isGroupKey(peer) && (!before.conversations[peer] || !isMessage(m))) void this.fetchGroup(m.conversation_id);
        else if (!before.conversations[peer]) this.fetchProfile(peer);
        this.maybeMarkRead();
      }),
      sk.on('ack', (f) => this.update((s) => addMessages(s, [f.message]))),
      sk.on('read_receipt', (f) => this.update((s) => applyReadReceipt(s, f.by, f.up_to))),
      sk.on('read_state', (f) => this.update((s) => applyReadState(s, f.peer ?? groupKey(f.conversation_id), f.up_to, f.unread))),
      sk.on('typing', (f) => {
        // In a direct conversation the sender's name is the thread; in a group, the group.
        const key = this.store.get().conversations[groupKey(f.conversation_id)] ? groupKey(f.conversation_id) : f.from;
        this.update((s) => applyTyping(s, key, Date.now()));
      }),
      sk.on('presence', (f) => this.update((s) => applyPresence(s, f.user, { status: f.status, last_seen: f.last_seen }))),
      sk.on('resync_required', () => void this.resync()),
      sk.on('replay_end', () => this.maybeMarkRead()),
    );
    // Expire typing indicators.
    this.typingTimer = setInterval(() => {
      const s = this.store.get();
      const now = Date.now();
      const stale = Object.entries(s.typing).filter(([, until]) => until <= now);
      if (stale.length) {
        const typing = { ...s.typing };
        for (const [p] of stale) delete typing[p];
        this.update((x) => ({ ...x, typing }));
      }
    }, 500);
    document.addEventListener('visibilitychange', this.onVisible);
    window.addEventListener('focus', this.onVisible);
    await this.loadConversations();
    sk.start();
  }

  stop() {
    this.offs.forEach((f) => f());
    this.offs = [];
    if (this.typingTimer) clearInterval(this.typingTimer);
    document.removeEventListener('visibilitychange', this.onVisible);
    window.removeEventListener('focus', this.onVisible);
  }

  private onVisible = () => this.maybeMarkRead();

  async loadConversations() {
    try {
      const page = await this.http.conversations();
      this.update((s) => applyConversations(s, page.conversations));
      for (const c of page.conversations) if (c.last_message) this.socket.advanceCursor(c.last_message.id);
    } catch (e) {
      toast(`Could not load conversations: ${(e as Error).message}`, 'error');
    }
  }

  private async resync() {
    await this.loadConversations();
    const active = this.store.get().active;
    this.update((s) => ({ ...s, threads: {} }));
    if (active) await this.openThread(active);
  }

  private async fetchProfile(peer: string) {
    try {
      const p = await this.http.profile(peer);
      this.update((s) => ensureConversation(s, p, p.presence));
    } catch {
      /* keep the user name */
    }
  }

  private async fetchGroup(id: number) {
    try {
      const c = await this.http.conversation(id);
      this.update((s) => applyConversations(s, [c]));
    } catch {
      /* not a member (any more) */
    }
  }

  /** Makes a group and returns its thread key. */
  async createGroup(title: string, members: string[]): Promise<string> {
    const c = await this.http.createGroup(title, members);
    this.update((s) => applyConversations(s, [c]));
    return groupKey(c.id);
  }

  /** Adds members to a group. */
  async addMembers(key: string, users: string[]) {
    const id = this.store.get().conversations[key]?.id;
    if (id === undefined) return;
    const list = await this.http.addMembers(id, users);
    this.update((s) => {
      const c = s.conversations[key];
      return c ? { ...s, conversations: { ...s.conversations, [key]: { ...c, members: list.members.length } } } : s;
    });
  }

  async leave(key: string) {
    const id = this.store.get().conversations[key]?.id;
    if (id !== undefined) await this.http.leave(id);
  }

  /** The server's id of a thread's conversation; a direct one is opened if it has none yet. */
  private async conversationId(key: string): Promise<number> {
    if (isGroupKey(key)) return Number(key.slice(1));
    const known = this.store.get().conversations[key]?.id;
    if (known !== undefined) return known;
    const c = await this.http.openDirect(key);
    this.update((s) => {
      const conv = s.conversations[key];
      return conv ? { ...s, conversations: { ...s.conversations, [key]: { ...conv, id: c.id } } } : s;
    });
    return c.id;
  }

  /** Starts a conversation with a user found by search. */
  startConversation(user: UserView) {
    this.update((s) => ensureConversation(s, user));
    this.fetchProfile(user.username);
  }

  setActive(peer: string | null) {
    this.update((s) => ({ ...s, active: peer }));
    if (peer) {
      if (!this.store.get().conversations[peer]) this.fetchProfile(peer);
      void this.openThread(peer);
    }
  }

  async openThread(peer: string) {
    const t = this.store.get().threads[peer];
    if (t?.loaded) {
      this.maybeMarkRead();
      return;
    }
    try {
      const page = await this.http.history(await this.conversationId(peer), { limit: 50 });
      this.update((s) => applyHistory(s, peer, page, false));
      // The resume cursor stays where the socket put it: this page may hold messages that are
      // still on their way to the socket, and moving past them would skip the messages of other
      // conversations that are on their way too (docs/protocol.md, Resume).
      this.maybeMarkRead();
    } catch (e) {
      toast(`Could not load messages: ${(e as Error).message}`, 'error');
    }
  }

  async loadOlder(peer: string): Promise<boolean> {
    const t = this.store.get().threads[peer];
    if (!t || !t.loaded || !t.hasMore || t.loadingOlder) return false;
    const oldest = t.messages[0];
    if (!oldest) return false;
    this.update((s) => ({ ...s, threads: { ...s.threads, [peer]: { ...s.threads[peer], loadingOlder: true } } }));
    try {
      const page = await this.http.history(await this.conversationId(peer), { before: oldest.id, limit: 50 });
      this.update((s) => applyHistory(s, peer, page, true));
      return page.messages.length > 0;
    } catch (e) {
      this.update((s) => ({ ...s, threads: { ...s.threads, [peer]: { ...s.threads[peer], loadingOlder: false } } }));
      toast(`Could not load older messages: ${(e as Error).message}`, 'error');
      return false;
    }
  }

  /** Optimistic send: shows at once as "sending"; the socket retries with the same id until acked. */
  send(peer: string, body: string) {
    const text = body.trim();
    if (!text) return;
    const p: PendingMessage = { client_msg_id: newClientMsgId(), to: peer, body: text, created_at: new Date().toISOString() };
    this.update((s) => addPending(s, p));
    this.transmit(p);
  }

  retry(peer: string, client_msg_id: string) {
    const p = this.store.get().threads[peer]?.pending.find((x) => x.client_msg_id === client_msg_id);
    if (!p) return;
    this.update((s) => setPendingError(s, peer, client_msg_id, undefined));
    this.transmit(p);
  }

  private transmit(p: PendingMessage) {
    this.socket.sendMessage(targetOf(p.to), p.body, p.client_msg_id).then(
      (m) => this.update((s) => addMessages(s, [m])),
      (e: unknown) => {
        const msg = e instanceof SocketError ? e.message : String(e);
        this.update((s) => setPendingError(s, p.to, p.client_msg_id, msg));
      },
    );
  }

  /** Call on input; sends `typing` at most every 2 s per peer. */
  typing(peer: string) {
    const now = Date.now();
    if (now - (this.lastTypingSent[peer] ?? 0) < TYPING_SEND_EVERY_MS) return;
    if (this.socket.send({ type: 'typing', ...targetOf(peer) })) this.lastTypingSent[peer] = now;
  }

  /** Marks the active conversation read when the page is visible. */
  maybeMarkRead() {
    if (typeof document !== 'undefined' && document.visibilityState !== 'visible') return;
    const s = this.store.get();
    const peer = s.active;
    if (!peer) return;
    const upTo = unreadUpTo(s, peer);
    if (upTo === null) return;
    this.update((x) => applyReadState(x, peer, upTo, 0));
    const target = isGroupKey(peer) ? { conversation_id: Number(peer.slice(1)) } : { peer };
    if (!this.socket.send({ type: 'read', ...target, up_to: upTo })) {
      this.conversationId(peer)
        .then((id) => this.http.markRead(id, upTo))
        .catch(() => undefined);
    }
  }
}

function truncate(s: string, n: number) {
  return s.length > n ? s.slice(0, n - 1) + '…' : s;
}

