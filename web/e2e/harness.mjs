// E2E harness: a fresh real server (target/debug/pychat, temp data dir, free port) serving the
// built web/dist, and Debian's Chromium driven by playwright-core.
import { spawn } from 'node:child_process';
import { mkdtempSync, mkdirSync, rmSync, copyFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const here = dirname(fileURLToPath(import.meta.url));
export const webDir = resolve(here, '..');
export const repoDir = resolve(webDir, '..');
export const outDir = join(webDir, 'test-results');
mkdirSync(outDir, { recursive: true });

function freePort() {
  return new Promise((res, rej) => {
    const s = createServer();
    s.on('error', rej);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => res(port));
    });
  });
}

export async function startServer() {
  const port = await freePort();
  const dataDir = mkdtempSync(join(tmpdir(), 'pychat-e2e-'));
  const bin = process.env.PYCHAT_BIN ?? join(repoDir, 'target/debug/pychat');
  const proc = spawn(bin, ['serve'], {
    cwd: repoDir,
    env: {
      ...process.env,
      PYCHAT_BIND: `127.0.0.1:${port}`,
      PYCHAT_DATA_DIR: dataDir,
      PYCHAT_BCRYPT_COST: '4',
      PYCHAT_WEB_DIR: join(webDir, 'dist'),
      PYCHAT_WS_RATE_PER_SEC: '1000',
      PYCHAT_WS_RATE_BURST: '1000',
      // Every browser of the tests is 127.0.0.1, signing up many users.
      PYCHAT_REGISTRATIONS_PER_ADDRESS_PER_HOUR: '100000',
      PYCHAT_TICKETS_PER_USER_PER_MINUTE: '100000',
      RUST_LOG: process.env.RUST_LOG ?? 'warn',
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let log = '';
  proc.stdout.on('data', (d) => (log += d));
  proc.stderr.on('data', (d) => (log += d));
  const base = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 20_000;
  for (;;) {
    if (proc.exitCode !== null) throw new Error(`server exited early:\n${log}`);
    try {
      const r = await fetch(`${base}/healthz`);
      if (r.ok) break;
    } catch {
      /* not up yet */
    }
    if (Date.now() > deadline) throw new Error(`server did not start:\n${log}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  return {
    base,
    log: () => log,
    async stop() {
      proc.kill('SIGTERM');
      await new Promise((r) => (proc.exitCode !== null ? r() : proc.once('exit', r)));
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

export async function launchBrowser() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM_PATH ?? '/usr/bin/chromium',
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--use-fake-ui-for-media-stream',
      '--use-fake-device-for-media-stream',
      '--autoplay-policy=no-user-gesture-required',
    ],
  });
}

/** Every Content-Security-Policy violation seen on any page of this test file: the server's
 * policy must allow everything the app does. */
export const cspViolations = [];

export async function newPage(browser, base, viewport = { width: 1200, height: 760 }) {
  const context = await browser.newContext({ baseURL: base, viewport });
  await context.grantPermissions(['microphone', 'camera'], { origin: base });
  // The event carries what was blocked and by which directive; the console error is the
  // browser's own report of the same, for violations no event reaches (a blocked frame).
  await context.exposeBinding('__reportCspViolation', (_source, violation) => cspViolations.push(violation));
  await context.addInitScript(() => {
    document.addEventListener('securitypolicyviolation', (e) => {
      window.__reportCspViolation({ directive: e.effectiveDirective, blocked: e.blockedURI, source: e.sourceFile, line: e.lineNumber });
    });
  });
  const page = await context.newPage();
  page.setDefaultTimeout(15_000);
  page.on('pageerror', (e) => console.error('[pageerror]', e.message));
  page.on('console', (m) => {
    if (m.type() === 'error' && /Content Security Policy/i.test(m.text())) cspViolations.push({ console: m.text() });
  });
  return { context, page };
}

/** Fails with every violation recorded so far, and forgets them. */
export function assertNoCspViolations() {
  const seen = cspViolations.splice(0);
  if (seen.length > 0) throw new Error(`Content-Security-Policy violations:\n${JSON.stringify(seen, null, 2)}`);
}

export async function signUp(page, username, displayName) {
  await page.goto('/');
  await page.getByTestId('auth-toggle').click();
  await page.getByTestId('auth-username').fill(username);
  await page.getByTestId('auth-password').fill('correct horse battery');
  if (displayName) await page.getByTestId('auth-display-name').fill(displayName);
  await page.getByTestId('auth-submit').click();
  await page.getByTestId('me-name').waitFor();
}

export async function signIn(page, username) {
  await page.goto('/');
  await page.getByTestId('auth-username').fill(username);
  await page.getByTestId('auth-password').fill('correct horse battery');
  await page.getByTestId('auth-submit').click();
  await page.getByTestId('me-name').waitFor();
}

export async function openChatWith(page, username) {
  await page.getByTestId('user-search').fill(username);
  await page.locator(`[data-testid="search-result"][data-user="${username}"]`).click();
  await page.getByTestId('chat-view').waitFor();
}

export async function shot(page, name) {
  const file = join(outDir, `${name}.png`);
  await page.screenshot({ path: file });
  return file;
}

/** With UPDATE_DOCS_SCREENSHOTS=1, refreshes the README's screenshot in docs/; otherwise test
 * runs leave the committed files alone. */
export function copyToDocs(file, name) {
  if (process.env.UPDATE_DOCS_SCREENSHOTS === '1') {
    copyFileSync(file, join(repoDir, 'docs', name));
  }
}

/** Polls fn until it returns a truthy value. */
export async function until(fn, { timeout = 15_000, interval = 200, what = 'condition' } = {}) {
  const deadline = Date.now() + timeout;
  let last;
  for (;;) {
    last = await fn();
    if (last) return last;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what} (last: ${JSON.stringify(last)})`);
    await new Promise((r) => setTimeout(r, interval));
  }
}

/** The call's peer connections' states, by peer id. */
export const peerStates = (page) => page.evaluate(() => window.__pychat.peerStates());
const peerStats = (page) => page.evaluate(() => window.__pychat.peerStats());

/** Waits until the page has `n` peer connections, all connected. */
export async function allConnected(page, n) {
  return until(
    async () => {
      const s = await peerStates(page);
      const v = Object.values(s);
      return v.length === n && v.every((x) => x === 'connected') ? s : null;
    },
    { what: `${n} connected peer connection(s)`, timeout: 20_000 },
  );
}

/** Inbound audio bytes from every peer grow between two samples. */
export async function audioFlows(page) {
  const first = await peerStats(page);
  await until(
    async () => {
      const now = await peerStats(page);
      return Object.keys(first).length > 0 && Object.entries(now).every(([id, s]) => s.audioBytesReceived > (first[id]?.audioBytesReceived ?? 0) && s.audioBytesReceived > 0);
    },
    { what: 'inbound audio bytes growing' },
  );
  return peerStats(page);
}
