// The client's model of PROTOCOL.md 1.1, with no DOM and no socket: ids,
// validation, the inbox position, and the conversations with their messages
// (deduplicated by message id). app.js drives it and draws it.

/** PROTOCOL.md "Identities": 1 to 64 characters of A-Z a-z 0-9 _ . - */
export const USER_ID = /^[A-Za-z0-9_.-]{1,64}$/;

export function validUserId(s) {
  return typeof s === 'string' && USER_ID.test(s);
}

/** The conversation id of a one-to-one chat: the two ids in byte order. */
export function dmConv(a, b) {
  const [x, y] = a < b ? [a, b] : [b, a];
  return `dm:${x}:${y}`;
}

/** The conversation id of a group. */
export function groupConv(groupId) {
  return `g:${groupId}`;
}

/** The peer of a one-to-one conversation for user `me`. */
export function peerOf(conv, me) {
  const [, a, b] = conv.split(':');
  return a === me ? b : a;
}

/** How a request names a conversation: `{with}` or `{group}`. */
export function target(conv, me) {
  if (conv.startsWith('g:')) return { group: conv.slice(2) };
  return { with: peerOf(conv, me) };
}

/** How `send` and `typing` name where they go: `{to}` or `{group}`. */
export function destination(conv, me) {
  if (conv.startsWith('g:')) return { group: conv.slice(2) };
  return { to: peerOf(conv, me) };
}

/** Splits "bob, carol dave" into user ids; throws on an invalid one. */
export function parseUserList(text) {
  const ids = text.split(/[\s,]+/).filter(Boolean);
  for (const id of ids) {
    if (!validUserId(id)) throw new Error(`"${id}" is not a user id (1 to 64 of A-Z a-z 0-9 _ . -)`);
  }
  return [...new Set(ids)];
}

/** Emoji placeholder keys (PROTOCOL.md: "[smile]") and how they render. */
export const EMOJI = {
  '[smile]': '😄',
  '[laugh]': '😂',
  '[heart]': '❤️',
  '[thumbsup]': '👍',
  '[party]': '🎉',
  '[cry]': '😢',
  '[fire]': '🔥',
  '[wave]': '👋',
};

/** Media URLs are shown only when they are http(s): never `javascript:`. */
export function safeMediaUrl(url) {
  if (typeof url !== 'string' || url === '') return null;
  try {
    const u = new URL(url, 'http://invalid.invalid/');
    return u.protocol === 'http:' || u.protocol === 'https:' ? url : null;
  } catch {
    return null;
  }
}

/** One line for the conversation list. */
export function preview(msg, me) {
  if (!msg) return '';
  if (msg.recalled) return 'Message recalled';
  const who = msg.from === me ? 'You: ' : '';
  switch (msg.kind) {
    case 'text': return who + msg.body;
    case 'emoji': return who + (EMOJI[msg.body] ?? msg.body);
    case 'image': return `${who}Photo`;
    case 'video': return `${who}Video`;
    case 'voice': return `${who}Voice message`;
    case 'system': return systemText(msg, me);
    default: return who + (msg.body || msg.kind);
  }
}

/** A group membership change in words. */
export function systemText(msg, me) {
  const s = msg.system ?? {};
  const name = (u) => (u === me ? 'you' : u);
  const by = s.by === me ? 'You' : s.by;
  const users = (s.users ?? []).map(name).join(', ');
  switch (s.event) {
    case 'created': return `${by} created the group${users ? ` with ${users}` : ''}`;
    case 'added': return `${by} added ${users}`;
    case 'removed': return `${by} removed ${users}`;
    case 'left': return `${users || by} left`;
    case 'owner': return `${users} now own${users === 'you' ? '' : 's'} the group`;
    default: return 'Group changed';
  }
}

/** Whether a system message takes `me` out of its group. */
export function removesMe(msg, me) {
  const s = msg.system;
  return !!s && (s.event === 'left' || s.event === 'removed') && (s.users ?? []).includes(me);
}

/**
 * The highest inbox position processed without a gap (PROTOCOL.md "Inbox
 * and sync"). `accept` says what a live frame's `pts` means.
 */
export class InboxPosition {
  constructor(pts = 0) {
    this.pts = pts;
  }

  /** 'next' (the one expected), 'old' (already had), or 'gap' (sync). */
  accept(pts) {
    if (typeof pts !== 'number') return 'gap';
    if (pts <= this.pts) return 'old';
    if (pts === this.pts + 1) {
      this.pts = pts;
      return 'next';
    }
    return 'gap';
  }

  /** After a `synced` page: everything up to `pts` is processed. */
  advanceTo(pts) {
    if (typeof pts === 'number' && pts > this.pts) this.pts = pts;
  }
}

