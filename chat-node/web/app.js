// The parley web client: sign-in, the connection (route, connect, sync,
// reconnect), and drawing chat.js's model. PROTOCOL.md 1.1 is the contract.

import {
  Conversations, EMOJI, InboxPosition, dmConv, destination, groupConv, parseUserList,
  peerOf, preview, removesMe, safeMediaUrl, seenMark, systemText, target, validUserId,
} from './chat.js';

const $ = (id) => document.getElementById(id);
const HISTORY_PAGE = 30;
const REQUEST_TIMEOUT_MS = 15000;
const TYPING_EVERY_MS = 2000;
const TYPING_SHOWN_MS = 4000;

// ---- state ---------------------------------------------------------------

const store = {
  token: sessionStorage.getItem('parley.token'),
  me: null,
  node: null,
  convs: null,
  inbox: null,
  open: null,
  /** client id -> {frame, conv}: sends not yet acknowledged; resent on reconnect. */
  pending: new Map(),
  failed: new Map(),
  typing: new Map(),
  lastTypingSent: new Map(),
};

// ---- the connection ------------------------------------------------------

const conn = {
  ws: null,
  connected: false,
  everConnected: false,
  attempt: 0,
  retryTimer: null,
  pingTimer: null,
  lastFrameAt: 0,
  heartbeatMs: 30000,
  /** rid -> {resolve, reject, timer} */
  waiting: new Map(),
  nextRid: 1,
  syncing: false,
  syncAgain: false,
  /** Address named by a `reconnect` frame: tried first, once. */
  preferred: null,
  /** Addresses that did not open lately: skipped until a connect works. */
  unreachable: new Set(),
  /** The cluster's node addresses, from `/v1/nodes`. */
  known: [],
  nextKnown: -1,
  stopped: true,
};

function setStatus(state, text) {
  const s = $('status');
  s.dataset.state = state;
  s.textContent = text;
}

/** Where to connect: a `reconnect` frame's address, else `/v1/route`, else this origin. */
async function pickAddress() {
  if (conn.preferred) {
    const a = conn.preferred;
    conn.preferred = null;
    return a;
  }
  try {
    const r = await fetch('/v1/route', { cache: 'no-store' });
    if (r.ok) {
      const body = await r.json();
      if (typeof body.address === 'string' && body.address && !conn.unreachable.has(body.address)) return body.address;
    }
  } catch {
    // The node that served this page is gone (or the network is): try the
    // other nodes it listed, in turn; WebSockets need no same origin.
  }
  const others = conn.known.filter((a) => !conn.unreachable.has(a));
  if (others.length) {
    conn.nextKnown = (conn.nextKnown + 1) % others.length;
    return others[conn.nextKnown];
  }
  conn.unreachable.clear();
  return location.host;
}

/** Remembers the cluster's nodes while this page's node answers. */
async function learnNodes() {
  try {
    const r = await fetch('/v1/nodes', { cache: 'no-store' });
    if (!r.ok) return;
    const nodes = await r.json();
    if (Array.isArray(nodes)) {
      conn.known = nodes.filter((n) => n.ready && typeof n.address === 'string' && n.address).map((n) => n.address);
    }
  } catch {
    // Keep what we knew.
  }
}

function wsUrl(address) {
  return `${location.protocol === 'https:' ? 'wss' : 'ws'}://${address}/ws`;
}

