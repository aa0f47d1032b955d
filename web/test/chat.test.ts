import { describe, expect, it } from 'vitest';
import type { MessageView } from '../src/generated/protocol';
import {
  addMessages,
  addPending,
  applyConversations,
  applyHistory,
  applyReadReceipt,
  applyReadState,
  applyTyping,
  delivery,
  callDuration,
  describeChange,
  initialChatState,
  isTyping,
  sortedConversations,
  targetOf,
  totalUnread,
  unreadUpTo,
} from '../src/state/chat';
import { initials } from '../src/ui/util';
import { callStatus, type CallState } from '../src/call/call';
import { comparePeerIds } from '../src/call/peer';

const m = (id: number, from: string, to: string, client_msg_id = `c${id}`): MessageView => ({
  id,
  conversation_id: 0, // not read: the chat state is keyed by peer
  from,
  to,
  kind: 'text',
  body: `b${id}`,
  client_msg_id,
  created_at: '2026-01-01T00:00:00Z',
});
const user = (username: string) => ({ id: 1, username, display_name: username.toUpperCase(), created_at: '' });

describe('chat state', () => {
  it('adds messages once, in id order, and counts unread from the peer', () => {
    let s = initialChatState('me');
    s = addMessages(s, [m(2, 'bob', 'me'), m(1, 'bob', 'me')]);
    s = addMessages(s, [m(2, 'bob', 'me')]); // replayed twice
    expect(s.threads.bob.messages.map((x) => x.id)).toEqual([1, 2]);
    expect(s.conversations.bob.unread).toBe(1 + 0); // id 1 arrived after id 2 (older): no bump
    expect(s.conversations.bob.last?.id).toBe(2);
    s = addMessages(s, [m(3, 'bob', 'me')]);
    expect(s.conversations.bob.unread).toBe(2);
    expect(totalUnread(s)).toBe(2);
  });

  it('replaces the pending copy when the ack or the echo arrives', () => {
    let s = initialChatState('me');
    s = addPending(s, { client_msg_id: 'c-x', to: 'bob', body: 'hi', created_at: '' });
    expect(s.threads.bob.pending).toHaveLength(1);
    s = addMessages(s, [m(5, 'me', 'bob', 'c-x')]);
    s = addMessages(s, [m(5, 'me', 'bob', 'c-x')]);
    expect(s.threads.bob.pending).toHaveLength(0);
    expect(s.threads.bob.messages).toHaveLength(1);
    expect(s.conversations.bob.unread).toBe(0);
  });

  it('delivery: sent until the peer reads, then read', () => {
    let s = addMessages(initialChatState('me'), [m(5, 'me', 'bob'), m(6, 'me', 'bob')]);
    expect(delivery(s, s.threads.bob.messages[0])).toBe('sent');
    s = applyReadReceipt(s, 'bob', 5);
    expect(delivery(s, s.threads.bob.messages[0])).toBe('read');
    expect(delivery(s, s.threads.bob.messages[1])).toBe('sent');
    expect(applyReadReceipt(s, 'bob', 4)).toBe(s); // never goes back
  });

  it('history pages merge (older first) and keep has_more', () => {
    let s = initialChatState('me');
    s = applyHistory(s, 'bob', { messages: [m(10, 'bob', 'me'), m(11, 'me', 'bob')], has_more: true }, false);
    s = addMessages(s, [m(12, 'bob', 'me')]);
    s = applyHistory(s, 'bob', { messages: [m(8, 'bob', 'me'), m(9, 'bob', 'me')], has_more: false }, true);
    expect(s.threads.bob.messages.map((x) => x.id)).toEqual([8, 9, 10, 11, 12]);
    expect(s.threads.bob.hasMore).toBe(false);
  });

  it('conversations sort most recent first; read state clears unread', () => {
    let s = initialChatState('me');
    s = applyConversations(s, [
      { id: 1, kind: 'direct', members_count: 2, role: 'member', peer: user('old'), presence: { status: 'offline' }, last_message: m(1, 'old', 'me'), unread_count: 1, last_read_id: 0, peer_last_read_id: 0 },
      { id: 2, kind: 'direct', members_count: 2, role: 'member', peer: user('new'), presence: { status: 'online' }, last_message: m(9, 'new', 'me'), unread_count: 3, last_read_id: 4, peer_last_read_id: 0 },
    ]);
    expect(sortedConversations(s).map((c) => c.peer)).toEqual(['new', 'old']);
    s = addMessages(s, [m(10, 'old', 'me')]);
    expect(sortedConversations(s).map((c) => c.peer)).toEqual(['old', 'new']);
    expect(s.conversations.old.unread).toBe(2);
    s = applyHistory(s, 'old', { messages: [m(1, 'old', 'me'), m(10, 'old', 'me')], has_more: false }, false);
    expect(unreadUpTo(s, 'old')).toBe(10);
    s = applyReadState(s, 'old', 10, 0);
    expect(s.conversations.old.unread).toBe(0);
    expect(unreadUpTo(s, 'old')).toBeNull();
  });

  it('read ticks come from the server after a reload', () => {
    let s = initialChatState('me');
    s = applyConversations(s, [
      { id: 3, kind: 'direct', members_count: 2, role: 'member', peer: user('bob'), presence: { status: 'online' }, last_message: m(7, 'me', 'bob'), unread_count: 0, last_read_id: 0, peer_last_read_id: 6 },
    ]);
    expect(delivery(s, m(6, 'me', 'bob'))).toBe('read');
    expect(delivery(s, m(7, 'me', 'bob'))).toBe('sent');
  });

  it('typing shows for a few seconds and stops when a message arrives', () => {
    let s = applyTyping(initialChatState('me'), 'bob', 1000);
    expect(isTyping(s, 'bob', 2000)).toBe(true);
    expect(isTyping(s, 'bob', 5000)).toBe(false);
    s = addMessages(s, [m(1, 'bob', 'me')]);
    expect(isTyping(s, 'bob', 2000)).toBe(false);
  });
});

