// Calls: rooms by name (the original flow) and direct ringing calls, as a mesh of PeerLinks.
import type { CallEndReason, CallMedia, MemberView, RoomView, ServerFrame } from '../generated/protocol';
import type { Http } from '../api/http';
import { type Socket, SocketError } from '../api/socket';
import { createStore, type Store } from '../state/store';
import { toast } from '../state/toasts';
import { PeerLink, type PeerStep } from './peer';

export type CallPhase = 'idle' | 'created' | 'joined' | 'started' | 'ended';

export interface RemotePeer {
  peerId: string;
  username: string;
  step: PeerStep;
  muted: boolean;
  camera: boolean;
  screen: boolean;
  connected: boolean;
  stream: MediaStream | null;
}

export interface CallState {
  phase: CallPhase;
  room: string | null;
  direct: boolean;
  /** The group whose call this is. */
  conversationId: number | null;
  myPeerId: string | null;
  creator: string | null;
  members: MemberView[];
  peers: Record<string, RemotePeer>;
  startedAt: number | null;
  muted: boolean;
  camera: boolean;
  screen: boolean;
  localStream: MediaStream | null;
  mediaError: string | null;
  /** `conversation_id`: a group's call. */
  incoming: { call_id: string; from: string; media: CallMedia; conversation_id?: number } | null;
  outgoing: { call_id: string | null; to: string; media: CallMedia } | null;
  error: string | null;
  busy: boolean;
}

/** The part of the state that belongs to one call; cleared when the call ends. */
function noCall() {
  return {
    room: null,
    direct: false,
    conversationId: null,
    myPeerId: null,
    creator: null,
    members: [],
    peers: {},
    startedAt: null,
    muted: false,
    camera: true,
    screen: false,
  } satisfies Partial<CallState>;
}

const initial: CallState = {
  phase: 'idle',
  ...noCall(),
  localStream: null,
  mediaError: null,
  incoming: null,
  outgoing: null,
  error: null,
  busy: false,
};

/** The status shown in the call bar: idle → created/joined → session started → offer → answer → connected → ended. */
export function callStatus(s: CallState): string {
  switch (s.phase) {
    case 'idle':
      return 'idle';
    case 'created':
      return 'room created';
    case 'joined':
      return 'joined';
    case 'ended':
      return 'ended';
    case 'started': {
      const steps = Object.values(s.peers).map((p) => p.step);
      if (steps.includes('connected')) return 'connected';
      if (steps.includes('answer')) return 'answer';
      if (steps.includes('offer')) return 'offer';
      return 'session started';
    }
  }
}

export const ROOM_ERRORS: Record<string, string> = {
  room_exists: 'A room with that name is already open. Pick another name or join it.',
  room_name_reserved: 'Room names cannot start with "_".',
  room_not_found: 'No open room has that name.',
  room_full: 'That room is full.',
  already_in_room: 'You are already in a room.',
  not_room_creator: 'Only the room creator can do that.',
  rate_limited: 'Too many attempts; wait a moment.',
  validation_failed: 'Room names are 1–64 letters, digits, spaces, "_", "." or "-".',
  busy: 'is busy right now.',
  user_not_found: 'That user does not exist.',
};

export function mediaErrorMessage(e: unknown): string {
  const name = e instanceof DOMException ? e.name : '';
  if (name === 'NotAllowedError' || name === 'SecurityError')
    return 'Microphone and camera access was denied. Allow it in your browser’s site settings so others can hear and see you.';
  if (name === 'NotFoundError' || name === 'OverconstrainedError') return 'No microphone or camera was found. You can still listen and watch.';
  if (name === 'NotReadableError') return 'Your microphone or camera is in use by another application.';
  if (typeof navigator !== 'undefined' && !navigator.mediaDevices) return 'This page needs HTTPS (or localhost) to use the microphone and camera.';
  return `Could not start the microphone or camera (${name || String(e)}).`;
}

export class CallManager {
  readonly store: Store<CallState> = createStore<CallState>({ ...initial });
  private links = new Map<string, PeerLink>();
  private iceServers: RTCIceServer[] = [];
  private cameraTrack: MediaStreamTrack | null = null;
  private screenTrack: MediaStreamTrack | null = null;
  private offs: (() => void)[] = [];
  private endTimer: ReturnType<typeof setTimeout> | null = null;