/** One conversation as the client knows it. */
export class Conversation {
  constructor(conv) {
    this.conv = conv;
    this.group = conv.startsWith('g:') ? { id: conv.slice(2), name: conv.slice(2) } : null;
    this.last = null;
    this.unread = 0;
    this.readSeq = 0;
    this.peerReadSeq = 0;
    /** reader -> seq, from live receipts (groups and one-to-one). */
    this.readers = new Map();
    this.updated = 0;
    /** id -> Message: a message arrives once however often it is delivered. */
    this.messages = new Map();
    /** Older history exists below the oldest loaded message. */
    this.more = false;
    this.historyLoaded = false;
    /** Set when a system message took us out of the group. */
    this.left = false;
    this.members = null;
    this.owner = null;
  }

  /** Messages in conversation order. */
  sorted() {
    return [...this.messages.values()].sort((a, b) => a.seq - b.seq);
  }

  oldestSeq() {
    let min = Infinity;
    for (const m of this.messages.values()) min = Math.min(min, m.seq);
    return min === Infinity ? undefined : min;
  }

  newestSeq() {
    let max = 0;
    for (const m of this.messages.values()) max = Math.max(max, m.seq);
    return Math.max(max, this.last?.seq ?? 0);
  }

  /** Adds or replaces a message; true when it was not known before. */
  put(msg) {
    const known = this.messages.get(msg.id);
    // A recalled copy never turns back into the original.
    const merged = known?.recalled ? { ...msg, recalled: true, body: '', media: undefined } : msg;
    this.messages.set(msg.id, merged);
    if (!this.last || merged.seq >= this.last.seq) {
      this.last = merged;
      this.updated = Math.max(this.updated, merged.ts ?? 0);
    }
    return !known;
  }

  recall(msgId) {
    const m = this.messages.get(msgId);
    if (m) this.messages.set(msgId, { ...m, recalled: true, body: '', media: undefined });
    if (this.last?.id === msgId) this.last = { ...this.last, recalled: true, body: '', media: undefined };
  }

  title(me) {
    return this.group ? this.group.name : peerOf(this.conv, me);
  }
}

/** Every conversation of the signed-in user. */
export class Conversations {
  constructor(me) {
    this.me = me;
    this.byId = new Map();
  }

  get(conv) {
    let c = this.byId.get(conv);
    if (!c) {
      c = new Conversation(conv);
      this.byId.set(conv, c);
    }
    return c;
  }

  /** An item of a `conversations` reply: the server's counts win. */
  applyItem(item) {
    const c = this.get(item.conv);
    if (item.group) c.group = { id: item.group.id, name: item.group.name };
    if (item.last) c.put(item.last);
    c.unread = item.unread ?? 0;
    c.readSeq = item.read_seq ?? c.readSeq;
    if (typeof item.peer_read_seq === 'number') c.peerReadSeq = Math.max(c.peerReadSeq, item.peer_read_seq);
    c.updated = Math.max(c.updated, item.updated ?? 0);
    return c;
  }

  /**
   * A message that reached this session (live or by sync). Returns the
   * conversation and whether the message is new here; a new message from
   * someone else raises the unread count unless the conversation is open.
   */
  receive(msg, openConv) {
    const c = this.get(msg.conv);
    const fresh = c.put(msg);
    if (fresh && msg.from !== this.me && msg.kind !== 'system' && msg.conv !== openConv && msg.seq > c.readSeq) {
      c.unread += 1;
    }
    if (msg.kind === 'system' && removesMe(msg, this.me)) c.left = true;
    else if (msg.kind === 'system' && msg.system?.event === 'added' && (msg.system.users ?? []).includes(this.me)) c.left = false;
    return { conv: c, fresh };
  }

  receipt(conv, reader, seq) {
    const c = this.get(conv);
    if (reader === this.me) {
      c.readSeq = Math.max(c.readSeq, seq);
      c.unread = 0;
    } else {
      c.readers.set(reader, Math.max(c.readers.get(reader) ?? 0, seq));
      if (!c.group) c.peerReadSeq = Math.max(c.peerReadSeq, seq);
    }
    return c;
  }

  /** Most recently active first; conversations with nothing yet last. */
  list() {
    return [...this.byId.values()]
      .filter((c) => c.last || c.messages.size > 0 || c.pinned)
      .sort((a, b) => (b.updated - a.updated) || (a.conv < b.conv ? -1 : 1));
  }
}

/**
 * Which of my messages carries the "seen" mark, and by whom: my newest
 * message that a reader has read up to. One-to-one: "Seen"; groups: the
 * readers' names.
 */
export function seenMark(c, me) {
  const mine = c.sorted().filter((m) => m.from === me && m.kind !== 'system');
  if (mine.length === 0) return null;
  if (!c.group) {
    const seen = mine.filter((m) => m.seq <= c.peerReadSeq).pop();
    return seen ? { id: seen.id, text: 'Seen' } : null;
  }
  for (let i = mine.length - 1; i >= 0; i--) {
    const readers = [...c.readers].filter(([r, s]) => r !== me && s >= mine[i].seq).map(([r]) => r).sort();
    if (readers.length) return { id: mine[i].id, text: `Seen by ${readers.join(', ')}` };
  }
  return null;
}