describe('group state', () => {
  const g = (id: number, from: string, extra: Partial<MessageView> = {}): MessageView => ({
    id,
    conversation_id: 7,
    from,
    kind: 'text',
    body: `b${id}`,
    client_msg_id: `g${id}`,
    created_at: '2026-01-01T00:00:00Z',
    ...extra,
  });

  it('keys a group by its id, counts only messages as unread, and follows its title', () => {
    let s = initialChatState('me');
    s = addMessages(s, [g(1, 'ann', { kind: 'group_created', body: '', title: 'Trip', subjects: ['me', 'bob'] })]);
    expect(Object.keys(s.conversations)).toEqual(['#7']);
    expect(s.conversations['#7']).toMatchObject({ kind: 'group', id: 7, displayName: 'Trip', unread: 0, member: true });
    s = addMessages(s, [g(2, 'bob'), g(3, 'me'), g(4, 'ann')]);
    // My own message at 3 means I have read what came before it.
    expect(s.conversations['#7'].unread).toBe(1);
    expect(unreadUpTo(s, '#7')).toBe(4);
    s = addMessages(s, [g(5, 'ann', { kind: 'title_changed', body: '', title: 'Trip 2' })]);
    expect(s.conversations['#7'].displayName).toBe('Trip 2');
    expect(delivery(s, g(3, 'me'))).toBe('sent');
    expect(targetOf('#7')).toEqual({ conversation_id: 7 });
    expect(targetOf('bob')).toEqual({ to: 'bob' });
  });

  it('is read-only once I am removed, and says what changed', () => {
    let s = initialChatState('me');
    const removal = g(9, 'ann', { kind: 'member_removed', body: '', subjects: ['me'] });
    s = addMessages(s, [g(8, 'ann'), removal]);
    expect(s.conversations['#7'].member).toBe(false);
    expect(describeChange('me', removal)).toBe('ann removed you');
    expect(describeChange('me', g(10, 'me', { kind: 'members_added', subjects: ['bob', 'cid'] }))).toBe('You added bob, cid');
    expect(describeChange('bob', g(11, 'ann', { kind: 'member_left', subjects: ['bob'] }))).toBe('ann left; you now own the group');
  });

  it("tells a group call's start and end, with how long it lasted", () => {
    const started = g(12, 'ann', { kind: 'call_started', body: '', call: { call_id: 'c', media: 'video' } });
    const ended = g(13, 'ann', { kind: 'call_ended', body: '', call: { call_id: 'c', media: 'video', duration_secs: 3725 } });
    expect(describeChange('me', started)).toBe('ann started a video call');
    expect(describeChange('me', ended)).toBe('The call ended · 1:02:05');
    expect(callDuration(65)).toBe('1:05');
    // Neither counts as unread.
    const s = addMessages(initialChatState('me'), [started, ended]);
    expect(s.conversations['#7'].unread).toBe(0);
  });

  it('takes whole emoji for initials', () => {
    expect(initials('Weekend 🏕️')).toBe('W🏕️');
    expect(initials('ann')).toBe('A');
  });
});

describe('call state', () => {
  const base = { phase: 'started', peers: {} } as unknown as CallState;
  const peer = (step: string) => ({ peerId: 'p', username: 'u', step, muted: false, camera: true, screen: false, connected: true, stream: null });
  it('derives the status steps', () => {
    expect(callStatus({ ...base, phase: 'idle' })).toBe('idle');
    expect(callStatus({ ...base, phase: 'created' })).toBe('room created');
    expect(callStatus({ ...base, phase: 'joined' })).toBe('joined');
    expect(callStatus(base)).toBe('session started');
    expect(callStatus({ ...base, peers: { a: peer('offer') } } as unknown as CallState)).toBe('offer');
    expect(callStatus({ ...base, peers: { a: peer('answer'), b: peer('offer') } } as unknown as CallState)).toBe('answer');
    expect(callStatus({ ...base, peers: { a: peer('connected'), b: peer('offer') } } as unknown as CallState)).toBe('connected');
    expect(callStatus({ ...base, phase: 'ended' })).toBe('ended');
  });
  it('orders peer ids numerically so both sides agree who is polite', () => {
    expect(comparePeerIds('p2', 'p10')).toBeLessThan(0);
    expect(comparePeerIds('p10', 'p2')).toBeGreaterThan(0);
    expect(comparePeerIds('p3', 'p3')).toBe(0);
  });
});
