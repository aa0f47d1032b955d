import { useState } from 'preact/hooks';
import { ApiError, type Http } from '../api/http';

export function AuthScreen({ http }: { http: Http }) {
  const [mode, setMode] = useState<'login' | 'register'>('login');
  const [username, setUsername] = useState('');
  const [password, setPassword] = useState('');
  const [displayName, setDisplayName] = useState('');
  const [err, setErr] = useState<ApiError | null>(null);
  const [busy, setBusy] = useState(false);

  const submit = async (e: Event) => {
    e.preventDefault();
    setBusy(true);
    setErr(null);
    try {
      if (mode === 'register') await http.register(username.trim(), password, displayName.trim());
      else await http.login(username.trim(), password);
    } catch (x) {
      setErr(x instanceof ApiError ? x : new ApiError(0, 'network_error', String(x)));
    } finally {
      setBusy(false);
    }
  };
  const fieldErr = (f: string) => err?.fieldMessage(f);
  const general = err && err.fields.length === 0 ? err.message : null;
  const field = (id: string, label: string, value: string, set: (v: string) => void, type = 'text', auto = 'off') => (
    <label class="field">
      <span>{label}</span>
      <input
        id={`auth-${id}`}
        data-testid={`auth-${id}`}
        type={type}
        value={value}
        autoComplete={auto}
        aria-label={label}
        aria-invalid={fieldErr(id.replace('-', '_')) ? true : undefined}
        onInput={(e) => set((e.target as HTMLInputElement).value)}
        required={id !== 'display-name'}
      />
      {fieldErr(id.replace('-', '_')) && (
        <small class="field-error" data-testid={`error-${id}`} role="alert">
          {fieldErr(id.replace('-', '_'))}
        </small>
      )}
    </label>
  );

  return (
    <main class="auth">
      <form class="auth-card" onSubmit={submit} aria-label={mode === 'login' ? 'Sign in' : 'Sign up'}>
        <div class="brand">
          <img src="/favicon.svg" alt="" width={40} height={40} />
          <h1>pychat</h1>
        </div>
        <p class="muted">{mode === 'login' ? 'Welcome back. Sign in to continue.' : 'Create an account to chat and call.'}</p>
        {field('username', 'Username', username, setUsername, 'text', 'username')}
        {field('password', 'Password', password, setPassword, 'password', mode === 'login' ? 'current-password' : 'new-password')}
        {mode === 'register' && field('display-name', 'Display name (optional)', displayName, setDisplayName, 'text', 'nickname')}
        {general && (
          <div class="form-error" role="alert" data-testid="auth-error">
            {general}
          </div>
        )}
        <button class="btn primary wide" type="submit" disabled={busy} data-testid="auth-submit" aria-label={mode === 'login' ? 'Sign in' : 'Create account'}>
          {busy ? 'Please wait…' : mode === 'login' ? 'Sign in' : 'Create account'}
        </button>
        <button
          type="button"
          class="btn link"
          data-testid="auth-toggle"
          aria-label={mode === 'login' ? 'Switch to sign up' : 'Switch to sign in'}
          onClick={() => {
            setMode(mode === 'login' ? 'register' : 'login');
            setErr(null);
          }}
        >
          {mode === 'login' ? 'New here? Create an account' : 'Already have an account? Sign in'}
        </button>
      </form>
    </main>
  );
}
