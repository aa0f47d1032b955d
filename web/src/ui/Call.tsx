import { useEffect, useRef, useState } from 'preact/hooks';
import type { Session } from '../session';
import { callStatus, type CallState, type RemotePeer } from '../call/call';
import { groupKey } from '../state/chat';
import { useStore } from '../state/store';
import { Avatar, Icon, useTick } from './util';

function Video({ stream, muted, label }: { stream: MediaStream | null; muted: boolean; label: string }) {
  const ref = useRef<HTMLVideoElement>(null);
  useEffect(() => {
    const el = ref.current;
    if (el && el.srcObject !== stream) {
      el.srcObject = stream;
      if (stream) el.play().catch(() => undefined);
    }
  });
  return <video ref={ref} autoplay playsInline muted={muted} aria-label={label} />;
}

function fmtDuration(ms: number) {
  const s = Math.max(0, Math.floor(ms / 1000));
  const h = Math.floor(s / 3600);
  const mm = String(Math.floor((s % 3600) / 60)).padStart(2, '0');
  const ss = String(s % 60).padStart(2, '0');
  return h ? `${h}:${mm}:${ss}` : `${mm}:${ss}`;
}

/** Rooms by name: create / join, then the call itself. */
export function RoomsView({ session, onBack }: { session: Session; onBack: () => void }) {
  const c = useStore(session.calls.store);
  const [name, setName] = useState('');
  if (c.phase !== 'idle' && c.phase !== 'ended') return <CallView session={session} />;
  return (
    <section class="rooms" aria-label="Rooms">
      <header class="chat-header">
        <button class="icon-btn only-narrow" onClick={onBack} aria-label="Back to conversations">
          <Icon name="back" />
        </button>
        <h2>Group calls</h2>
      </header>
      <div class="rooms-body">
        <form
          class="card room-form"
          onSubmit={(e) => {
            e.preventDefault();
            void session.calls.createRoom(name);
          }}
        >
          <h3>Start or join a room</h3>
          <p class="muted">Create a room, share its name, and start the session when everyone is in. Up to 6 people.</p>
          <label class="field">
            <span>Room name</span>
            <input value={name} onInput={(e) => setName((e.target as HTMLInputElement).value)} placeholder="e.g. Team standup" aria-label="Room name" data-testid="room-name" maxLength={64} />
          </label>
          {c.error && (
            <div class="form-error" role="alert" data-testid="room-error">
              {c.error}
            </div>
          )}
          <div class="row">
            <button class="btn primary" type="submit" disabled={!name.trim() || c.busy} aria-label="Create room" data-testid="room-create">
              Create room
            </button>
            <button class="btn" type="button" disabled={!name.trim() || c.busy} aria-label="Join room" data-testid="room-join" onClick={() => void session.calls.joinRoom(name)}>
              Join room
            </button>
          </div>
          <p class="status-line">
            Status: <strong data-testid="call-status">{callStatus(c)}</strong>
          </p>
        </form>
      </div>
    </section>
  );
}

function PeerTile({ p }: { p: RemotePeer }) {
  const hasVideo = p.camera && !!p.stream && p.stream.getVideoTracks().length > 0;
  return (
    <div class={`tile ${hasVideo ? '' : 'audio-only'}`} data-testid="remote-tile" data-peer={p.peerId} data-user={p.username} data-step={p.step}>
      <Video stream={p.stream} muted={false} label={`Video of ${p.username}`} />
      {!hasVideo && (
        <div class="tile-avatar">
          <Avatar name={p.username} size={72} />
        </div>
      )}
      <div class="tile-label">
        {p.muted && (
          <span class="muted-ind" data-testid="peer-muted" aria-label={`${p.username} is muted`}>
            <Icon name="micOff" />
          </span>
        )}
        {p.username}
        {p.screen && <span class="chip">screen</span>}
        {!p.connected && <span class="chip warn">reconnecting</span>}
        {p.step !== 'connected' && <span class="chip">{p.step}</span>}
      </div>
    </div>
  );
}

