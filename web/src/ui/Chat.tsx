import { Fragment } from 'preact';
import { useLayoutEffect, useRef, useState, useEffect } from 'preact/hooks';
import type { MessageView } from '../generated/protocol';
import type { MemberList, UserView } from '../api/http';
import type { Session } from '../session';
import { delivery, describeChange, isMessage, isTyping, type PendingMessage } from '../state/chat';
import { useStore } from '../state/store';
import { toast } from '../state/toasts';
import { PeoplePicker, pickedNames } from './people';
import { Avatar, Icon, dayLabel, timeOf, useTick } from './util';

type Item = { kind: 'msg'; m: MessageView } | { kind: 'pending'; p: PendingMessage };

export function ChatView({ session, peer, onBack }: { session: Session; peer: string; onBack: () => void }) {
  const s = useStore(session.chat.store);
  const calls = useStore(session.calls.store);
  useTick(1000);
  const conv = s.conversations[peer];
  const thread = s.threads[peer];
  const listRef = useRef<HTMLDivElement>(null);
  const anchor = useRef<{ fromBottom: number; stick: boolean }>({ fromBottom: 0, stick: true });
  const [text, setText] = useState('');
  const inputRef = useRef<HTMLTextAreaElement>(null);

  useEffect(() => {
    anchor.current = { fromBottom: 0, stick: true };
    inputRef.current?.focus();
  }, [peer]);

  // Keep the view anchored: at the bottom when it was there, else where the reader was
  // (prepending older history must not move what is on screen).
  useLayoutEffect(() => {
    const el = listRef.current;
    if (!el) return;
    if (anchor.current.stick) el.scrollTop = el.scrollHeight;
    else el.scrollTop = el.scrollHeight - el.clientHeight - anchor.current.fromBottom;
  });

  const onScroll = () => {
    const el = listRef.current;
    if (!el) return;
    const fromBottom = el.scrollHeight - el.clientHeight - el.scrollTop;
    anchor.current = { fromBottom, stick: fromBottom < 40 };
    if (el.scrollTop < 120) void session.chat.loadOlder(peer);
  };

  const items: Item[] = [
    ...(thread?.messages ?? []).map((m) => ({ kind: 'msg' as const, m })),
    ...(thread?.pending ?? []).map((p) => ({ kind: 'pending' as const, p })),
  ];
  const name = conv?.displayName ?? peer;
  const group = conv?.kind === 'group';
  const member = conv?.member ?? true;
  const online = !group && conv?.presence.status === 'online';
  const [adding, setAdding] = useState(false);
  const [invitees, setInvitees] = useState('');
  const [invited, setInvited] = useState<UserView[]>([]);
  const [showMembers, setShowMembers] = useState(false);
  const typing = isTyping(s, peer, Date.now());
  const inCall = calls.phase !== 'idle' && calls.phase !== 'ended';
  const groupCall = group && member ? conv?.activeCall : undefined;
  const inThisCall = inCall && conv?.id !== undefined && calls.conversationId === conv.id;
  const callGroup = (media: 'audio' | 'video') => conv?.id !== undefined && void session.calls.callGroup(conv.id, media);

  const submit = (e?: Event) => {
    e?.preventDefault();
    if (!text.trim()) return;
    anchor.current.stick = true;
    session.chat.send(peer, text);
    setText('');
  };

  let lastDay = '';
  // In a group, the name and face of a sender head each run of their messages.
  let lastSender: string | null = null;
  return (
    <section class="chat" aria-label={`Conversation with ${name}`} data-testid="chat-view">
      <header class="chat-header">
        <button class="icon-btn only-narrow" onClick={onBack} aria-label="Back to conversations" data-testid="back">
          <Icon name="back" />
        </button>
        <Avatar name={name} size={40} online={group ? undefined : online} />
        <div class="chat-title">
          <h2 data-testid="chat-peer">{name}</h2>
          <span class="muted small" data-testid="chat-presence">
            {typing ? (
              <span class="typing-text">typing…</span>
            ) : group ? (
              member ? `${conv?.members ?? ''} members` : 'You are no longer a member'
            ) : online ? (
              'online'
            ) : conv?.presence.last_seen ? (
              `last seen ${timeOf(conv.presence.last_seen)}`
            ) : (
              'offline'
            )}
          </span>
        </div>
        <div class="spacer" />
        {group ? (
          member && (
            <>
              <button class="icon-btn" aria-label={`Voice call everyone in ${name}`} title="Voice call" data-testid="group-call-audio" disabled={inCall} onClick={() => callGroup('audio')}>
                <Icon name="phone" />
              </button>
              <button class="icon-btn" aria-label={`Video call everyone in ${name}`} title="Video call" data-testid="group-call-video" disabled={inCall} onClick={() => callGroup('video')}>
                <Icon name="video" />
              </button>
              <button class="btn link small" aria-label="Members" data-testid="group-members" onClick={() => setShowMembers(!showMembers)}>
                Members
              </button>
              <button class="icon-btn" aria-label="Add people" title="Add people" data-testid="group-add" onClick={() => setAdding(!adding)}>
                <Icon name="users" />
              </button>
              <button
                class="btn link small"
                aria-label="Leave group"
                data-testid="group-leave"
                onClick={() => void session.chat.leave(peer).catch((e: Error) => toast(`Could not leave: ${e.message}`, 'error'))}
              >
                Leave
              </button>
            </>
          )
        ) : (
          <>
            <button class="icon-btn" aria-label={`Audio call ${name}`} data-testid="call-audio" disabled={inCall} onClick={() => void session.calls.call(peer, 'audio')}>
              <Icon name="phone" />
            </button>
            <button class="icon-btn" aria-label={`Video call ${name}`} data-testid="call-video" disabled={inCall} onClick={() => void session.calls.call(peer, 'video')}>
              <Icon name="video" />
            </button>
          </>
        )}
      </header>
      {adding && (
        <form
          class="group-add"
          onSubmit={(e) => {
            e.preventDefault();
            const users = pickedNames(invited, invitees);
            if (users.length === 0) return;
            session.chat.addMembers(peer, users).then(
              () => {
                setInvitees('');
                setInvited([]);
                setAdding(false);
              },
              (x: Error) => toast(`Could not add: ${x.message}`, 'error'),
            );
          }}
        >
          <PeoplePicker http={session.http} me={s.me} picked={invited} onPicked={setInvited} typed={invitees} onTyped={setInvitees} label="People to add" testId="group-add-input" />
          <button class="btn primary small" type="submit" data-testid="group-add-submit">
            Add
          </button>
        </form>
      )}
      {groupCall && !inThisCall && (
        <div class="banner call-bar" role="status" data-testid="group-call-bar">
          <Icon name={groupCall.media === 'video' ? 'video' : 'phone'} />
          <span>
            {groupCall.started_by === s.me ? 'Your' : `${groupCall.started_by}’s`} {groupCall.media === 'video' ? 'video' : 'voice'} call is going on
          </span>
          <button class="btn primary small" data-testid="group-call-join" disabled={inCall} onClick={() => callGroup(groupCall.media)}>
            Join
          </button>
        </div>
      )}
      {group && member && showMembers && conv?.id !== undefined && (
        <MembersPanel session={session} id={conv.id} me={s.me} version={conv.last?.id ?? 0} />
      )}
      <div class="messages" ref={listRef} onScroll={onScroll} data-testid="messages" role="log" aria-live="polite" tabIndex={0} aria-label="Messages">
        {thread?.loadingOlder && <div class="loading-older">Loading…</div>}
        {thread?.loaded && !thread.hasMore && items.length > 0 && <div class="history-start">{group ? `This is the beginning of ${name}.` : `This is the beginning of your conversation with ${name}.`}</div>}
        {thread?.loaded && items.length === 0 && (
          <div class="empty-chat">
            <Avatar name={name} size={72} />
            <p>Say hello to {name} 👋</p>
          </div>
        )}
        {items.map((it) => {
          const created = it.kind === 'msg' ? it.m.created_at : it.p.created_at;
          const day = new Date(created).toDateString();
          const sep = day !== lastDay;
          lastDay = day;
          const sender = it.kind === 'msg' && isMessage(it.m) ? it.m.from : null;
          const firstOfRun = sep || sender !== lastSender;
          lastSender = sender;
          return (
            <Fragment key={it.kind === 'msg' ? `m${it.m.id}` : `p${it.p.client_msg_id}`}>
              {sep && (
                <div class="day-sep" data-testid="day-separator" role="separator">
                  <span>{dayLabel(created)}</span>
                </div>
              )}
              {it.kind === 'msg' ? (
                isMessage(it.m) ? (
                  <Bubble
                    m={it.m}
                    own={it.m.from === s.me}
                    state={it.m.from === s.me ? delivery(s, it.m) : null}
                    sender={group && it.m.from !== s.me ? (firstOfRun ? 'first' : 'more') : null}
                  />
                ) : (
                  <div class="system-msg neutral" data-testid="group-event" data-kind={it.m.kind} data-id={it.m.id}>
                    {describeChange(s.me, it.m)} · {timeOf(it.m.created_at)}
                  </div>
                )
              ) : (
                <PendingBubble p={it.p} onRetry={() => session.chat.retry(peer, it.p.client_msg_id)} />
              )}
            </Fragment>
          );
        })}
        <div class={`typing-row ${typing ? 'show' : ''}`} data-testid={typing ? 'typing-indicator' : undefined} aria-hidden={!typing}>
          <span class="typing-dots">
            <i />
            <i />
            <i />
          </span>
          {group ? 'Someone' : name} is typing
        </div>
      </div>
      {!member ? (
        <div class="composer muted small" data-testid="not-a-member">
          You can no longer send messages here.
        </div>
      ) : (
      <form class="composer" onSubmit={submit}>
        <textarea
          ref={inputRef}
          rows={1}
          value={text}
          placeholder={`Message ${name}`}
          aria-label={`Message ${name}`}
          data-testid="composer-input"
          onInput={(e) => {
            setText((e.target as HTMLTextAreaElement).value);
            session.chat.typing(peer);
          }}
          onKeyDown={(e) => {
            if (e.key === 'Enter' && !e.shiftKey) {
              e.preventDefault();
              submit();
            }
          }}
        />
        <button class="btn primary round" type="submit" aria-label="Send message" data-testid="send" disabled={!text.trim()}>
          <Icon name="send" />
        </button>
      </form>
      )}
    </section>
  );
}

