// The web client seen the way a user (and a screen reader) sees it: by role
// and label only, as the accessibility contract of issue 19 names them.

import { createServer } from 'node:http';
import { once } from 'node:events';
import { crc32, deflateSync } from 'node:zlib';

export const messageBox = (page) => page.getByRole('textbox', { name: 'Message', exact: true });
export const sendButton = (page) => page.getByRole('button', { name: 'Send', exact: true });
export const conversations = (page) => page.getByRole('list', { name: 'Conversations' });
export const messages = (page) => page.getByRole('list', { name: 'Messages' }).getByRole('listitem');
export const status = (page) => page.getByRole('status');

/** Signs in by pasting a token. */
export async function signInWithToken(page, url, token, user) {
  await page.goto(url);
  await page.getByLabel('Token', { exact: true }).fill(token);
  await page.getByRole('button', { name: 'Sign in with token' }).click();
  await waitConnected(page);
  await page.getByText(`Signed in as ${user}`).waitFor();
}

export async function waitConnected(page, timeout = 20000) {
  await page.locator('#status[data-state="connected"]').waitFor({ timeout });
  return (await status(page).textContent()).replace('Connected to ', '');
}

/** Starts recording every state the status line passes through. */
export async function recordStates(page) {
  await page.evaluate(() => {
    const s = document.getElementById('status');
    window.__states = [s.dataset.state];
    new MutationObserver(() => window.__states.push(s.dataset.state)).observe(s, { attributes: true, attributeFilter: ['data-state'] });
  });
}

/** Waits until the status line has been in `state` since recordStates. */
export async function sawState(page, state, timeout = 20000) {
  await page.waitForFunction((st) => window.__states?.includes(st), state, { timeout });
}

/** The conversation list's entry for a peer or group name. */
export function conversation(page, name) {
  return conversations(page).getByRole('listitem').filter({ has: page.locator('.conv-name', { hasText: new RegExp(`^${name}$`) }) });
}

export async function openChat(page, peer) {
  await page.getByLabel('Chat with').fill(peer);
  await page.getByRole('button', { name: 'Open', exact: true }).click();
  await page.getByRole('heading', { name: `Chat with ${peer}` }).waitFor();
}

export async function sendText(page, text) {
  await messageBox(page).fill(text);
  await sendButton(page).click();
  await settled(page);
}

/** Every message of ours acknowledged: none still "Sending…". */
export async function settled(page) {
  await eventually('every send acknowledged', () => page.locator('#messages li.pending').count(), 0);
}

/** The text of every message on screen, in order. */
export async function messageTexts(page) {
  return messages(page).locator('.body').allTextContents();
}

/** Waits until the messages on screen are exactly `want` (a list of texts). */
export async function expectMessages(page, want, timeout = 30000) {
  const deadline = Date.now() + timeout;
  let got;
  while (Date.now() < deadline) {
    got = await messageTexts(page);
    if (JSON.stringify(got) === JSON.stringify(want)) return;
    await page.waitForTimeout(100);
  }
  throw new Error(`messages on screen:\n${JSON.stringify(got, null, 1)}\nwanted:\n${JSON.stringify(want, null, 1)}`);
}

/** Waits until `fn()` returns `want`. */
export async function eventually(what, fn, want, timeout = 30000) {
  const deadline = Date.now() + timeout;
  let got;
  while (Date.now() < deadline) {
    got = await fn();
    if (JSON.stringify(got) === JSON.stringify(want)) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`${what}: got ${JSON.stringify(got)}, wanted ${JSON.stringify(want)}`);
}

/** The unread badge of a conversation ('' when there is none). */
export async function unreadBadge(page, name) {
  const badge = conversation(page, name).locator('.badge');
  return (await badge.count()) ? (await badge.textContent()) : '';
}

/** A 48x32 PNG, made here: media URLs in messages point to it. */
function png() {
  const w = 48;
  const h = 32;
  const chunk = (type, data) => {
    const len = Buffer.alloc(4);
    len.writeUInt32BE(data.length);
    const td = Buffer.concat([Buffer.from(type), data]);
    const crc = Buffer.alloc(4);
    crc.writeUInt32BE(crc32(td));
    return Buffer.concat([len, td, crc]);
  };
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(w, 0);
  ihdr.writeUInt32BE(h, 4);
  ihdr[8] = 8; // bit depth
  ihdr[9] = 2; // RGB
  const rows = [];
  for (let y = 0; y < h; y++) {
    rows.push(0);
    for (let x = 0; x < w; x++) rows.push(37 + x * 4, 99 + y * 4, 235);
  }
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk('IHDR', ihdr),
    chunk('IDAT', deflateSync(Buffer.from(rows))),
    chunk('IEND', Buffer.alloc(0)),
  ]);
}

/** Half a second of silence as 8 kHz 8-bit mono WAV. */
function wav() {
  const samples = Buffer.alloc(4000, 128);
  const h = Buffer.alloc(44);
  h.write('RIFF', 0);
  h.writeUInt32LE(36 + samples.length, 4);
  h.write('WAVEfmt ', 8);
  h.writeUInt32LE(16, 16);
  h.writeUInt16LE(1, 20); // PCM
  h.writeUInt16LE(1, 22); // mono
  h.writeUInt32LE(8000, 24);
  h.writeUInt32LE(8000, 28);
  h.writeUInt16LE(1, 32);
  h.writeUInt16LE(8, 34);
  h.write('data', 36);
  h.writeUInt32LE(samples.length, 40);
  return Buffer.concat([h, samples]);
}

/** Serves /photo.png and /voice.wav (and counts requests) as a media host would. */
export async function mediaServer() {
  const files = { '/photo.png': ['image/png', png()], '/voice.wav': ['audio/wav', wav()] };
  const hits = [];
  const server = createServer((req, res) => {
    hits.push(req.url);
    const f = files[req.url];
    if (f) {
      res.writeHead(200, { 'Content-Type': f[0], 'Content-Length': f[1].length });
      res.end(f[1]);
    } else {
      res.writeHead(404);
      res.end();
    }
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return { url: `http://127.0.0.1:${server.address().port}`, hits, close: () => server.close() };
}