export function CallView({ session }: { session: Session }) {
  const c: CallState = useStore(session.calls.store);
  useTick(1000, c.startedAt !== null);
  const me = session.user.username;
  const isCreator = c.creator !== null && c.creator === c.myPeerId;
  const remotes = Object.values(c.peers);
  const status = callStatus(c);
  const chats = useStore(session.chat.store);
  const group = c.conversationId !== null ? chats.conversations[groupKey(c.conversationId)] : undefined;
  const title = c.direct
    ? `Call with ${c.members.find((m) => m.peer_id !== c.myPeerId)?.username ?? '…'}`
    : c.conversationId !== null
      ? `Call in ${group?.displayName ?? 'the group'}`
      : (c.room ?? '');
  return (
    <section class="call" aria-label="Call" data-testid="call-view">
      <header class="call-header">
        <div>
          <h2 data-testid="call-room">{title}</h2>
          <span class="muted small">
            Status: <strong data-testid="call-status">{status}</strong>
            {c.startedAt && (
              <>
                {' · '}
                <span data-testid="call-timer">{fmtDuration(Date.now() - c.startedAt)}</span>
              </>
            )}
          </span>
        </div>
        <div class="spacer" />
        {c.phase !== 'started' && !c.direct && isCreator && (
          <button class="btn primary" onClick={() => void session.calls.startSession()} disabled={c.members.length < 2} aria-label="Start session" data-testid="session-start">
            Start session
          </button>
        )}
      </header>
      {c.mediaError && (
        <div class="banner warn" role="alert" data-testid="media-error">
          {c.mediaError}
        </div>
      )}
      {c.error && (
        <div class="banner warn" role="alert">
          {c.error}
        </div>
      )}
      <div class="call-body">
        <div class={`grid n${Math.min(remotes.length + 1, 6)}`} data-testid="video-grid">
          <div class={`tile self ${c.camera && c.localStream?.getVideoTracks().length ? '' : 'audio-only'}`} data-testid="local-tile">
            <Video stream={c.localStream} muted={true} label="Your video" />
            {!(c.camera && c.localStream?.getVideoTracks().length) && (
              <div class="tile-avatar">
                <Avatar name={me} size={72} />
              </div>
            )}
            <div class="tile-label">
              {c.muted && (
                <span class="muted-ind" aria-label="You are muted">
                  <Icon name="micOff" />
                </span>
              )}
              You{c.screen && <span class="chip">screen</span>}
            </div>
          </div>
          {remotes.map((p) => (
            <PeerTile key={p.peerId} p={p} />
          ))}
        </div>
        {!c.direct && (
          <aside class="members" aria-label="Members">
            <h3>Members ({c.members.length})</h3>
            <ul data-testid="members">
              {c.members.map((m) => (
                <li key={m.peer_id} data-testid="member" data-user={m.username}>
                  <Avatar name={m.username} size={28} online={m.connected} />
                  <span>
                    {m.username}
                    {m.peer_id === c.myPeerId && ' (you)'}
                    {m.peer_id === c.creator && <span class="chip">host</span>}
                  </span>
                  {m.muted && (
                    <span class="muted-ind" aria-label={`${m.username} is muted`}>
                      <Icon name="micOff" />
                    </span>
                  )}
                </li>
              ))}
            </ul>
            {c.phase !== 'started' && <p class="muted small">{isCreator ? 'Share the room name; start the session when everyone has joined.' : 'Waiting for the host to start the session…'}</p>}
          </aside>
        )}
      </div>
      <footer class="controls" role="toolbar" aria-label="Call controls">
        <button class={`ctl ${c.muted ? 'off' : ''}`} onClick={() => session.calls.toggleMute()} aria-pressed={c.muted} aria-label={c.muted ? 'Unmute microphone' : 'Mute microphone'} data-testid="toggle-mute">
          <Icon name={c.muted ? 'micOff' : 'mic'} />
        </button>
        <button class={`ctl ${c.camera ? '' : 'off'}`} onClick={() => session.calls.toggleCamera()} aria-pressed={!c.camera} aria-label={c.camera ? 'Turn camera off' : 'Turn camera on'} data-testid="toggle-camera">
          <Icon name={c.camera ? 'video' : 'videoOff'} />
        </button>
        <button class={`ctl ${c.screen ? 'on' : ''}`} onClick={() => void session.calls.toggleScreen()} aria-pressed={c.screen} aria-label={c.screen ? 'Stop sharing screen' : 'Share screen'} data-testid="toggle-screen" disabled={c.phase !== 'started'}>
          <Icon name="screen" />
        </button>
        <button class="ctl danger" onClick={() => void session.calls.leave()} aria-label="Leave call" data-testid="call-leave">
          <Icon name="hangup" />
        </button>
        {isCreator && !c.direct && (
          <button class="btn danger" onClick={() => void session.calls.end()} aria-label="End call for everyone" data-testid="call-end">
            End for all
          </button>
        )}
      </footer>
    </section>
  );
}

/** Ringing (callee) and calling (caller) overlays. */
export function CallOverlays({ session }: { session: Session }) {
  const c = useStore(session.calls.store);
  const chats = useStore(session.chat.store);
  if (c.incoming) {
    const inc = c.incoming;
    const group = inc.conversation_id !== undefined ? (chats.conversations[groupKey(inc.conversation_id)]?.displayName ?? 'a group') : null;
    return (
      <div class="overlay" role="dialog" aria-modal="true" aria-label={`Incoming call from ${inc.from}`} data-testid="incoming-call">
        <div class="ring-card">
          <div class="pulse">
            <Avatar name={inc.from} size={88} />
          </div>
          <h2>{inc.from}</h2>
          <p class="muted" data-testid="incoming-what">{group ? `Calling everyone in ${group} (${inc.media})…` : `Incoming ${inc.media} call…`}</p>
          <div class="row center">
            <button class="ctl danger big" onClick={() => void session.calls.declineCall()} aria-label="Decline call" data-testid="call-decline">
              <Icon name="hangup" />
            </button>
            <button class="ctl accept big" onClick={() => void session.calls.acceptCall()} aria-label="Accept call" data-testid="call-accept" autoFocus>
              <Icon name={inc.media === 'video' ? 'video' : 'phone'} />
            </button>
          </div>
        </div>
      </div>
    );
  }
  if (c.outgoing) {
    const o = c.outgoing;
    return (
      <div class="overlay" role="dialog" aria-modal="true" aria-label={`Calling ${o.to}`} data-testid="outgoing-call">
        <div class="ring-card">
          <div class="pulse">
            <Avatar name={o.to} size={88} />
          </div>
          <h2>{o.to}</h2>
          <p class="muted">{o.call_id ? 'Ringing…' : 'Calling…'}</p>
          <div class="row center">
            <button class="ctl danger big" onClick={() => void session.calls.cancelCall()} aria-label="Cancel call" data-testid="call-cancel" autoFocus>
              <Icon name="hangup" />
            </button>
          </div>
        </div>
      </div>
    );
  }
  return null;
}