/** A group's members, with what my role lets me do to each: remove, make admin or owner. */
function MembersPanel({ session, id, me, version }: { session: Session; id: number; me: string; version: number }) {
  const [members, setMembers] = useState<MemberList['members']>([]);
  // Reloaded whenever the group's newest event changes (someone joined, left, got a role).
  useEffect(() => {
    let live = true;
    session.http.members(id).then(
      (list) => live && setMembers(list.members),
      () => live && setMembers([]),
    );
    return () => {
      live = false;
    };
  }, [session, id, version]);
  const mine = members.find((m) => m.user.username === me)?.role ?? 'member';
  const rank = { member: 0, admin: 1, owner: 2 } as const;
  const act = (what: Promise<unknown>) =>
    what.then(
      () => session.http.members(id).then((list) => setMembers(list.members)),
      (e: Error) => toast(e.message, 'error'),
    );
  return (
    <ul class="members-panel" aria-label="Members" data-testid="members-panel">
      {members.map((m) => {
        const name = m.user.username;
        const self = name === me;
        return (
          <li key={name} data-testid="member" data-user={name} data-role={m.role}>
            <Avatar name={m.user.display_name} size={28} />
            <span class="member-name">
              {m.user.display_name} <span class="muted small">@{name}</span>
            </span>
            <span class="muted small">{m.role}</span>
            {!self && mine === 'owner' && m.role !== 'admin' && (
              <button class="btn link small" data-testid="make-admin" onClick={() => void act(session.http.setRole(id, name, 'admin'))}>
                Make admin
              </button>
            )}
            {!self && mine === 'owner' && m.role === 'admin' && (
              <button class="btn link small" data-testid="make-member" onClick={() => void act(session.http.setRole(id, name, 'member'))}>
                Make member
              </button>
            )}
            {!self && rank[mine] > rank[m.role] && (
              <button class="btn link small danger" data-testid="remove-member" aria-label={`Remove ${name}`} onClick={() => void act(session.http.removeMember(id, name))}>
                Remove
              </button>
            )}
          </li>
        );
      })}
    </ul>
  );
}

