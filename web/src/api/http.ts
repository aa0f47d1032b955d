// The one fetch wrapper: JSON in and out, typed error codes, the in-memory access token and its
// refresh (serialized across tabs with a Web Lock; tabs share fresh tokens over a
// BroadcastChannel so a second refresh with an already-rotated cookie never happens).
import type { ErrorCode, Role } from '../generated/protocol';
import type {
  AuthResponse,
  ConversationPage,
  ConversationView,
  MemberList,
  FieldError,
  HistoryPage,
  IceServers,
  Profile,
  UserList,
  UserView,
} from '../generated/api';

// The bodies' types are generated from the server's Rust types (web/src/generated/api.ts).
export type {
  ActiveCall,
  AuthResponse,
  ConversationPage,
  ConversationView,
  FieldError,
  HistoryPage,
  MemberList,
  Presence,
  Profile,
  UserList,
  UserView,
} from '../generated/api';
export type IceServersResponse = IceServers;

/** A failed request: `code` is the server's stable code, or `network_error` / `http_<status>`. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: ErrorCode | 'network_error' | `http_${number}`,
    message: string,
    readonly fields: FieldError[] = [],
  ) {
    super(message);
    this.name = 'ApiError';
  }
  fieldMessage(field: string): string | undefined {
    return this.fields.find((f) => f.field === field)?.message;
  }
}

type AuthListener = (user: UserView | null) => void;
type ChannelMsg =
  | { type: 'token'; access_token: string; user: UserView }
  | { type: 'token_request' }
  | { type: 'logout' };

export interface HttpOptions {
  fetch?: typeof fetch;
  base?: string;
}

export class Http {
  private token: string | null = null;
  private user: UserView | null = null;
  private refreshing: Promise<boolean> | null = null;
  private listeners = new Set<AuthListener>();
  private channel: BroadcastChannel | null;
  private readonly fetchImpl: typeof fetch;
  private readonly base: string;

  constructor(opts: HttpOptions = {}) {
    this.fetchImpl = opts.fetch ?? ((input, init) => fetch(input, init));
    this.base = opts.base ?? '';
    this.channel = typeof BroadcastChannel !== 'undefined' ? new BroadcastChannel('pychat-auth') : null;
    this.channel?.addEventListener('message', (e: MessageEvent<ChannelMsg>) => this.onChannel(e.data));
  }

  get currentUser(): UserView | null {
    return this.user;
  }
  get signedIn(): boolean {
    return this.token !== null;
  }

  onAuthChange(fn: AuthListener): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  private setSession(token: string | null, user: UserView | null, broadcast: boolean) {
    const changed = (this.user?.id ?? null) !== (user?.id ?? null);
    this.token = token;
    this.user = user;
    if (broadcast && token && user) this.channel?.postMessage({ type: 'token', access_token: token, user } satisfies ChannelMsg);
    if (changed) this.listeners.forEach((fn) => fn(user));
  }

  private onChannel(msg: ChannelMsg) {
    if (msg.type === 'token') {
      // Only adopt another tab's token for the same account (or when we have none yet).
      if (!this.user || this.user.id === msg.user.id) this.setSession(msg.access_token, msg.user, false);
    } else if (msg.type === 'token_request') {
      if (this.token && this.user) this.channel?.postMessage({ type: 'token', access_token: this.token, user: this.user } satisfies ChannelMsg);
    } else if (msg.type === 'logout') {
      this.setSession(null, null, false);
    }
  }

  /** Updates the cached user after a profile change. */
  updateUser(user: UserView) {
    this.user = user;
    this.listeners.forEach((fn) => fn(user));
  }

  /** On load: borrow a token from an open tab, else refresh with the cookie. */
  async restore(): Promise<UserView | null> {
    if (this.channel) {
      const got = await new Promise<boolean>((resolve) => {
        const t = setTimeout(() => resolve(false), 150);
        const off = this.onAuthChange((u) => {
          if (u) {
            clearTimeout(t);
            off();
            resolve(true);
          }
        });
        this.channel?.postMessage({ type: 'token_request' } satisfies ChannelMsg);
      });
      if (got && this.user) return this.user;
    }
    const ok = await this.refresh(null);
    return ok ? this.user : null;
  }

  /**
   * Gets a new access token with the refresh cookie. Concurrent callers in this tab share one
   * attempt; across tabs a Web Lock serializes them, and a tab that waited adopts the token the
   * other tab broadcast instead of spending the (already rotated) cookie again.
   */
  refresh(stale: string | null): Promise<boolean> {
    if (this.refreshing) return this.refreshing;
    const run = async (): Promise<boolean> => {
      if (this.token && this.token !== stale) return true; // someone refreshed while we waited
      let res: Response;
      try {
        res = await this.fetchImpl(this.base + '/api/auth/refresh', { method: 'POST', credentials: 'same-origin' });
      } catch {
        return false;
      }
      if (!res.ok) {
        if (res.status === 401) this.setSession(null, null, false);
        return false;
      }
      const body = (await res.json()) as AuthResponse;
      this.setSession(body.access_token, body.user, true);
      return true;
    };
    const locks = typeof navigator !== 'undefined' ? navigator.locks : undefined;
    this.refreshing = (locks ? locks.request('pychat-refresh', run) : run()).finally(() => {
      this.refreshing = null;
    });
    return this.refreshing;
  }

  async request<T>(method: string, path: string, body?: unknown, retried = false): Promise<T> {
    const headers: Record<string, string> = { Accept: 'application/json' };
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    const token = this.token;
    if (token) headers.Authorization = `Bearer ${token}`;
    let res: Response;
    try {
      res = await this.fetchImpl(this.base + path, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
        credentials: 'same-origin',
      });
    } catch (e) {
      throw new ApiError(0, 'network_error', e instanceof Error ? e.message : 'Network error');
    }
    if (res.status === 401 && !retried && token && !path.startsWith('/api/auth/')) {
      const err = await readError(res);
      if (err.code === 'invalid_token' || err.code === 'missing_token') {
        if (await this.refresh(token)) return this.request<T>(method, path, body, true);
      }
      throw err;
    }
    if (!res.ok) throw await readError(res);
    if (res.status === 204) return undefined as T;
    const text = await res.text();
    return (text ? JSON.parse(text) : undefined) as T;
  }

  get<T>(path: string) {
    return this.request<T>('GET', path);
  }
  post<T>(path: string, body?: unknown) {
    return this.request<T>('POST', path, body);
  }

  // ---- auth ----
  async register(username: string, password: string, display_name?: string): Promise<UserView> {
    const r = await this.request<AuthResponse>('POST', '/api/auth/register', {
      username,
      password,
      display_name: display_name || undefined,
    });
    this.setSession(r.access_token, r.user, true);
    return r.user;
  }
  async login(username: string, password: string): Promise<UserView> {
    const r = await this.request<AuthResponse>('POST', '/api/auth/login', { username, password });
    this.setSession(r.access_token, r.user, true);
    return r.user;
  }
  async logout(): Promise<void> {
    try {
      await this.request('POST', '/api/auth/logout');
    } finally {
      this.channel?.postMessage({ type: 'logout' } satisfies ChannelMsg);
      this.setSession(null, null, false);
    }
  }
  /** The server ended this sign-in (the socket was closed with 4001): every tab signs out. */
  sessionEnded() {
    this.channel?.postMessage({ type: 'logout' } satisfies ChannelMsg);
    this.setSession(null, null, false);
  }
  changePassword(current_password: string, new_password: string) {
    return this.request<void>('PUT', '/api/me/password', { current_password, new_password });
  }
  async updateDisplayName(display_name: string): Promise<UserView> {
    const u = await this.request<UserView>('PATCH', '/api/me', { display_name });
    this.updateUser(u);
    return u;
  }

  // ---- data ----
  searchUsers(q: string, limit = 20) {
    return this.get<UserList>(`/api/users?q=${encodeURIComponent(q)}&limit=${limit}`);
  }
  profile(username: string) {
    return this.get<Profile>(`/api/users/${encodeURIComponent(username)}`);
  }
  conversations() {
    return this.get<ConversationPage>('/api/conversations?limit=100');
  }
  /** Opens (or finds) the direct conversation with `username`. */
  openDirect(username: string) {
    return this.post<ConversationView>('/api/conversations', { user: username });
  }
  createGroup(title: string, members: string[]) {
    return this.post<ConversationView>('/api/conversations', { title, members });
  }
  conversation(id: number) {
    return this.get<ConversationView>(`/api/conversations/${id}`);
  }
  members(id: number) {
    return this.get<MemberList>(`/api/conversations/${id}/members`);
  }
  addMembers(id: number, users: string[]) {
    return this.post<MemberList>(`/api/conversations/${id}/members`, { users });
  }
  removeMember(id: number, username: string) {
    return this.request<void>('DELETE', `/api/conversations/${id}/members/${encodeURIComponent(username)}`);
  }
  setRole(id: number, username: string, role: Role) {
    return this.request<MemberList>('PATCH', `/api/conversations/${id}/members/${encodeURIComponent(username)}`, { role });
  }
  leave(id: number) {
    return this.post<unknown>(`/api/conversations/${id}/leave`);
  }
  history(id: number, opts: { before?: number; after?: number; limit?: number } = {}) {
    const q = new URLSearchParams();
    if (opts.before) q.set('before', String(opts.before));
    if (opts.after) q.set('after', String(opts.after));
    q.set('limit', String(opts.limit ?? 50));
    return this.get<HistoryPage>(`/api/conversations/${id}/messages?${q}`);
  }
  markRead(id: number, up_to: number) {
    return this.post<unknown>(`/api/conversations/${id}/read`, { up_to });
  }
  async wsTicket(): Promise<string> {
    return (await this.post<{ ticket: string }>('/api/ws/ticket')).ticket;
  }
  iceServers() {
    return this.get<IceServersResponse>('/api/ice-servers');
  }
}

async function readError(res: Response): Promise<ApiError> {
  try {
    const body = (await res.json()) as { error?: { code: ErrorCode; message: string; fields?: FieldError[] } };
    if (body.error) return new ApiError(res.status, body.error.code, body.error.message, body.error.fields ?? []);
  } catch {
    /* not JSON */
  }
  return new ApiError(res.status, `http_${res.status}`, res.statusText || `HTTP ${res.status}`);
}
