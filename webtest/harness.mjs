// What the browser tests stand on: chat-node processes on 127.0.0.1 (one in
// memory, or several on the local Redis and RabbitMQ), Debian's chromium
// driven by playwright-core, and pages that fail their test on any console
// error or uncaught exception.

import { spawn, execFile } from 'node:child_process';
import { once } from 'node:events';
import { createServer } from 'node:net';
import { randomBytes } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { tmpdir } from 'node:os';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const here = dirname(fileURLToPath(import.meta.url));
export const repo = join(here, '..');

/** The chat-node binary scripts/web-test.sh built. */
export const binary = process.env.PARLEY_CHAT_NODE
  ?? join(process.env.CARGO_TARGET_DIR ?? join(repo, 'target'), 'debug', 'chat-node');
const redisUrl = process.env.CHAT_TEST_REDIS_URL ?? 'redis://127.0.0.1:6379/0';
const amqpUrl = process.env.CHAT_TEST_AMQP_URL ?? 'amqp://guest:guest@127.0.0.1:5672/%2f';
export const ADMIN = 'webtest-admin-secret';

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function freePort() {
  const s = createServer();
  s.listen(0, '127.0.0.1');
  await once(s, 'listening');
  const { port } = s.address();
  s.close();
  await once(s, 'close');
  return port;
}

async function until(what, fn, ms = 30000) {
  const deadline = Date.now() + ms;
  let last;
  while (Date.now() < deadline) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (e) {
      last = e;
    }
    await sleep(100);
  }
  throw new Error(`timed out waiting for ${what}${last ? `: ${last.message}` : ''}`);
}

/**
 * Nodes of one cluster. `backends: false`: one node with the in-memory
 * store and no admin token configured (dev mode: it prints one).
 */
export class Cluster {
  constructor({ nodes = 1, backends = true } = {}) {
    this.backends = backends;
    this.cluster = `webtest-${randomBytes(4).toString('hex')}`;
    this.n = nodes;
    this.ports = [];
    this.procs = [];
    this.logs = [];
  }

  async start() {
    for (let i = 0; i < this.n; i++) this.ports.push(await freePort());
    for (let i = 0; i < this.n; i++) this.spawn(i);
    for (let i = 0; i < this.n; i++) await this.waitReady(i);
    if (this.backends) await this.waitRegistered();
    return this;
  }