async function connect() {
  if (conn.stopped) return;
  clearTimeout(conn.retryTimer);
  if (!navigator.onLine) {
    setStatus('offline', 'Offline: reconnecting when the network is back…');
    return;
  }
  setStatus(conn.everConnected ? 'reconnecting' : 'connecting', conn.everConnected ? 'Reconnecting…' : 'Connecting…');
  const address = await pickAddress();
  if (conn.stopped) return;
  let ws;
  try {
    ws = new WebSocket(wsUrl(address));
  } catch {
    conn.unreachable.add(address);
    scheduleReconnect();
    return;
  }
  conn.ws = ws;
  let opened = false;
  ws.onopen = () => {
    opened = true;
    conn.lastFrameAt = Date.now();
    ws.send(JSON.stringify({ type: 'connect', token: store.token, device: deviceName() }));
  };
  ws.onmessage = (ev) => {
    if (conn.ws !== ws) return;
    conn.lastFrameAt = Date.now();
    let frame;
    try {
      frame = JSON.parse(ev.data);
    } catch {
      return;
    }
    handleFrame(frame);
  };
  ws.onclose = (ev) => {
    if (conn.ws !== ws) return;
    if (!opened) conn.unreachable.add(address);
    onDisconnect(ev.code);
  };
}

function deviceName() {
  return `web ${navigator.userAgent.includes('Headless') ? 'headless' : 'browser'}`.slice(0, 64);
}

function onDisconnect(code) {
  conn.ws = null;
  conn.connected = false;
  clearInterval(conn.pingTimer);
  for (const w of conn.waiting.values()) {
    clearTimeout(w.timer);
    w.reject(new Error('the connection dropped'));
  }
  conn.waiting.clear();
  if (conn.stopped) return;
  if (code === 4001) return signOut('The token was refused (unknown, expired or revoked).');
  if (code === 4002) return signOut('Signed out: the token was revoked.');
  scheduleReconnect();
}

function scheduleReconnect() {
  if (conn.stopped) return;
  conn.attempt += 1;
  const base = Math.min(10000, 300 * 2 ** Math.min(conn.attempt - 1, 6));
  const delay = base / 2 + Math.random() * base / 2;
  setStatus(navigator.onLine ? 'reconnecting' : 'offline',
    navigator.onLine ? 'Reconnecting…' : 'Offline: reconnecting when the network is back…');
  clearTimeout(conn.retryTimer);
  conn.retryTimer = setTimeout(connect, delay);
}

function dropConnection() {
  const ws = conn.ws;
  if (!ws) return;
  conn.ws = null;
  ws.onclose = null;
  try { ws.close(); } catch { /* already closing */ }
  onDisconnect(1000);
}

window.addEventListener('offline', () => {
  if (conn.stopped) return;
  // The socket may look open for a long while without a network: do not
  // wait for a heartbeat to find out.
  dropConnection();
  clearTimeout(conn.retryTimer);
  setStatus('offline', 'Offline: reconnecting when the network is back…');
});
window.addEventListener('online', () => {
  if (conn.stopped || conn.ws) return;
  conn.attempt = 0;
  connect();
});

function send(frame) {
  if (!conn.ws || !conn.connected) return false;
  conn.ws.send(JSON.stringify(frame));
  return true;
}

/** A request whose reply echoes its `rid`. */
function request(frame) {
  return new Promise((resolve, reject) => {
    if (!conn.ws || !conn.connected) {
      reject(new Error('not connected; try again in a moment'));
      return;
    }
    const rid = `r${conn.nextRid++}`;
    const timer = setTimeout(() => {
      conn.waiting.delete(rid);
      reject(new Error('no answer from the node'));
    }, REQUEST_TIMEOUT_MS);
    conn.waiting.set(rid, { resolve, reject, timer });
    conn.ws.send(JSON.stringify({ ...frame, rid }));
  });
}

function startHeartbeat() {
  clearInterval(conn.pingTimer);
  conn.pingTimer = setInterval(() => {
    if (!conn.ws) return;
    if (Date.now() - conn.lastFrameAt > 2 * conn.heartbeatMs + 5000) {
      dropConnection();
      return;
    }
    send({ type: 'ping' });
  }, conn.heartbeatMs);
}

// ---- frames --------------------------------------------------------------