  constructor(
    private readonly http: Http,
    private readonly socket: Socket,
  ) {}

  private get s() {
    return this.store.get();
  }
  private patch(p: Partial<CallState> | ((s: CallState) => Partial<CallState>)) {
    this.store.set((s) => ({ ...s, ...(typeof p === 'function' ? p(s) : p) }));
  }

  start() {
    const sk = this.socket;
    this.offs.push(
      sk.on('hello', () => void this.rejoin()),
      sk.on('room_created', (f) => this.enterRoom(f.room, f.peer_id, 'created')),
      sk.on('room_joined', (f) => this.enterRoom(f.room, f.peer_id, 'joined')),
      sk.on('member_joined', (f) => {
        if (f.room !== this.s.room) return;
        this.patch((s) => ({ members: [...s.members.filter((m) => m.peer_id !== f.member.peer_id), f.member] }));
      }),
      sk.on('member_left', (f) => {
        if (f.room !== this.s.room) return;
        this.closeLink(f.peer_id);
        this.patch((s) => ({ members: s.members.filter((m) => m.peer_id !== f.peer_id), creator: f.creator }));
        toast(`${f.username} left the call${f.reason === 'timeout' ? ' (connection lost)' : ''}`);
      }),
      sk.on('member_disconnected', (f) => this.setMember(f.peer_id, { connected: false })),
      sk.on('member_reconnected', (f) => {
        this.setMember(f.peer_id, { connected: true });
        this.links.get(f.peer_id)?.restartIce();
      }),
      sk.on('room_ended', (f) => {
        if (f.room !== this.s.room) return;
        if (!this.s.direct) toast(`${f.by} ended the call`);
        this.cleanup();
      }),
      sk.on('session_started', (f) => this.onSessionStarted(f.peers)),
      sk.on('signal', (f) => this.onSignal(f)),
      sk.on('peer_state', (f) => {
        if (f.room !== this.s.room) return;
        this.setMember(f.peer_id, { muted: f.muted, camera: f.camera, screen: f.screen });
      }),
      sk.on('incoming_call', (f) => {
        if (this.s.phase !== 'idle' && this.s.phase !== 'ended') return;
        this.patch({ incoming: { call_id: f.call_id, from: f.from, media: f.media, conversation_id: f.conversation_id } });
      }),
      sk.on('call_ringing', (f) => this.patch((s) => ({ outgoing: s.outgoing ? { ...s.outgoing, call_id: f.call_id } : null }))),
      sk.on('call_accepted', (f) => this.onCallAccepted(f.call_id, f.room, f.peer_id)),
      sk.on('call_ended', (f) => this.onCallEnded(f.call_id, f.reason)),
    );
  }

  stop() {
    this.offs.forEach((f) => f());
    this.offs = [];
    this.cleanup(true);
  }

  // ---- media ----
  private async acquireMedia(video: boolean): Promise<void> {
    if (this.s.localStream) return;
    const tries: MediaStreamConstraints[] = video ? [{ audio: true, video: true }, { audio: true }, { video: true }] : [{ audio: true }];
    let firstError: unknown = null;
    if (!navigator.mediaDevices?.getUserMedia) {
      this.patch({ mediaError: mediaErrorMessage(null) });
      return;
    }
    for (const c of tries) {
      try {
        const stream = await navigator.mediaDevices.getUserMedia(c);
        this.cameraTrack = stream.getVideoTracks()[0] ?? null;
        this.patch({
          localStream: stream,
          camera: !!this.cameraTrack,
          muted: false,
          mediaError: firstError ? mediaErrorMessage(firstError) : null,
        });
        return;
      } catch (e) {
        firstError ??= e;
        if (e instanceof DOMException && e.name === 'NotAllowedError') break;
      }
    }
    const msg = mediaErrorMessage(firstError);
    this.patch({ mediaError: msg, camera: false });
    toast(msg, 'error', 8000);
  }

  private async loadIce() {
    try {
      const r = await this.http.iceServers();
      this.iceServers = r.ice_servers.map((s) => ({ urls: s.urls, username: s.username ?? undefined, credential: s.credential ?? undefined }));
    } catch {
      this.iceServers = [];
    }
  }

