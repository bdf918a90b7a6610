// The web client's model (chat-node/web/chat.js) without a browser: the
// rules that keep a conversation free of gaps and doubles.

import { test } from 'node:test';
import assert from 'node:assert/strict';

import {
  Conversations, InboxPosition, dmConv, parseUserList, preview, safeMediaUrl, seenMark, target, destination,
} from '../chat-node/web/chat.js';

const msg = (seq, from, extra = {}) => ({
  id: `m${seq}`, conv: 'dm:alice:bob', seq, from, to: from === 'alice' ? 'bob' : 'alice', kind: 'text', body: `b${seq}`, ts: seq, ...extra,
});

test('conversation ids sort the two users by byte order', () => {
  assert.equal(dmConv('bob', 'alice'), 'dm:alice:bob');
  assert.equal(dmConv('Zed', 'alice'), 'dm:Zed:alice');
  assert.equal(dmConv('alice', 'alice'), 'dm:alice:alice');
  assert.deepEqual(target('dm:alice:bob', 'bob'), { with: 'alice' });
  assert.deepEqual(destination('g:g-1', 'bob'), { group: 'g-1' });
});

test('the inbox position accepts the next pts and reports gaps and repeats', () => {
  const p = new InboxPosition(5);
  assert.equal(p.accept(6), 'next');
  assert.equal(p.accept(6), 'old');
  assert.equal(p.accept(9), 'gap');
  assert.equal(p.pts, 6, 'a gap does not move the position');
  p.advanceTo(9);
  assert.equal(p.accept(10), 'next');
  assert.equal(p.accept(undefined), 'gap');
});

test('a message delivered twice is kept once and counted unread once', () => {
  const cs = new Conversations('bob');
  assert.equal(cs.receive(msg(1, 'alice'), null).fresh, true);
  assert.equal(cs.receive(msg(1, 'alice'), null).fresh, false);
  cs.receive(msg(2, 'alice'), null);
  const c = cs.get('dm:alice:bob');
  assert.equal(c.messages.size, 2);
  assert.equal(c.unread, 2);
  // Not counted while the conversation is open, nor for one's own.
  cs.receive(msg(3, 'alice'), 'dm:alice:bob');
  cs.receive(msg(4, 'bob'), null);
  assert.equal(c.unread, 2);
  assert.deepEqual(c.sorted().map((m) => m.seq), [1, 2, 3, 4]);
});

test('a recalled message stays recalled when an older copy arrives again', () => {
  const cs = new Conversations('bob');
  cs.receive(msg(1, 'alice'), null);
  cs.get('dm:alice:bob').recall('m1');
  cs.receive(msg(1, 'alice'), null);
  const m = cs.get('dm:alice:bob').messages.get('m1');
  assert.equal(m.recalled, true);
  assert.equal(m.body, '');
  assert.equal(preview(m, 'bob'), 'Message recalled');
});

test('"seen" marks my newest message the peer has read', () => {
  const cs = new Conversations('alice');
  for (const m of [msg(1, 'alice'), msg(2, 'alice'), msg(3, 'bob'), msg(4, 'alice')]) cs.receive(m, null);
  const c = cs.get('dm:alice:bob');
  assert.equal(seenMark(c, 'alice'), null);
  cs.receipt('dm:alice:bob', 'bob', 3);
  assert.deepEqual(seenMark(c, 'alice'), { id: 'm2', text: 'Seen' });
  cs.receipt('dm:alice:bob', 'bob', 4);
  assert.deepEqual(seenMark(c, 'alice'), { id: 'm4', text: 'Seen' });
  // My own read on another device clears my unread count instead.
  c.unread = 3;
  cs.receipt('dm:alice:bob', 'alice', 4);
  assert.equal(c.unread, 0);
});

test('group receipts name the readers', () => {
  const cs = new Conversations('alice');
  const g = (seq, from) => ({ ...msg(seq, from), conv: 'g:g-1', group: 'g-1', to: undefined });
  cs.receive(g(1, 'alice'), null);
  cs.receive(g(2, 'alice'), null);
  cs.receipt('g:g-1', 'carol', 2);
  cs.receipt('g:g-1', 'bob', 1);
  assert.deepEqual(seenMark(cs.get('g:g-1'), 'alice'), { id: 'm2', text: 'Seen by carol' });
  cs.receipt('g:g-1', 'bob', 2);
  assert.deepEqual(seenMark(cs.get('g:g-1'), 'alice'), { id: 'm2', text: 'Seen by bob, carol' });
});

test('only http and https media links are shown', () => {
  assert.equal(safeMediaUrl('https://x.example/a.jpg'), 'https://x.example/a.jpg');
  assert.equal(safeMediaUrl('http://127.0.0.1:1/a.png'), 'http://127.0.0.1:1/a.png');
  assert.equal(safeMediaUrl('javascript:alert(1)'), null);
  assert.equal(safeMediaUrl('data:text/html,hi'), null);
  assert.equal(safeMediaUrl(''), null);
  assert.equal(safeMediaUrl(undefined), null);
});

test('member lists are parsed and checked', () => {
  assert.deepEqual(parseUserList(' bob, carol  dave,bob '), ['bob', 'carol', 'dave']);
  assert.throws(() => parseUserList('bob, c:arol'), /"c:arol" is not a user id/);
});