function handleFrame(f) {
  if (f.rid && conn.waiting.has(f.rid)) {
    const w = conn.waiting.get(f.rid);
    conn.waiting.delete(f.rid);
    clearTimeout(w.timer);
    if (f.type === 'error') w.reject(Object.assign(new Error(f.message || f.code), { code: f.code }));
    else w.resolve(f);
    if (f.type !== 'sent') return;
  }
  switch (f.type) {
    case 'connected': return onConnected(f);
    case 'sent': return onSent(f);
    case 'msg': return onLive(f.pts, () => onMessage(f.msg));
    case 'recalled': return onLive(f.pts, () => onRecalled(f.conv, f.msg));
    case 'receipt': return onReceipt(f);
    case 'played': return onPlayed(f);
    case 'typing': return onTyping(f);
    case 'reconnect':
      conn.preferred = typeof f.address === 'string' && f.address ? f.address : null;
      conn.attempt = 0;
      dropConnection();
      return;
    case 'kicked': return signOut('Signed out: the token was revoked.');
    case 'error': return onError(f);
    default: return undefined; // pong, and frames of newer versions
  }
}

async function onConnected(f) {
  const first = !conn.everConnected || store.me !== f.user;
  conn.connected = true;
  conn.attempt = 0;
  conn.unreachable.clear();
  conn.heartbeatMs = Math.max(5, Number(f.heartbeat_s) || 30) * 1000;
  startHeartbeat();
  store.node = f.node;
  learnNodes();
  if (first) {
    store.me = f.user;
    store.convs = new Conversations(f.user);
    store.inbox = new InboxPosition(f.pts);
    sessionStorage.setItem('parley.token', store.token);
    showApp();
  }
  conn.everConnected = true;
  setStatus('connected', `Connected to ${f.node}`);
  $('who').textContent = `Signed in as ${f.user}`;
  // Sends that were in flight when the connection dropped go again with
  // the same id: the node stores each id once.
  for (const p of store.pending.values()) send(p.frame);
  try {
    if (!first) await syncInbox();
    await loadConversations();
    if (store.open) {
      if (!first) await ensureHistory(store.convs.get(store.open));
      if (store.open.startsWith('g:')) loadGroupInfo(store.open);
      markRead();
    }
  } catch (e) {
    showError('side-error', e);
  }
  render();
}

/** A live frame with a `pts`: in order, already had, or a gap to sync. */
function onLive(pts, apply) {
  const verdict = store.inbox.accept(pts);
  apply();
  if (verdict === 'gap') syncInbox().catch((e) => showError('side-error', e));
}

/** Fetches every inbox entry after our position, page by page. */
async function syncInbox() {
  if (conn.syncing) {
    conn.syncAgain = true;
    return;
  }
  conn.syncing = true;
  try {
    do {
      conn.syncAgain = false;
      for (;;) {
        const r = await request({ type: 'sync', after: store.inbox.pts, limit: 200 });
        for (const e of r.entries ?? []) {
          if (e.msg) onMessage(e.msg);
          else if (e.event?.type === 'recalled') onRecalled(e.event.conv, e.event.msg);
        }
        const last = r.entries?.length ? r.entries[r.entries.length - 1].pts : r.pts;
        store.inbox.advanceTo(last);
        if (r.trimmed_to !== undefined) {
          // Retention dropped entries: reload what is on screen.
          store.inbox.advanceTo(r.pts);
          if (store.open) {
            const c = store.convs.get(store.open);
            c.historyLoaded = false;
            await ensureHistory(c);
          }
        }
        if (!r.more || !r.entries?.length) break;
      }
    } while (conn.syncAgain);
  } finally {
    conn.syncing = false;
  }
  render();
}

async function loadConversations() {
  const r = await request({ type: 'conversations', limit: 200 });
  for (const item of r.items ?? []) store.convs.applyItem(item);
  render();
}

function onMessage(msg) {
  if (!msg || typeof msg.conv !== 'string') return;
  const { conv } = store.convs.receive(msg, visibleConv());
  if (msg.from && store.typing.get(msg.conv)?.from === msg.from) store.typing.delete(msg.conv);
  if (msg.kind === 'system' && msg.conv === store.open) {
    if (removesMe(msg, store.me)) conv.members = null;
    else loadGroupInfo(msg.conv);
  }
  if (conv.group && conv.group.name === conv.group.id && !conv.nameAsked) {
    conv.nameAsked = true;
    loadGroupInfo(msg.conv);
  }
  if (msg.conv === store.open) markRead();
  render();
}