  private localTrack = (kind: 'audio' | 'video'): MediaStreamTrack | null => {
    if (kind === 'video' && this.screenTrack) return this.screenTrack;
    const st = this.s.localStream;
    return (kind === 'audio' ? st?.getAudioTracks()[0] : st?.getVideoTracks()[0]) ?? null;
  };

  // ---- the original flow ----
  async createRoom(name: string) {
    return this.roomAction({ type: 'room_create', name: name.trim() });
  }
  async joinRoom(name: string) {
    return this.roomAction({ type: 'room_join', name: name.trim() });
  }
  private async roomAction(frame: { type: 'room_create' | 'room_join'; name: string }) {
    if (this.endTimer) this.finishEnded();
    this.patch({ error: null, busy: true });
    await Promise.all([this.acquireMedia(true), this.loadIce()]);
    try {
      await this.socket.request(frame);
    } catch (e) {
      const code = e instanceof SocketError ? e.code : 'error';
      this.patch({ error: ROOM_ERRORS[code] ?? (e as Error).message });
      if (this.s.phase === 'idle') this.releaseMedia();
    } finally {
      this.patch({ busy: false });
    }
  }

  async startSession() {
    try {
      await this.socket.request({ type: 'session_start' });
    } catch (e) {
      const code = e instanceof SocketError ? e.code : '';
      this.patch({ error: code === 'session_not_started' ? 'Wait until someone joins.' : (ROOM_ERRORS[code] ?? (e as Error).message) });
    }
  }

  async leave() {
    if (this.s.phase === 'idle') return;
    try {
      await this.socket.request({ type: 'room_leave' });
    } catch {
      /* we leave locally anyway */
    }
    this.cleanup();
  }

  async end() {
    try {
      await this.socket.request({ type: 'room_end' });
    } catch (e) {
      this.patch({ error: (e as Error).message });
      return;
    }
    this.cleanup();
  }

  private enterRoom(room: RoomView, peerId: string, phase: 'created' | 'joined') {
    this.patch({
      phase: room.session_started ? 'started' : phase,
      room: room.name,
      direct: room.direct,
      conversationId: room.conversation_id ?? null,
      myPeerId: peerId,
      creator: room.creator,
      members: room.members,
      startedAt: room.session_started ? (this.s.room === room.name && this.s.startedAt ? this.s.startedAt : Date.now()) : null,
      error: null,
    });
    if (room.session_started) {
      // A late joiner (or a rejoin) offers to everyone already there.
      for (const m of room.members) if (m.peer_id !== peerId) this.link(m.peer_id, true);
    }
  }

  private onSessionStarted(peers: MemberView[]) {
    const me = this.s.myPeerId;
    this.patch({ phase: 'started', startedAt: Date.now(), members: peers });
    const myIndex = peers.findIndex((p) => p.peer_id === me);
    // Each peer offers to the peers listed before it, so every pair negotiates once.
    peers.forEach((p, i) => {
      if (p.peer_id !== me) this.link(p.peer_id, i < myIndex);
    });
  }

  private link(peerId: string, offer: boolean): PeerLink {
    let l = this.links.get(peerId);
    if (l) {
      if (offer) l.restartIce();
      return l;
    }
    l = new PeerLink({
      peerId,
      myPeerId: this.s.myPeerId ?? '',
      iceServers: this.iceServers,
      localTrack: this.localTrack,
      localStream: this.s.localStream,
      sendSignal: (kind, payload) => this.socket.send({ type: 'signal', to: peerId, kind, payload }),
      onChange: () => this.refreshPeers(),
    });
    this.links.set(peerId, l);
    if (offer) l.startOffer();
    this.refreshPeers();
    return l;
  }

  private onSignal(f: Extract<ServerFrame, { type: 'signal' }>) {
    if (this.s.phase !== 'started') return;
    void this.link(f.from, false).handleSignal(f.kind, f.payload);
  }

  private closeLink(peerId: string) {
    this.links.get(peerId)?.close();
    this.links.delete(peerId);
    this.refreshPeers();
  }

