// Everything that exists while a user is signed in: the socket, chat and calls.
import type { Http, UserView } from './api/http';
import { Socket } from './api/socket';
import { CallManager } from './call/call';
import { ChatService } from './state/chat';

export class Session {
  readonly socket: Socket;
  readonly chat: ChatService;
  readonly calls: CallManager;

  constructor(
    readonly http: Http,
    private readonly initialUser: UserView,
  ) {
    this.socket = new Socket({ getTicket: () => http.wsTicket(), onSessionEnded: () => http.sessionEnded() });
    this.chat = new ChatService(http, this.socket, initialUser.username);
    this.calls = new CallManager(http, this.socket);
  }

  /** The signed-in user, with any display-name change applied. */
  get user(): UserView {
    return this.http.currentUser ?? this.initialUser;
  }

  start() {
    this.calls.start();
    void this.chat.start();
    const w = window as unknown as { __pychat?: unknown };
    w.__pychat = {
      session: this,
      socket: this.socket,
      chat: this.chat,
      calls: this.calls,
      peerStates: () => this.calls.debugStates(),
      peerStats: () => this.calls.debugStats(),
    };
  }

  stop() {
    this.calls.stop();
    this.chat.stop();
    this.socket.stop();
  }
}