function onSent(f) {
  const p = store.pending.get(f.id);
  store.pending.delete(f.id);
  store.failed.delete(f.id);
  if (f.msg) store.convs.receive(f.msg, store.open);
  if (p && p.conv === store.open) scrollToEnd();
  render();
}

function onRecalled(conv, msgId) {
  store.convs.get(conv).recall(msgId);
  render();
}

function onReceipt(f) {
  store.convs.receipt(f.conv, f.reader, f.seq);
  render();
}

function onPlayed(f) {
  const c = store.convs.get(f.conv);
  const m = c.messages.get(f.msg);
  if (m) c.messages.set(m.id, { ...m, played: true });
  render();
}

function onTyping(f) {
  if (f.from === store.me) return;
  const timer = setTimeout(() => {
    if (store.typing.get(f.conv)?.timer === timer) {
      store.typing.delete(f.conv);
      renderTyping();
    }
  }, TYPING_SHOWN_MS);
  store.typing.set(f.conv, { from: f.from, timer });
  renderTyping();
}

function onError(f) {
  if (f.id && store.pending.has(f.id)) {
    const p = store.pending.get(f.id);
    if (f.code === 'unavailable') {
      // Not stored: the same id again in a moment.
      setTimeout(() => { if (store.pending.has(f.id)) send(p.frame); }, 1000);
      return;
    }
    store.pending.delete(f.id);
    store.failed.set(f.id, { ...p, error: f.message || f.code });
    render();
  }
  showError('chat-error', new Error(f.message || f.code));
}

// ---- actions -------------------------------------------------------------

function clientId() {
  const b = new Uint8Array(9);
  crypto.getRandomValues(b);
  return `c-${Date.now().toString(36)}-${[...b].map((x) => x.toString(16).padStart(2, '0')).join('')}`;
}

function sendMessage(kind, body, media) {
  const convId = store.open;
  if (!convId) return;
  const c = store.convs.get(convId);
  if (c.left) {
    showError('chat-error', new Error('You are no longer a member of this group.'));
    return;
  }
  const id = clientId();
  const frame = { type: 'send', id, ...destination(convId, store.me), kind, body };
  if (media) frame.media = media;
  c.pinned = true;
  store.pending.set(id, { frame, conv: convId, kind, body, media, ts: Date.now() });
  send(frame); // when not connected, the reconnect sends it
  render();
  scrollToEnd();
}

/** Sends a refused message again, under the same client id. */
function retry(id) {
  const p = store.failed.get(id);
  if (!p) return;
  store.failed.delete(id);
  store.pending.set(id, { ...p, error: undefined });
  send(p.frame);
  render();
}

function markRead() {
  if (!store.open || document.visibilityState !== 'visible' || !conn.connected) return;
  const c = store.convs.get(store.open);
  const newest = c.newestSeq();
  if (!newest || (newest <= c.readSeq && c.unread === 0)) return;
  c.readSeq = Math.max(c.readSeq, newest);
  c.unread = 0;
  request({ type: 'read', ...target(store.open, store.me), seq: newest }).catch((e) => {
    if (e.code !== 'forbidden') showError('chat-error', e);
  });
  render();
}

async function ensureHistory(c) {
  if (c.historyLoaded) return;
  const r = await request({ type: 'history', ...target(c.conv, store.me), limit: HISTORY_PAGE });
  for (const m of r.messages ?? []) c.put(m);
  c.more = !!r.more;
  c.historyLoaded = true;
}

async function loadOlder() {
  const c = store.convs.get(store.open);
  const before = c.oldestSeq();
  if (!before || !c.more) return;
  const scroller = $('scroller');
  const fromBottom = scroller.scrollHeight - scroller.scrollTop;
  const r = await request({ type: 'history', ...target(c.conv, store.me), before, limit: HISTORY_PAGE });
  for (const m of r.messages ?? []) c.put(m);
  c.more = !!r.more;
  render();
  scroller.scrollTop = scroller.scrollHeight - fromBottom;
}