  private setMember(peerId: string, p: Partial<MemberView>) {
    this.patch((s) => ({ members: s.members.map((m) => (m.peer_id === peerId ? { ...m, ...p } : m)) }));
    this.refreshPeers();
  }

  private refreshPeers() {
    const s = this.s;
    const peers: Record<string, RemotePeer> = {};
    for (const [id, l] of this.links) {
      const m = s.members.find((x) => x.peer_id === id);
      peers[id] = {
        peerId: id,
        username: m?.username ?? id,
        step: l.step,
        muted: m?.muted ?? false,
        camera: m?.camera ?? true,
        screen: m?.screen ?? false,
        connected: m?.connected ?? true,
        stream: l.remoteStream,
      };
    }
    this.patch({ peers });
  }

  private async rejoin() {
    const s = this.s;
    if (!s.room || !s.myPeerId || s.phase === 'idle' || s.phase === 'ended') return;
    try {
      await this.socket.request({ type: 'room_rejoin', name: s.room, peer_id: s.myPeerId });
    } catch {
      toast('Lost the call after a reconnect', 'error');
      this.cleanup();
    }
  }

  // ---- controls ----
  private sendPeerState() {
    const s = this.s;
    if (s.phase === 'idle' || s.phase === 'ended') return;
    this.socket.request({ type: 'peer_state', muted: s.muted, camera: s.camera, screen: s.screen }).catch(() => undefined);
  }

  toggleMute() {
    const muted = !this.s.muted;
    this.s.localStream?.getAudioTracks().forEach((t) => (t.enabled = !muted));
    this.patch({ muted });
    this.sendPeerState();
  }

  toggleCamera() {
    if (!this.cameraTrack) {
      toast('No camera available', 'error');
      return;
    }
    const camera = !this.s.camera;
    this.cameraTrack.enabled = camera;
    this.patch({ camera });
    this.sendPeerState();
  }

  async toggleScreen() {
    if (this.screenTrack) {
      this.stopScreen();
      return;
    }
    try {
      const display = await navigator.mediaDevices.getDisplayMedia({ video: true });
      const track = display.getVideoTracks()[0];
      this.screenTrack = track;
      track.onended = () => this.stopScreen();
      for (const l of this.links.values()) l.replaceTrack('video', track);
      this.patch({ screen: true });
      this.sendPeerState();
    } catch (e) {
      toast(`Screen sharing is not available: ${(e as Error).message}`, 'error');
    }
  }

  private stopScreen() {
    this.screenTrack?.stop();
    this.screenTrack = null;
    for (const l of this.links.values()) l.replaceTrack('video', this.cameraTrack);
    this.patch({ screen: false });
    this.sendPeerState();
  }

  // ---- direct calls ----
  async call(to: string, media: CallMedia) {
    if (this.s.phase !== 'idle' && this.s.phase !== 'ended') {
      toast('You are already in a call', 'error');
      return;
    }
    if (this.endTimer) this.finishEnded();
    this.patch({ outgoing: { call_id: null, to, media } });
    await Promise.all([this.acquireMedia(media === 'video'), this.loadIce()]);
    try {
      await this.socket.request({ type: 'call', to, media });
    } catch (e) {
      const code = e instanceof SocketError ? e.code : '';
      toast(code === 'busy' ? `${to} is busy` : (ROOM_ERRORS[code] ?? (e as Error).message), 'error');
      this.patch({ outgoing: null });
      this.releaseMedia();
    }
  }

  /** Starts a group's call (ringing its members), or joins the one going on. */
  async callGroup(conversationId: number, media: CallMedia) {
    if (this.s.phase !== 'idle' && this.s.phase !== 'ended') {
      toast('You are already in a call', 'error');
      return;
    }
    if (this.endTimer) this.finishEnded();
    this.patch({ error: null, busy: true });
    await Promise.all([this.acquireMedia(media === 'video'), this.loadIce()]);
    try {
      // The reply is `room_joined`: entering the room is handled there.
      await this.socket.request({ type: 'call', conversation_id: conversationId, media });
    } catch (e) {
      const code = e instanceof SocketError ? e.code : '';
      toast(code === 'room_full' ? 'The call is full.' : (ROOM_ERRORS[code] ?? (e as Error).message), 'error');
      if (this.s.phase === 'idle') this.releaseMedia();
    } finally {
      this.patch({ busy: false });
    }
  }

