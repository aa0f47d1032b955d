import { useEffect, useState } from 'preact/hooks';
import type { Http, UserView } from '../api/http';
import { Session } from '../session';
import { dismissToast, toasts } from '../state/toasts';
import { useStore } from '../state/store';
import { AuthScreen } from './Auth';
import { Shell } from './Shell';

export function App({ http }: { http: Http }) {
  const [user, setUser] = useState<UserView | null | undefined>(undefined);
  const [session, setSession] = useState<Session | null>(null);

  useEffect(() => {
    const off = http.onAuthChange((u) => setUser(u));
    http.restore().then((u) => setUser(u));
    return off;
  }, [http]);

  useEffect(() => {
    if (!user) {
      setSession(null);
      return;
    }
    const s = new Session(http, user);
    s.start();
    setSession(s);
    return () => s.stop();
    // A new session only when the account changes, not on a display-name update.
  }, [user?.id]);

  return (
    <>
      {user === undefined ? (
        <div class="splash" aria-busy="true">
          <img src="/favicon.svg" alt="pychat" width={56} height={56} />
        </div>
      ) : user && session ? (
        <Shell session={session} key={user.id} />
      ) : (
        <AuthScreen http={http} />
      )}
      <Toasts />
    </>
  );
}

function Toasts() {
  const list = useStore(toasts);
  return (
    <div class="toasts" role="status" aria-live="polite" data-testid="toasts">
      {list.map((t) => (
        <div key={t.id} class={`toast ${t.kind}`} data-testid="toast">
          <span>{t.text}</span>
          <button class="icon-btn small" aria-label="Dismiss notification" onClick={() => dismissToast(t.id)}>
            ×
          </button>
        </div>
      ))}
    </div>
  );
}