/** `sender`: in a group, whether this message heads a run of its sender's (name and face shown)
 * or follows one; `null` elsewhere. */
function Bubble({ m, own, state, sender }: { m: MessageView; own: boolean; state: string | null; sender: 'first' | 'more' | null }) {
  if (m.kind === 'missed_call') {
    return (
      <div class="system-msg" data-testid="missed-call" data-id={m.id}>
        <Icon name="phone" /> {own ? 'Call not answered' : `Missed call from ${m.from}`} · {timeOf(m.created_at)}
      </div>
    );
  }
  return (
    <div class={`bubble-row ${own ? 'own' : 'peer'}${sender ? ' in-group' : ''}`} data-testid="message" data-id={m.id} data-own={own ? 'true' : 'false'}>
      {sender && <span class="face">{sender === 'first' && <Avatar name={m.from} size={28} />}</span>}
      <div class="bubble">
        {sender === 'first' && (
          <span class="sender small" data-testid="sender">
            {m.from}
          </span>
        )}
        <span class="body">{m.body}</span>
        <span class="meta">
          <time dateTime={m.created_at}>{timeOf(m.created_at)}</time>
          {state && <Tick state={state} />}
        </span>
      </div>
    </div>
  );
}

function PendingBubble({ p, onRetry }: { p: PendingMessage; onRetry: () => void }) {
  return (
    <div class="bubble-row own" data-testid="message" data-pending="true" data-own="true">
      <div class={`bubble ${p.error ? 'failed' : 'sending'}`}>
        <span class="body">{p.body}</span>
        <span class="meta">
          <time dateTime={p.created_at}>{timeOf(p.created_at)}</time>
          <Tick state={p.error ? 'failed' : 'sending'} />
        </span>
        {p.error && (
          <button class="btn link small" onClick={onRetry} aria-label="Retry sending" data-testid="retry">
            Not sent — retry
          </button>
        )}
      </div>
    </div>
  );
}

function Tick({ state }: { state: string }) {
  const label = { sending: 'Sending', sent: 'Sent', read: 'Read', failed: 'Failed' }[state] ?? state;
  const glyph = { sending: '🕓', sent: '✓', read: '✓✓', failed: '!' }[state] ?? '';
  return (
    <span class={`tick ${state}`} data-testid="delivery" data-state={state} aria-label={label} title={label}>
      {glyph}
    </span>
  );
}