  spawn(i) {
    const env = {
      PATH: process.env.PATH,
      RUST_LOG: process.env.TEST_NODE_LOG ?? 'warn',
      CHAT_CLUSTER: this.cluster,
      CHAT_ORDINAL: String(i),
      CHAT_PORT: String(this.ports[i]),
      CHAT_HEALTH_PORT: '0',
      CHAT_BIND: '127.0.0.1',
      CHAT_ADVERTISE: '127.0.0.1:{port}',
      CHAT_DRAIN_GRACE_S: '2',
    };
    if (this.backends) {
      Object.assign(env, { CHAT_REDIS_URL: redisUrl, CHAT_AMQP_URL: amqpUrl, CHAT_ADMIN_TOKEN: ADMIN });
    }
    const p = spawn(binary, [], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    this.logs[i] = '';
    const keep = (d) => { this.logs[i] = (this.logs[i] + d).slice(-20000); };
    p.stdout.on('data', keep);
    p.stderr.on('data', keep);
    p.on('error', (e) => { this.logs[i] += `spawn failed: ${e.message}\n`; });
    this.procs[i] = p;
  }

  url(i, path = '/') {
    return `http://127.0.0.1:${this.ports[i]}${path}`;
  }

  async waitReady(i) {
    await until(`node ${i} ready (${binary})\n${this.logs[i]}`, async () => (await fetch(this.url(i, '/readyz'))).ok, 60000);
  }

  async waitRegistered() {
    const running = this.ports.filter((_, i) => this.procs[i]);
    const any = this.procs.findIndex(Boolean);
    await until('every node listed ready in /v1/nodes', async () => {
      const nodes = await (await fetch(this.url(any, '/v1/nodes'))).json();
      const ready = nodes.filter((n) => n.ready).map((n) => n.port);
      return running.every((p) => ready.includes(p));
    });
  }

  /** The admin token a dev-mode node printed, from the link it printed. */
  async printedAdminLink(i = 0) {
    return until('the dev sign-in link on stdout', () => {
      const m = /(http:\/\/127\.0\.0\.1:\d+\/#admin=[0-9a-f]+)/.exec(this.logs[i]);
      return m?.[1];
    });
  }

  async token(user, admin = ADMIN, i = 0) {
    const r = await fetch(this.url(i, '/v1/tokens'), {
      method: 'POST',
      headers: { Authorization: `Bearer ${admin}` },
      body: JSON.stringify({ user, platform: 'web' }),
    });
    if (r.status !== 201) throw new Error(`token for ${user}: ${r.status} ${await r.text()}`);
    return (await r.json()).token;
  }

  /** Which node (index) a node name such as chat-1 is. */
  indexOf(name) {
    return Number(/(\d+)$/.exec(name)[1]);
  }

  async kill(i) {
    const p = this.procs[i];
    if (!p) return;
    this.procs[i] = null;
    p.kill('SIGKILL');
    if (p.exitCode === null && p.signalCode === null) await once(p, 'exit');
  }

  /** SIGTERM: the node drains (sessions get `reconnect`) and exits. */
  async term(i) {
    const p = this.procs[i];
    if (!p) return;
    this.procs[i] = null;
    p.kill('SIGTERM');
    if (p.exitCode === null && p.signalCode === null) await once(p, 'exit');
  }

  async stop() {
    await Promise.all(this.procs.map((_, i) => this.kill(i)));
    if (!this.backends) return;
    // Best effort: the keys and queues of this run's cluster id.
    const run = (cmd, args) => new Promise((r) => execFile(cmd, args, { timeout: 30000 }, () => r()));
    await run('sh', ['-c', `redis-cli --scan --pattern 'chat:${this.cluster}:*' | xargs -r redis-cli del >/dev/null`]);
    await Promise.all(this.ports.map((p) => run('rabbitmqctl', ['-q', 'delete_queue', `chat.${this.cluster}.${p}`])));
  }
}

const CHROMIUM = process.env.PARLEY_CHROMIUM ?? '/usr/bin/chromium';

export async function launch() {
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking'],
  });
}

/**
 * A page in its own browser context (its own storage: one user), that
 * records every console error and page error; `check()` throws on any.
 */
export async function userPage(browser, { viewport = { width: 1100, height: 720 } } = {}) {
  const context = await browser.newContext({ viewport });
  const page = await context.newPage();
  const problems = [];
  let refusedOk = false;
  // What Chromium itself logs when a connection to a dead node is refused.
  const refused = /^(Failed to load resource: net::ERR_CONNECTION_REFUSED|WebSocket connection to '\S+' failed: Error in connection establishment: net::ERR_CONNECTION_REFUSED)$/;
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  page.on('console', (m) => {
    if (m.type() !== 'error' || (refusedOk && refused.test(m.text()))) return;
    problems.push(`console error: ${m.text()}`);
  });
  /** A test that kills a node expects refused connections, and only those. */
  page.allowRefusedConnections = () => { refusedOk = true; };
  page.check = () => {
    if (problems.length) throw new Error(`browser reported:\n${problems.join('\n')}`);
  };
  page.context_ = context;
  return page;
}

/**
 * Where a screenshot goes: a temporary directory, or with
 * WEBTEST_SCREENSHOTS=docs/web the README's pictures (relative to the repo).
 */
export function screenshotPath(name) {
  const dir = resolve(repo, process.env.WEBTEST_SCREENSHOTS ?? join(tmpdir(), 'parley-webtest'));
  mkdirSync(dir, { recursive: true });
  return join(dir, `${name}.png`);
}