  async cancelCall() {
    const o = this.s.outgoing;
    if (!o) return;
    this.patch({ outgoing: null });
    this.releaseMedia();
    if (o.call_id) await this.socket.request({ type: 'call_cancel', call_id: o.call_id }).catch(() => undefined);
  }

  async acceptCall() {
    const inc = this.s.incoming;
    if (!inc) return;
    await Promise.all([this.acquireMedia(inc.media === 'video'), this.loadIce()]);
    this.socket.send({ type: 'call_accept', call_id: inc.call_id });
  }

  async declineCall() {
    const inc = this.s.incoming;
    if (!inc) return;
    this.patch({ incoming: null });
    await this.socket.request({ type: 'call_decline', call_id: inc.call_id }).catch(() => undefined);
  }

  private onCallAccepted(callId: string, room: RoomView, peerId: string) {
    // In a direct call the caller offers; whoever enters a group's call offers to everyone there.
    const group = room.conversation_id !== undefined;
    const offer = group || this.s.outgoing?.call_id === callId;
    this.patch({
      incoming: null,
      outgoing: null,
      phase: 'started',
      room: room.name,
      direct: room.direct,
      conversationId: room.conversation_id ?? null,
      myPeerId: peerId,
      creator: room.creator,
      members: room.members,
      startedAt: Date.now(),
      error: null,
    });
    for (const m of room.members) if (m.peer_id !== peerId) this.link(m.peer_id, offer);
  }

  private onCallEnded(callId: string, reason: CallEndReason) {
    const s = this.s;
    if (s.incoming?.call_id === callId) {
      const from = s.incoming.from;
      this.patch({ incoming: null });
      if (this.s.phase === 'idle' && this.s.localStream) this.releaseMedia();
      if (reason === 'missed' || reason === 'cancelled') toast(`Missed call from ${from}`);
      else if (reason === 'answered_elsewhere') toast('Call answered on another device');
    } else if (s.outgoing && (s.outgoing.call_id === callId || s.outgoing.call_id === null)) {
      const to = s.outgoing.to;
      this.patch({ outgoing: null });
      this.releaseMedia();
      toast(reason === 'declined' ? `${to} declined the call` : reason === 'timeout' ? `${to} did not answer` : `Call ended (${reason})`, 'info');
    }
  }

  // ---- teardown ----
  private releaseMedia() {
    this.s.localStream?.getTracks().forEach((t) => t.stop());
    this.screenTrack?.stop();
    this.screenTrack = null;
    this.cameraTrack = null;
    this.patch({ localStream: null });
  }

  private cleanup(immediate = false) {
    for (const l of this.links.values()) l.close();
    this.links.clear();
    this.releaseMedia();
    this.patch({ phase: immediate ? 'idle' : 'ended', ...noCall() });
    if (this.endTimer) clearTimeout(this.endTimer);
    this.endTimer = immediate ? null : setTimeout(() => this.finishEnded(), 1500);
  }

  private finishEnded() {
    if (this.endTimer) clearTimeout(this.endTimer);
    this.endTimer = null;
    if (this.s.phase === 'ended') this.patch({ phase: 'idle' });
  }

  // ---- debugging / tests ----
  debugStates(): Record<string, RTCPeerConnectionState> {
    const out: Record<string, RTCPeerConnectionState> = {};
    for (const [id, l] of this.links) out[id] = l.pc.connectionState;
    return out;
  }

  async debugStats(): Promise<Record<string, { audioBytesReceived: number; videoBytesReceived: number }>> {
    const out: Record<string, { audioBytesReceived: number; videoBytesReceived: number }> = {};
    for (const [id, l] of this.links) {
      const r = { audioBytesReceived: 0, videoBytesReceived: 0 };
      const stats = await l.pc.getStats();
      stats.forEach((st: { type: string; kind?: string; bytesReceived?: number }) => {
        if (st.type !== 'inbound-rtp') return;
        if (st.kind === 'audio') r.audioBytesReceived += st.bytesReceived ?? 0;
        if (st.kind === 'video') r.videoBytesReceived += st.bytesReceived ?? 0;
      });
      out[id] = r;
    }
    return out;
  }
}