async function loadGroupInfo(convId) {
  try {
    const r = await request({ type: 'group_info', group: convId.slice(2) });
    const c = store.convs.get(convId);
    c.group = { id: r.group.id, name: r.group.name };
    c.members = r.group.members;
    c.owner = r.group.owner;
    c.left = !r.group.members.includes(store.me);
    render();
  } catch (e) {
    const c = store.convs.get(convId);
    if (e.code === 'forbidden' || e.code === 'not_found') {
      c.left = true;
      c.members = null;
      render();
    }
  }
}

async function openConversation(convId) {
  store.open = convId;
  const c = store.convs.get(convId);
  c.pinned = true;
  $('chat-error').textContent = '';
  render();
  try {
    await ensureHistory(c);
    if (c.group) loadGroupInfo(convId);
    markRead();
    render();
    scrollToEnd();
  } catch (e) {
    showError('chat-error', e);
  }
  $('message').focus();
}

function visibleConv() {
  return document.visibilityState === 'visible' ? store.open : null;
}

// ---- drawing -------------------------------------------------------------

function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') e.className = v;
    else if (k === 'text') e.textContent = v;
    else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children) if (c !== null && c !== undefined) e.append(c);
  return e;
}

function time(ts) {
  const d = new Date(ts);
  return el('time', { datetime: d.toISOString(), text: d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' }) });
}

function render() {
  if (!store.convs) return;
  renderConversations();
  renderChat();
  renderTyping();
}

function renderConversations() {
  const ul = $('conversations');
  const items = store.convs.list().map((c) => {
    const unread = c.conv === store.open && document.visibilityState === 'visible' ? 0 : c.unread;
    const last = c.last ? preview(c.last, store.me) : (c.group ? 'New group' : 'No messages yet');
    const typing = store.typing.get(c.conv);
    return el('li', { 'data-conv': c.conv },
      el('button', {
        type: 'button',
        'aria-current': c.conv === store.open ? 'true' : null,
        onclick: () => openConversation(c.conv),
      },
      el('span', { class: 'conv-name', text: c.title(store.me) }),
      unread > 0 ? el('span', { class: 'badge', 'aria-label': `${unread} unread`, text: String(unread) }) : null,
      el('span', { class: 'conv-last', text: typing ? `${typing.from} is typing…` : last })));
  });
  ul.replaceChildren(...items);
}

/** Message elements by id, rebuilt only when their message changes. */
const drawn = new Map();

function renderChat() {
  const area = $('compose-area');
  if (!store.open) {
    area.hidden = true;
    $('chat-title').textContent = 'No conversation open';
    $('messages').replaceChildren();
    $('older').hidden = true;
    $('group-panel').hidden = true;
    return;
  }
  const c = store.convs.get(store.open);
  area.hidden = false;
  $('chat-title').textContent = c.group ? c.group.name : `Chat with ${peerOf(c.conv, store.me)}`;
  $('older').hidden = !c.more;
  renderGroupPanel(c);
  $('message').disabled = c.left;
  const scroller = $('scroller');
  const atEnd = scroller.scrollHeight - scroller.scrollTop - scroller.clientHeight < 40;
  const seen = seenMark(c, store.me);
  const list = c.sorted().map((m) => ({ key: m.id, m, seen: seen?.id === m.id ? seen.text : '' }));
  for (const [id, p] of [...store.pending, ...store.failed]) {
    if (p.conv === c.conv) {
      list.push({ key: id, m: { id, from: store.me, kind: p.kind, body: p.body, media: p.media, ts: p.ts }, pending: true, error: p.error });
    }
  }
  const ol = $('messages');
  const keep = new Set();
  list.forEach((item, i) => {
    const sig = JSON.stringify([item.m, item.seen, item.pending, item.error, c.group ? 1 : 0]);
    let d = drawn.get(`${c.conv} ${item.key}`);
    if (!d || d.sig !== sig) {
      const fresh = drawMessage(c, item);
      if (d) d.node.replaceWith(fresh);
      d = { sig, node: fresh };
      drawn.set(`${c.conv} ${item.key}`, d);
    }
    keep.add(d.node);
    if (ol.children[i] !== d.node) ol.insertBefore(d.node, ol.children[i] ?? null);
  });
  for (const child of [...ol.children]) if (!keep.has(child)) child.remove();
  for (const [k, d] of drawn) if (!keep.has(d.node)) drawn.delete(k);
  if (atEnd) scroller.scrollTop = scroller.scrollHeight;
}

function drawMessage(c, { m, seen, pending, error }) {
  if (m.kind === 'system') {
    return el('li', { class: 'system', 'data-id': m.id, 'data-seq': m.seq }, el('span', { class: 'body', text: systemText(m, store.me) }));
  }
  const mine = m.from === store.me;
  const cls = [mine ? 'mine' : 'theirs', pending ? (error ? 'failed' : 'pending') : ''].filter(Boolean).join(' ');
  const meta = el('span', { class: 'meta' },
    m.ts ? time(m.ts) : null,
    pending && !error ? el('span', { text: 'Sending…' }) : null,
    error ? el('span', { text: `Not sent: ${error}` }) : null,
    error ? el('button', { type: 'button', text: 'Retry', onclick: () => retry(m.id) }) : null,
    m.kind === 'voice' && mine && m.played ? el('span', { text: 'Played' }) : null,
    seen ? el('span', { class: 'seen', text: seen }) : null,
    mine && !pending && !m.recalled ? el('button', {
      type: 'button',
      'aria-label': 'Recall message',
      text: 'Recall',
      onclick: () => recall(m.id),
    }) : null);
  return el('li', { class: cls, 'data-id': m.id, 'data-seq': m.seq },
    !mine && c.group ? el('span', { class: 'from', text: m.from }) : null,
    drawBody(m),
    meta);
}

function drawBody(m) {
  if (m.recalled) return el('div', { class: 'body recalled', text: m.from === store.me ? 'You recalled a message' : 'Message recalled' });
  const url = safeMediaUrl(m.media?.url);
  const who = m.from === store.me ? 'you' : m.from;
  switch (m.kind) {
    case 'text':
      return el('div', { class: 'body', text: m.body });
    case 'emoji':
      return el('div', { class: 'body emoji-big', title: m.body, text: EMOJI[m.body] ?? m.body });
    case 'image':
      return el('div', { class: 'body' }, url
        ? el('img', { src: url, alt: `Photo from ${who}`, loading: 'lazy', width: m.media.width, height: m.media.height })
        : unsupported());
    case 'video':
      return el('div', { class: 'body' }, url
        ? el('video', { src: url, controls: true, preload: 'none', 'aria-label': `Video from ${who}`, poster: safeMediaUrl(m.media.cover_url), width: m.media.width, height: m.media.height })
        : unsupported());
    case 'voice': {
      if (!url) return el('div', { class: 'body' }, unsupported());
      const audio = el('audio', { src: url, controls: true, preload: 'none', 'aria-label': `Voice message from ${who}` });
      if (m.from !== store.me && !m.played) audio.addEventListener('play', () => markPlayed(m), { once: true });
      const secs = m.media.duration_s;
      return el('div', { class: 'body' }, audio, typeof secs === 'number' ? el('span', { class: 'meta', text: `${secs} s` }) : null);
    }
    default:
      return el('div', { class: 'body', text: m.body || `(${m.kind})` });
  }
}

function unsupported() {
  return el('span', { class: 'recalled', text: 'Media not shown: only http and https links are opened.' });
}

function renderGroupPanel(c) {
  const panel = $('group-panel');
  panel.hidden = !c.group;
  if (!c.group) return;
  const list = $('group-members-list');
  if (c.left) list.textContent = 'You are no longer a member of this group.';
  else if (c.members) list.textContent = `Members: ${c.members.join(', ')} (owner ${c.owner})`;
  else list.textContent = '';
  $('group-add').hidden = c.left || c.owner !== store.me;
  $('group-leave').hidden = c.left;
}

function renderTyping() {
  const t = store.open ? store.typing.get(store.open) : null;
  $('typing').textContent = t ? `${t.from} is typing…` : '';
  if (store.convs) renderConversations();
}

function scrollToEnd() {
  const s = $('scroller');
  s.scrollTop = s.scrollHeight;
}

function showError(id, e) {
  $(id).textContent = e?.message ?? String(e);
}

async function recall(msgId) {
  try {
    await request({ type: 'recall', msg: msgId });
    onRecalled(store.open, msgId);
  } catch (e) {
    showError('chat-error', e.code === 'bad_request' ? new Error(`Cannot recall: ${e.message}`) : e);
  }
}

function markPlayed(m) {
  request({ type: 'played', msg: m.id }).catch(() => {});
}

// ---- sign-in -------------------------------------------------------------

function showApp() {
  $('signin').hidden = true;
  $('app').hidden = false;
  $('signout').hidden = false;
}

function signIn(token) {
  store.token = token;
  conn.stopped = false;
  conn.everConnected = false;
  conn.attempt = 0;
  $('signin-error').textContent = '';
  connect();
}

function signOut(reason) {
  conn.stopped = true;
  clearTimeout(conn.retryTimer);
  dropConnection();
  sessionStorage.removeItem('parley.token');
  Object.assign(store, { token: null, me: null, convs: null, inbox: null, open: null });
  store.pending.clear();
  store.failed.clear();
  drawn.clear();
  $('messages').replaceChildren();
  $('conversations').replaceChildren();
  $('app').hidden = true;
  $('signin').hidden = false;
  $('signout').hidden = true;
  $('who').textContent = '';
  setStatus('signed-out', 'Signed out');
  $('signin-error').textContent = reason ?? '';
}

async function devSignIn(admin, name) {
  let r;
  try {
    r = await fetch('/v1/tokens', {
      method: 'POST',
      headers: { Authorization: `Bearer ${admin}`, 'Content-Type': 'application/json' },
      body: JSON.stringify({ user: name, platform: 'web' }),
    });
  } catch {
    throw new Error('The node did not answer.');
  }
  if (r.status === 401) throw new Error('The admin token was refused.');
  const body = await r.json().catch(() => ({}));
  if (r.status !== 201 || typeof body.token !== 'string') throw new Error(body.message || `The node answered ${r.status}.`);
  return body.token;
}

// ---- wiring --------------------------------------------------------------

function wire() {
  // `#admin=<token>` (printed by a node in dev mode): the fragment never
  // leaves the browser; keep it in this tab and take it out of the URL.
  const m = /^#admin=([^&]+)$/.exec(location.hash);
  if (m) {
    sessionStorage.setItem('parley.admin', decodeURIComponent(m[1]));
    history.replaceState(null, '', location.pathname + location.search);
  }
  const admin = sessionStorage.getItem('parley.admin');
  if (admin) {
    $('admin').value = admin;
    $('dev').open = true;
  }

  $('token-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    const t = $('token').value.trim();
    if (!t) {
      $('signin-error').textContent = 'Paste a token issued by POST /v1/tokens.';
      return;
    }
    signIn(t);
  });
  $('dev-form').addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const a = $('admin').value.trim();
    const name = $('dev-name').value.trim();
    if (!a) return void ($('signin-error').textContent = 'The admin token is needed to mint a token.');
    if (!validUserId(name)) return void ($('signin-error').textContent = 'A name is 1 to 64 of A-Z a-z 0-9 _ . -');
    try {
      const token = await devSignIn(a, name);
      sessionStorage.setItem('parley.admin', a);
      signIn(token);
    } catch (e) {
      $('signin-error').textContent = e.message;
    }
  });
  $('signout').addEventListener('click', () => signOut());

  $('new-chat').addEventListener('submit', (ev) => {
    ev.preventDefault();
    const peer = $('peer').value.trim();
    if (!validUserId(peer)) return showError('side-error', new Error('A user id is 1 to 64 of A-Z a-z 0-9 _ . -'));
    $('side-error').textContent = '';
    $('peer').value = '';
    openConversation(dmConv(store.me, peer));
  });
  $('new-group').addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const name = $('group-name').value.trim();
    if (!name || new TextEncoder().encode(name).length > 64) return showError('side-error', new Error('A group name is 1 to 64 bytes.'));
    try {
      const members = parseUserList($('group-members').value).filter((u) => u !== store.me);
      const r = await request({ type: 'group_create', name, members });
      const conv = groupConv(r.group.id);
      const c = store.convs.get(conv);
      c.group = { id: r.group.id, name: r.group.name };
      c.members = r.group.members;
      c.owner = r.group.owner;
      c.updated = r.group.created;
      c.pinned = true;
      $('group-name').value = '';
      $('group-members').value = '';
      $('new-group-box').open = false;
      $('side-error').textContent = '';
      await openConversation(conv);
    } catch (e) {
      showError('side-error', e);
    }
  });
  $('group-add').addEventListener('submit', async (ev) => {
    ev.preventDefault();
    try {
      const users = parseUserList($('add-users').value);
      if (!users.length) throw new Error('Name at least one user.');
      await request({ type: 'group_add', group: store.open.slice(2), users });
      $('add-users').value = '';
      loadGroupInfo(store.open);
    } catch (e) {
      showError('chat-error', e);
    }
  });
  $('group-leave').addEventListener('click', async () => {
    const conv = store.open;
    try {
      await request({ type: 'group_leave', group: conv.slice(2) });
      const c = store.convs.get(conv);
      c.left = true;
      c.members = null;
      render();
    } catch (e) {
      showError('chat-error', e);
    }
  });

  $('older').addEventListener('click', () => loadOlder().catch((e) => showError('chat-error', e)));
  $('scroller').addEventListener('scroll', () => {
    const c = store.open && store.convs?.get(store.open);
    if (c?.more && $('scroller').scrollTop === 0 && !c.loadingOlder) {
      c.loadingOlder = true;
      loadOlder().catch((e) => showError('chat-error', e)).finally(() => { c.loadingOlder = false; });
    }
  });

  $('composer').addEventListener('submit', (ev) => {
    ev.preventDefault();
    const text = $('message').value;
    if (!text.trim()) return;
    if (new TextEncoder().encode(text).length > 4096) return showError('chat-error', new Error('A message is at most 4096 bytes.'));
    $('chat-error').textContent = '';
    $('message').value = '';
    sendMessage('text', text);
  });
  $('message').addEventListener('input', () => {
    if (!store.open || !$('message').value) return;
    const last = store.lastTypingSent.get(store.open) ?? 0;
    if (Date.now() - last < TYPING_EVERY_MS) return;
    store.lastTypingSent.set(store.open, Date.now());
    send({ type: 'typing', ...destination(store.open, store.me) });
  });
  const pad = $('emoji');
  for (const [key, glyph] of Object.entries(EMOJI)) {
    pad.append(el('button', { type: 'button', 'aria-label': `Emoji ${key.slice(1, -1)}`, title: key, text: glyph, onclick: () => sendMessage('emoji', key) }));
  }
  $('media-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    const url = $('media-url').value.trim();
    if (!safeMediaUrl(url) || !/^https?:\/\//i.test(url)) return showError('chat-error', new Error('A media URL starts with http:// or https://'));
    $('chat-error').textContent = '';
    $('media-url').value = '';
    sendMessage($('media-kind').value, '', { url });
  });
  document.addEventListener('visibilitychange', () => { markRead(); render(); });

  if (store.token) signIn(store.token);
}

wire();
