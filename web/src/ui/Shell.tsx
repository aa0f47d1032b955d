import { useEffect, useState } from 'preact/hooks';
import { ApiError, type Http, type UserView } from '../api/http';
import type { Session } from '../session';
import { describeChange, isMessage, sortedConversations, totalUnread } from '../state/chat';
import { useStore } from '../state/store';
import { toast } from '../state/toasts';
import { CallOverlays, CallView, RoomsView } from './Call';
import { ChatView } from './Chat';
import { PeopleFound, PeoplePicker, pickedNames, useUserSearch } from './people';
import { Avatar, Icon, shortTime } from './util';

type Route = { kind: 'home' } | { kind: 'chat'; peer: string } | { kind: 'rooms' } | { kind: 'settings' };

function parseRoute(): Route {
  const h = location.hash.replace(/^#\/?/, '');
  if (h.startsWith('chat/')) return { kind: 'chat', peer: decodeURIComponent(h.slice(5)) };
  if (h === 'rooms') return { kind: 'rooms' };
  if (h === 'settings') return { kind: 'settings' };
  return { kind: 'home' };
}
function go(hash: string) {
  location.hash = hash;
}

export function Shell({ session }: { session: Session }) {
  const [route, setRoute] = useState<Route>(parseRoute);
  const chat = useStore(session.chat.store);
  const calls = useStore(session.calls.store);
  useEffect(() => {
    const on = () => setRoute(parseRoute());
    window.addEventListener('hashchange', on);
    return () => window.removeEventListener('hashchange', on);
  }, []);
  useEffect(() => session.chat.setActive(route.kind === 'chat' ? route.peer : null), [route, session]);
  const unread = totalUnread(chat);
  useEffect(() => {
    document.title = unread > 0 ? `(${unread}) pychat` : 'pychat';
  }, [unread]);

  const inCall = calls.phase !== 'idle' && calls.phase !== 'ended';
  const showCall = inCall && (calls.direct || calls.conversationId !== null || route.kind === 'rooms');
  let main;
  if (showCall) main = <CallView session={session} />;
  else if (route.kind === 'chat') main = <ChatView session={session} peer={route.peer} onBack={() => go('')} />;
  else if (route.kind === 'rooms') main = <RoomsView session={session} onBack={() => go('')} />;
  else if (route.kind === 'settings') main = <Settings session={session} onBack={() => go('')} />;
  else
    main = (
      <div class="placeholder">
        <img src="/favicon.svg" alt="" width={64} height={64} />
        <h2>Welcome, {session.user.display_name}</h2>
        <p class="muted">Pick a conversation, search for someone to start one, or open a group call.</p>
      </div>
    );

  return (
    <div class={`shell ${route.kind === 'home' && !showCall ? 'at-home' : 'at-detail'}`}>
      {(chat.connection === 'reconnecting' || chat.connection === 'connecting') && (
        <div class="reconnect-banner" role="status" data-testid="reconnecting">
          {chat.connection === 'connecting' ? 'Connecting…' : 'Connection lost — reconnecting…'}
        </div>
      )}
      <aside class="sidebar" aria-label="Conversations">
        <header class="side-header">
          <Avatar name={session.user.display_name} size={36} />
          <div class="me">
            <strong data-testid="me-name">{session.user.display_name}</strong>
            <span class="muted small">@{session.user.username}</span>
          </div>
          <div class="spacer" />
          <button class={`icon-btn ${route.kind === 'rooms' ? 'active' : ''}`} onClick={() => go('rooms')} aria-label="Group calls" data-testid="nav-rooms" title="Group calls">
            <Icon name="users" />
          </button>
          <button class={`icon-btn ${route.kind === 'settings' ? 'active' : ''}`} onClick={() => go('settings')} aria-label="Settings" data-testid="nav-settings" title="Settings">
            <Icon name="settings" />
          </button>
        </header>
        {inCall && !showCall && (
          <button class="return-call" onClick={() => go('rooms')} aria-label="Return to call">
            In a call: {calls.room} — return
          </button>
        )}
        <UserSearch http={session.http} me={session.user.username} onPick={(u) => {
          session.chat.startConversation(u);
          go(`chat/${encodeURIComponent(u.username)}`);
        }} />
        <NewGroup
          http={session.http}
          me={session.user.username}
          onCreate={async (title, members) => {
            const key = await session.chat.createGroup(title, members);
            go(`chat/${encodeURIComponent(key)}`);
          }}
        />
        <nav class="conv-list" aria-label="Conversation list" data-testid="conversation-list">
          {sortedConversations(chat).map((c) => {
            const active = route.kind === 'chat' && route.peer === c.peer;
            const group = c.kind === 'group';
            const preview = c.last
              ? c.last.kind === 'missed_call'
                ? '📞 Missed call'
                : !isMessage(c.last)
                  ? describeChange(chat.me, c.last)
                  : (c.last.from === chat.me ? 'You: ' : group ? `${c.last.from}: ` : '') + c.last.body
              : 'No messages yet';
            return (
              <a
                key={c.peer}
                href={`#/chat/${encodeURIComponent(c.peer)}`}
                class={`conv ${active ? 'active' : ''} ${c.unread ? 'has-unread' : ''}`}
                data-testid="conversation"
                data-peer={c.peer}
                data-kind={c.kind}
                aria-label={`${c.displayName}${c.unread ? `, ${c.unread} unread` : ''}, ${group ? `group of ${c.members ?? '?'}` : c.presence.status}`}
                aria-current={active ? 'page' : undefined}
              >
                <Avatar name={c.displayName} size={44} online={group ? undefined : c.presence.status === 'online'} />
                <span class="conv-main">
                  <span class="conv-top">
                    <strong class="conv-name">{c.displayName}</strong>
                    {c.last && <span class="conv-time muted small">{shortTime(c.last.created_at)}</span>}
                  </span>
                  <span class="conv-bottom">
                    <span class="preview" data-testid="preview">
                      {chat.typing[c.peer] ? <em class="typing-text">typing…</em> : preview}
                    </span>
                    {c.unread > 0 && (
                      <span class="badge" data-testid="unread-badge" aria-label={`${c.unread} unread`}>
                        {c.unread}
                      </span>
                    )}
                  </span>
                </span>
              </a>
            );
          })}
          {Object.keys(chat.conversations).length === 0 && <p class="muted small empty-list">No conversations yet. Search for a user above to start chatting.</p>}
        </nav>
      </aside>
      <main class="main">{main}</main>
      <CallOverlays session={session} />
    </div>
  );
}

/** "New group": a title and its first members, picked from a search (or typed). */
function NewGroup({ http, me, onCreate }: { http: Http; me: string; onCreate: (title: string, members: string[]) => Promise<void> }) {
  const [open, setOpen] = useState(false);
  const [title, setTitle] = useState('');
  const [members, setMembers] = useState('');
  const [picked, setPicked] = useState<UserView[]>([]);
  const [error, setError] = useState<string | null>(null);
  if (!open) {
    return (
      <button class="btn link small new-group" onClick={() => setOpen(true)} data-testid="new-group">
        + New group
      </button>
    );
  }
  return (
    <form
      class="card new-group-form"
      aria-label="New group"
      onSubmit={async (e) => {
        e.preventDefault();
        setError(null);
        try {
          await onCreate(title, pickedNames(picked, members));
          setTitle('');
          setMembers('');
          setPicked([]);
          setOpen(false);
        } catch (x) {
          const err = x as ApiError;
          setError(err.fieldMessage?.('title') ?? err.message);
        }
      }}
    >
      <input value={title} placeholder="Group name" aria-label="Group name" data-testid="new-group-title" onInput={(e) => setTitle((e.target as HTMLInputElement).value)} />
      <PeoplePicker http={http} me={me} picked={picked} onPicked={setPicked} typed={members} onTyped={setMembers} label="Group members" testId="new-group-members" />
      {error && (
        <small class="field-error" role="alert">
          {error}
        </small>
      )}
      <span class="row">
        <button class="btn primary small" type="submit" data-testid="new-group-create">
          Create
        </button>
        <button class="btn link small" type="button" onClick={() => setOpen(false)}>
          Cancel
        </button>
      </span>
    </form>
  );
}

function UserSearch({ http, me, onPick }: { http: Http; me: string; onPick: (u: UserView) => void }) {
  const [q, setQ] = useState('');
  const results = useUserSearch(http, me, q);
  return (
    <div class="search">
      <label class="search-box">
        <Icon name="search" />
        <input
          type="search"
          value={q}
          placeholder="Search people"
          aria-label="Search people"
          data-testid="user-search"
          onInput={(e) => setQ((e.target as HTMLInputElement).value)}
          onKeyDown={(e) => {
            if (e.key === 'Enter' && results[0]) {
              onPick(results[0]);
              setQ('');
            }
          }}
        />
      </label>
      <PeopleFound
        people={results}
        action="Chat with"
        label="Search results"
        class="search-results"
        testId="search-result"
        onChoose={(u) => {
          onPick(u);
          setQ('');
        }}
      />
    </div>
  );
}

function Settings({ session, onBack }: { session: Session; onBack: () => void }) {
  const [name, setName] = useState(session.user.display_name);
  const [cur, setCur] = useState('');
  const [next, setNext] = useState('');
  const [pwErr, setPwErr] = useState<ApiError | null>(null);
  const [nameErr, setNameErr] = useState<ApiError | null>(null);
  return (
    <section class="settings" aria-label="Settings">
      <header class="chat-header">
        <button class="icon-btn only-narrow" onClick={onBack} aria-label="Back to conversations">
          <Icon name="back" />
        </button>
        <h2>Settings</h2>
      </header>
      <div class="settings-body">
        <form
          class="card"
          onSubmit={async (e) => {
            e.preventDefault();
            setNameErr(null);
            try {
              await session.http.updateDisplayName(name.trim());
              toast('Display name saved', 'success');
            } catch (x) {
              setNameErr(x as ApiError);
            }
          }}
        >
          <h3>Profile</h3>
          <label class="field">
            <span>Display name</span>
            <input value={name} onInput={(e) => setName((e.target as HTMLInputElement).value)} aria-label="Display name" data-testid="settings-display-name" />
            {nameErr && <small class="field-error" role="alert">{nameErr.fieldMessage('display_name') ?? nameErr.message}</small>}
          </label>
          <button class="btn primary" type="submit" aria-label="Save display name" data-testid="settings-save-name">
            Save
          </button>
        </form>
        <form
          class="card"
          onSubmit={async (e) => {
            e.preventDefault();
            setPwErr(null);
            try {
              await session.http.changePassword(cur, next);
              setCur('');
              setNext('');
              toast('Password changed; other sessions were signed out', 'success');
            } catch (x) {
              setPwErr(x as ApiError);
            }
          }}
        >
          <h3>Change password</h3>
          <label class="field">
            <span>Current password</span>
            <input type="password" autoComplete="current-password" value={cur} onInput={(e) => setCur((e.target as HTMLInputElement).value)} aria-label="Current password" />
            {pwErr?.fieldMessage('current_password') && <small class="field-error" role="alert">{pwErr.fieldMessage('current_password')}</small>}
          </label>
          <label class="field">
            <span>New password</span>
            <input type="password" autoComplete="new-password" value={next} onInput={(e) => setNext((e.target as HTMLInputElement).value)} aria-label="New password" />
            {pwErr?.fieldMessage('new_password') && <small class="field-error" role="alert">{pwErr.fieldMessage('new_password')}</small>}
          </label>
          {pwErr && pwErr.fields.length === 0 && (
            <div class="form-error" role="alert">
              {pwErr.code === 'invalid_credentials' ? 'The current password is wrong.' : pwErr.message}
            </div>
          )}
          <button class="btn primary" type="submit" aria-label="Change password">
            Change password
          </button>
        </form>
        <div class="card">
          <h3>Session</h3>
          <button class="btn danger" onClick={() => void session.http.logout()} aria-label="Sign out" data-testid="sign-out">
            <Icon name="logout" /> Sign out
          </button>
        </div>
      </div>
    </section>
  );
}
