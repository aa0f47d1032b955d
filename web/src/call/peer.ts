// One RTCPeerConnection to one remote peer, negotiated with the "perfect negotiation" pattern:
// the polite side rolls back its own offer on a glare, the impolite side ignores the other's, so
// simultaneous offers (ICE restarts, renegotiation) can never wedge the connection.
import type { SignalKind } from '../generated/protocol';

export type PeerStep = 'new' | 'offer' | 'answer' | 'connected' | 'disconnected' | 'failed' | 'closed';

export interface PeerLinkOptions {
  peerId: string;
  myPeerId: string;
  iceServers: RTCIceServer[];
  /** Local tracks to send, by kind (null: nothing, e.g. camera missing). */
  localTrack: (kind: 'audio' | 'video') => MediaStreamTrack | null;
  localStream: MediaStream | null;
  sendSignal: (kind: SignalKind, payload: unknown) => void;
  onChange: () => void;
}

export class PeerLink {
  readonly pc: RTCPeerConnection;
  readonly polite: boolean;
  readonly remoteStream = new MediaStream();
  step: PeerStep = 'new';
  private makingOffer = false;
  private ignoreOffer = false;
  private settingRemoteAnswer = false;
  private queue: Promise<void> = Promise.resolve();
  private closed = false;

  constructor(private readonly o: PeerLinkOptions) {
    // Any deterministic rule works as long as both sides agree: the lower peer id is polite.
    this.polite = comparePeerIds(o.myPeerId, o.peerId) < 0;
    this.pc = new RTCPeerConnection({ iceServers: o.iceServers });
    this.pc.onnegotiationneeded = () => void this.negotiate();
    this.pc.onicecandidate = ({ candidate }) => {
      if (candidate) o.sendSignal('candidate', candidate.toJSON());
      else o.sendSignal('end_of_candidates', {});
    };
    this.pc.ontrack = ({ track }) => {
      if (!this.remoteStream.getTracks().includes(track)) this.remoteStream.addTrack(track);
      track.onunmute = () => o.onChange();
      o.onChange();
    };
    this.pc.onconnectionstatechange = () => {
      const st = this.pc.connectionState;
      if (st === 'connected') this.step = 'connected';
      else if (st === 'failed') {
        this.step = 'failed';
        this.pc.restartIce();
      } else if (st === 'disconnected') this.step = 'disconnected';
      o.onChange();
    };
  }

  /** The side that starts: adds audio+video transceivers, which triggers the first offer. */
  startOffer() {
    for (const kind of ['audio', 'video'] as const) {
      const track = this.o.localTrack(kind);
      this.pc.addTransceiver(track ?? kind, {
        direction: 'sendrecv',
        streams: this.o.localStream ? [this.o.localStream] : [],
      });
    }
  }

  private async negotiate() {
    if (this.closed) return;
    try {
      this.makingOffer = true;
      await this.pc.setLocalDescription();
      if (this.pc.localDescription) {
        this.o.sendSignal('offer', this.pc.localDescription.toJSON());
        if (this.step !== 'connected') this.step = 'offer';
        this.o.onChange();
      }
    } catch (e) {
      console.warn('negotiation failed', e);
    } finally {
      this.makingOffer = false;
    }
  }

  /** Signals are handled strictly in order (a candidate must not overtake its description). */
  handleSignal(kind: SignalKind, payload: unknown): Promise<void> {
    this.queue = this.queue.then(() => this.process(kind, payload)).catch((e) => console.warn('signal failed', kind, e));
    return this.queue;
  }

  private async process(kind: SignalKind, payload: unknown) {
    if (this.closed) return;
    const pc = this.pc;
    if (kind === 'offer' || kind === 'answer') {
      const desc = payload as RTCSessionDescriptionInit;
      const readyForOffer = !this.makingOffer && (pc.signalingState === 'stable' || this.settingRemoteAnswer);
      const collision = desc.type === 'offer' && !readyForOffer;
      this.ignoreOffer = !this.polite && collision;
      if (this.ignoreOffer) return;
      this.settingRemoteAnswer = desc.type === 'answer';
      await pc.setRemoteDescription(desc); // rolls back our own offer when polite
      this.settingRemoteAnswer = false;
      if (desc.type === 'offer') {
        this.attachLocal();
        await pc.setLocalDescription();
        if (pc.localDescription) this.o.sendSignal('answer', pc.localDescription.toJSON());
      }
      if (this.step !== 'connected') this.step = 'answer';
      this.o.onChange();
    } else if (kind === 'candidate') {
      try {
        await pc.addIceCandidate(payload as RTCIceCandidateInit);
      } catch (e) {
        if (!this.ignoreOffer) throw e;
      }
    }
    // end_of_candidates: nothing to do; browsers finish gathering on their own.
  }

  /** On the answering side: send our tracks on the transceivers the offer created. */
  private attachLocal() {
    for (const t of this.pc.getTransceivers()) {
      const kind = t.receiver.track?.kind as 'audio' | 'video' | undefined;
      if (!kind || t.sender.track || t.currentDirection === 'stopped') continue;
      t.direction = 'sendrecv';
      const track = this.o.localTrack(kind);
      if (track) void t.sender.replaceTrack(track);
    }
  }

  /** Swaps what we send (camera ↔ screen) without renegotiating. */
  replaceTrack(kind: 'audio' | 'video', track: MediaStreamTrack | null) {
    for (const t of this.pc.getTransceivers()) {
      const k = t.sender.track?.kind ?? t.receiver.track?.kind;
      if (k === kind && t.currentDirection !== 'stopped') void t.sender.replaceTrack(track);
    }
  }

  restartIce() {
    this.pc.restartIce();
  }

  close() {
    this.closed = true;
    this.step = 'closed';
    this.pc.onnegotiationneeded = this.pc.onicecandidate = this.pc.ontrack = this.pc.onconnectionstatechange = null;
    this.remoteStream.getTracks().forEach((t) => t.stop());
    this.pc.close();
  }
}

/** Orders peer ids like "p2" < "p10" (numeric part), falling back to string order. */
export function comparePeerIds(a: string, b: string): number {
  const na = Number(a.replace(/^\D+/, ''));
  const nb = Number(b.replace(/^\D+/, ''));
  if (Number.isFinite(na) && Number.isFinite(nb) && na !== nb) return na - nb;
  return a < b ? -1 : a > b ? 1 : 0;
}
