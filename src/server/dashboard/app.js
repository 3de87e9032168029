// The dashboard's logic, plain modern JavaScript with no build step: it keeps one WebSocket to
// `tiklive serve` (reconnecting with backoff and rebuilding from each new initial sync), renders the
// lives, the chat and the sales, and creates and updates sales over the HTTP API. Nicknames, comments
// and every other field come from TikTok viewers, so the page is built with createElement and
// textContent only: no server or viewer text is ever parsed as HTML.
'use strict';

const TOKEN_KEY = 'tiklive.token';
/** The chat keeps at most this many lines in the DOM; older ones are dropped. */
const MAX_CHAT_LINES = 500;
/** How many message ids are remembered to drop duplicates. */
const MAX_SEEN = 5000;
/** A connection that lasted this long resets the reconnect backoff. */
const STABLE_MS = 10000;
const RETRY_BASE_MS = 500;
const RETRY_MAX_MS = 10000;

const state = {
  token: null,
  ws: null,
  /** Incremented for every new WebSocket, so handlers of an old one do nothing. */
  generation: 0,
  retries: 0,
  retryTimer: null,
  openedAt: 0,
  /** The server sent its initial messages and `synced`. */
  synced: false,
  /** How many times the dashboard synced (the first connection and every reconnect). */
  syncs: 0,
  /** Something arrived on the current WebSocket. */
  received: false,
  /** The server refused the token; nothing reconnects until a new one is given. */
  needsToken: false,
  /** Events of the initial sync, rendered at once when `synced` arrives. */
  pending: [],
  lives: new Map(), // username -> Live
  rooms: new Map(), // room_id -> username
  seen: new Set(),
  seenOrder: [],
  lines: new Map(), // msg_id -> chat line element
  claims: new Map(), // msg_id -> chat event with a claim
  streaks: new Map(), // gift streak key -> chat line element
  sales: new Map(), // id -> Sale
  saleElements: new Map(), // id -> list item
};

const $ = (selector) => document.querySelector(selector);

// ---------------------------------------------------------------------------------------------------
// Small DOM helpers: text only, never HTML.

/** An element with a class and text (or child nodes). */
function el(tag, className, ...children) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

function setText(node, text) {
  const value = text === null || text === undefined ? '' : String(text);
  if (node.textContent !== value) node.textContent = value;
}

/** The URL when it is http(s), else null: a viewer's avatar must not be a javascript: or data: URL. */
function safeImageUrl(url) {
  if (typeof url !== 'string' || url === '') return null;
  try {
    const parsed = new URL(url, location.href);
    return parsed.protocol === 'https:' || parsed.protocol === 'http:' ? parsed.href : null;
  } catch {
    return null;
  }
}

function image(url, className) {
  const safe = safeImageUrl(url);
  if (!safe) return null;
  const img = document.createElement('img');
  img.className = className;
  img.alt = '';
  img.loading = 'lazy';
  img.decoding = 'async';
  img.referrerPolicy = 'no-referrer';
  img.addEventListener('error', () => img.remove(), { once: true });
  img.src = safe;
  return img;
}

function formatCount(n) {
  return typeof n === 'number' ? n.toLocaleString() : '–';
}

function formatTime(ts) {
  const date = new Date(ts);
  if (Number.isNaN(date.getTime())) return '';
  return date.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
}

/** A form's field by name (`form.elements.item` would be the collection's item() method). */
function field(form, name) {
  return form.elements.namedItem(name);
}

function show(node, visible) {
  node.hidden = !visible;
}

function showError(node, message) {
  setText(node, message || '');
  show(node, Boolean(message));
}

// ---------------------------------------------------------------------------------------------------
// Token and HTTP API

/** The token from `#token=…` (remembered, then removed from the address bar) or the remembered one. */
function readToken() {
  const params = new URLSearchParams(location.hash.replace(/^#/, ''));
  if (params.has('token')) {
    const token = params.get('token');
    try {
      localStorage.setItem(TOKEN_KEY, token);
    } catch {
      // Private mode: the token lasts as long as the page.
    }
    params.delete('token');
    const rest = params.toString();
    history.replaceState(null, '', location.pathname + location.search + (rest ? '#' + rest : ''));
    return token || null;
  }
  try {
    return localStorage.getItem(TOKEN_KEY);
  } catch {
    return null;
  }
}

class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

/** Calls the API; resolves to the JSON body, rejects with an ApiError carrying the server's message. */
async function api(method, path, body) {
  const headers = { Accept: 'application/json' };
  if (state.token) headers.Authorization = 'Bearer ' + state.token;
  const init = { method, headers, cache: 'no-store' };
  if (body !== undefined) {
    headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch {
    throw new ApiError(0, 'network', 'The server cannot be reached.');
  }
  const text = await response.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = null;
  }
  if (response.status === 401) askForToken('The server refused the token.');
  if (!response.ok) {
    const error = (data && data.error) || {};
    throw new ApiError(
      response.status,
      error.code || String(response.status),
      error.message || `${response.status} ${response.statusText}`.trim(),
    );
  }
  return data;
}

function askForToken(message) {
  state.needsToken = true;
  show($('#auth'), true);
  showError($('#auth-error'), state.token ? message : '');
  setConnection('auth', 'Token needed');
  $('#token-input').focus();
}

function onTokenSubmit(event) {
  event.preventDefault();
  const token = $('#token-input').value.trim();
  if (!token) return;
  state.token = token;
  try {
    localStorage.setItem(TOKEN_KEY, token);
  } catch {
    // Kept in memory only.
  }
  $('#token-input').value = '';
  state.needsToken = false;
  show($('#auth'), false);
  state.retries = 0;
  connect();
}

// ---------------------------------------------------------------------------------------------------
// The WebSocket: connect, sync, reconnect with backoff

function setConnection(kind, text) {
  const node = $('#conn');
  node.dataset.state = kind;
  setText(node, text);
}

function webSocketUrl() {
  const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
  const query = state.token ? '?token=' + encodeURIComponent(state.token) : '';
  return `${scheme}//${location.host}/ws${query}`;
}

function connect() {
  clearTimeout(state.retryTimer);
  state.retryTimer = null;
  if (state.ws) {
    state.generation++;
    state.ws.close();
  }
  const generation = ++state.generation;
  state.synced = false;
  state.received = false;
  state.pending = [];
  setConnection('connecting', state.retries ? 'Reconnecting…' : 'Connecting…');
  let ws;
  try {
    ws = new WebSocket(webSocketUrl());
  } catch {
    scheduleReconnect();
    return;
  }
  state.ws = ws;
  ws.addEventListener('open', () => {
    if (generation !== state.generation) return;
    state.openedAt = Date.now();
    setConnection('syncing', 'Syncing…');
  });
  ws.addEventListener('message', (message) => {
    if (generation !== state.generation) return;
    let data;
    try {
      data = JSON.parse(message.data);
    } catch {
      return;
    }
    state.received = true;
    if (data && typeof data === 'object') onMessage(data);
  });
  ws.addEventListener('close', () => {
    if (generation !== state.generation) return;
    state.ws = null;
    if (state.openedAt && Date.now() - state.openedAt >= STABLE_MS) state.retries = 0;
    state.openedAt = 0;
    if (!state.received) {
      // A refused upgrade looks like any failure to the browser: ask the API whether it is the token.
      api('GET', '/status').then(
        () => scheduleReconnect(),
        (error) => {
          if (error.status !== 401) scheduleReconnect();
        },
      );
    } else {
      scheduleReconnect();
    }
  });
}

function scheduleReconnect() {
  if (state.needsToken || state.retryTimer) return;
  const exponential = Math.min(RETRY_MAX_MS, RETRY_BASE_MS * 2 ** state.retries);
  const delay = Math.round(exponential * (0.75 + Math.random() * 0.5));
  state.retries++;
  setConnection('reconnecting', `Disconnected; reconnecting in ${Math.ceil(delay / 1000)} s`);
  state.retryTimer = setTimeout(() => {
    state.retryTimer = null;
    connect();
  }, delay);
}

function reconnectNow() {
  if (state.needsToken || state.ws) return;
  state.retries = 0;
  connect();
}

function onMessage(message) {
  if ('v' in message) {
    // An event, exactly as `tiklive watch` prints it.
    if (state.synced) addEvents([message]);
    else state.pending.push(message);
    return;
  }
  switch (message.type) {
    case 'status':
      setLives(message.lives || []);
      break;
    case 'synced':
      finishSync();
      break;
    case 'sale':
      if (message.sale) upsertSale(message.sale);
      break;
    case 'error':
      // The server refused something this page sent; nothing a seller can act on.
      console.warn('tiklive serve:', message.error && message.error.message);
      break;
    default:
      break;
  }
}

/** Rebuilds the chat from the initial events of this connection, then loads the sales. */
function finishSync() {
  const chat = $('#chat');
  chat.replaceChildren();
  state.seen.clear();
  state.seenOrder = [];
  state.lines.clear();
  state.claims.clear();
  state.streaks.clear();
  // The server sends the recent events live by live; the chat reads best in time order.
  const events = state.pending.sort((a, b) => (a.ts < b.ts ? -1 : a.ts > b.ts ? 1 : 0));
  state.pending = [];
  state.synced = true;
  state.syncs++;
  addEvents(events);
  chat.scrollTop = chat.scrollHeight;
  show($('#chat-jump'), false);
  setConnection('live', 'Live');
  loadSales();
  loadAccounts();
}

// ---------------------------------------------------------------------------------------------------
// Lives

function setLives(lives) {
  state.lives = new Map(lives.map((live) => [live.username, live]));
  const known = state.rooms;
  state.rooms = new Map(
    lives.filter((live) => live.room_id).map((live) => [String(live.room_id), live.username]),
  );
  for (const [room, username] of state.rooms) {
    if (known.get(room) === username) continue;
    for (const tag of document.querySelectorAll(`.chat-line[data-room-id="${CSS.escape(room)}"] .live-tag`)) {
      setText(tag, '@' + username);
    }
  }
  renderLives();
}

const IDLE_STATES = new Set(['offline', 'ended', 'disconnected']);

function renderLives() {
  const container = $('#status');
  for (const node of [...container.children]) {
    if (!state.lives.has(node.dataset.username)) node.remove();
  }
  // A live keeps its place and a new one goes last, so that nothing moves under the seller's finger.
  for (const [name, live] of state.lives) {
    let node = container.querySelector(`.live[data-username="${CSS.escape(name)}"]`);
    if (!node) {
      node = buildLive(name);
      container.append(node);
    }
    updateLive(node, live);
  }
  $('#chat').classList.toggle('multi', state.lives.size > 1);
}

function counter(label, field) {
  const value = el('dd', null);
  value.dataset.field = field;
  return el('div', 'counter', el('dt', null, label), value);
}

function buildLive(name) {
  const node = el('article', 'live');
  node.dataset.username = name;
  const badge = el('span', 'badge state');
  const action = el('button', 'live-action');
  action.type = 'button';
  node.append(
    el('header', null, el('span', 'live-name', '@' + name), badge),
    el('p', 'live-title'),
    el(
      'dl',
      'counters',
      counter('Viewers', 'viewer_count'),
      counter('Likes', 'total_likes'),
      counter('Gifts', 'gifts'),
      counter('Claims', 'claims'),
    ),
    el('p', 'live-error error'),
    action,
  );
  return node;
}

function updateLive(node, live) {
  node.dataset.state = live.state;
  const badge = node.querySelector('.state');
  badge.dataset.state = live.state;
  const attempts = live.state === 'reconnecting' && live.reconnect_attempts ? ` (${live.reconnect_attempts})` : '';
  const nextCheck = live.next_check_at
    ? ` · next check ${new Date(live.next_check_at).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' })}`
    : '';
  setText(badge, live.state + attempts + nextCheck);
  const cell = (name) => node.querySelector(`[data-field="${name}"]`);
  setText(cell('viewer_count'), formatCount(live.viewer_count));
  setText(cell('total_likes'), formatCount(live.total_likes));
  const diamonds = live.gift_diamonds ? ` · ${formatCount(live.gift_diamonds)} 💎` : '';
  setText(cell('gifts'), formatCount(live.gifts) + diamonds);
  setText(cell('claims'), formatCount(live.claims));
  const title = node.querySelector('.live-title');
  setText(title, live.title || '');
  show(title, Boolean(live.title));
  const error = node.querySelector('.live-error');
  setText(error, live.error || '');
  show(error, Boolean(live.error));
  const action = node.querySelector('.live-action');
  const idle = IDLE_STATES.has(live.state);
  action.dataset.action = idle ? 'connect' : 'disconnect';
  setText(action, idle ? 'Connect' : 'Disconnect');
}

async function onLiveAction(event) {
  const button = event.target.closest('.live-action');
  if (!button) return;
  const username = button.closest('.live').dataset.username;
  const path = button.dataset.action === 'connect' ? '/connect' : '/disconnect';
  button.disabled = true;
  try {
    const answer = await api('POST', path, { username });
    if (answer && answer.live) mergeLive(answer.live);
    showError(button.closest('.live').querySelector('.live-error'), '');
  } catch (error) {
    showError(button.closest('.live').querySelector('.live-error'), error.message);
  } finally {
    button.disabled = false;
  }
}

function mergeLive(live) {
  const lives = new Map(state.lives);
  lives.set(live.username, live);
  setLives([...lives.values()]);
}

async function onConnectSubmit(event) {
  event.preventDefault();
  const input = $('#connect-username');
  const username = input.value.trim().replace(/^@/, '');
  if (!username) return;
  const button = event.target.querySelector('button');
  button.disabled = true;
  try {
    const answer = await api('POST', '/connect', { username });
    if (answer && answer.live) mergeLive(answer.live);
    input.value = '';
    showError($('#connect-error'), '');
  } catch (error) {
    showError($('#connect-error'), error.message);
  } finally {
    button.disabled = false;
  }
}

// ---------------------------------------------------------------------------------------------------
// Chat

function isAtBottom(node) {
  return node.scrollHeight - node.scrollTop - node.clientHeight < 40;
}

/** True the first time a message id is seen. */
function firstSeen(id) {
  if (id === null || id === undefined) return true;
  if (state.seen.has(id)) return false;
  state.seen.add(id);
  state.seenOrder.push(id);
  if (state.seenOrder.length > MAX_SEEN) state.seen.delete(state.seenOrder.shift());
  return true;
}

function addEvents(events) {
  const chat = $('#chat');
  const stick = isAtBottom(chat);
  const fragment = document.createDocumentFragment();
  let added = 0;
  for (const event of events) {
    if (!firstSeen(event.msg_id)) continue;
    const line = renderEvent(event);
    if (line) {
      fragment.append(line);
      added++;
    }
  }
  if (!added) return;
  chat.append(fragment);
  trimChat(chat);
  if (stick) chat.scrollTop = chat.scrollHeight;
  else show($('#chat-jump'), true);
}

function trimChat(chat) {
  while (chat.childElementCount > MAX_CHAT_LINES) {
    const first = chat.firstElementChild;
    const id = first.dataset.msgId;
    if (id) {
      state.lines.delete(id);
      state.claims.delete(id);
    }
    if (first.dataset.streak) state.streaks.delete(first.dataset.streak);
    first.remove();
  }
}

/** The chat line of an event, or null for events the chat does not show (their totals are in the status). */
function renderEvent(event) {
  switch (event.type) {
    case 'chat':
      return chatLine(event);
    case 'gift':
      return giftLine(event);
    case 'social':
      if (event.social_type === 'follow') return systemLine(event, 'followed the host');
      if (event.social_type === 'share') return systemLine(event, 'shared the LIVE');
      return null;
    case 'control':
      if (event.action === 'stream_end') return systemLine(event, 'The LIVE has ended');
      return null;
    case 'connection':
      if (event.state === 'gap') return systemLine(event, 'Some messages may be missing here (reconnected).');
      return null;
    case 'im_delete':
      for (const id of event.delete_msg_ids || []) {
        const line = state.lines.get(String(id));
        if (line) line.classList.add('deleted');
      }
      return null;
    default:
      return null;
  }
}

function lineBase(event, kind) {
  const line = el('div', `chat-line ${kind}`);
  line.dataset.type = event.type;
  if (event.msg_id) {
    line.dataset.msgId = event.msg_id;
    state.lines.set(String(event.msg_id), line);
  }
  if (event.room_id) line.dataset.roomId = event.room_id;
  return line;
}

function who(user) {
  const nickname = (user && (user.nickname || user.unique_id)) || 'someone';
  const meta = el('span', 'who', el('span', 'nick', nickname));
  if (user && user.unique_id) meta.append(' ', el('span', 'uid', '@' + user.unique_id));
  return meta;
}

function avatar(user) {
  const img = image(user && user.avatar_url, 'avatar');
  if (img) return img;
  const name = (user && (user.nickname || user.unique_id)) || '?';
  return el('span', 'avatar initial', [...name][0] || '?');
}

function meta(event) {
  const time = el('time', null, formatTime(event.ts));
  if (event.ts) time.dateTime = event.ts;
  // Filled in later when the event comes before the status that names its room.
  const live = state.rooms.get(String(event.room_id));
  return el('span', 'meta', time, el('span', 'live-tag', live ? '@' + live : ''));
}

function claimText(claim) {
  const parts = [claim.item];
  if (claim.variant) parts.push(claim.variant);
  if (claim.quantity && claim.quantity !== 1) parts.push('×' + claim.quantity);
  return parts.join(' · ');
}

function chatLine(event) {
  const claim = event.claim && event.claim.item ? event.claim : null;
  const line = lineBase(event, claim ? 'chat claim' : 'chat');
  const body = el('div', 'body', el('div', 'head', who(event.user), meta(event)), el('p', 'text', event.comment || ''));
  if (claim) {
    state.claims.set(String(event.msg_id), event);
    line.tabIndex = 0;
    line.setAttribute('role', 'button');
    line.title = 'Create a sale from this claim';
    body.append(el('span', 'claim-badge', 'JP ' + claimText(claim)));
    markSale(line);
  }
  line.append(avatar(event.user), body);
  return line;
}

function giftLine(event) {
  const user = event.user || {};
  const key = [event.room_id, user.id, event.group_id, event.gift_id].join('|');
  const count = event.repeat_count > 1 ? ` ×${event.repeat_count}` : '';
  const diamonds = event.total_diamonds || event.diamond_count;
  const text = el(
    'p',
    'text',
    'sent ',
    image(event.gift_image_url, 'gift-image'),
    el('strong', 'gift-name', event.gift_name || 'a gift'),
    count,
    diamonds ? el('span', 'diamonds', ` (${formatCount(diamonds)} 💎)`) : null,
  );
  // A streak updates one line in place instead of adding a line per step.
  const existing = state.streaks.get(key);
  if (existing && existing.isConnected) {
    existing.querySelector('.text').replaceWith(text);
    if (!event.streaking) state.streaks.delete(key);
    return null;
  }
  const line = lineBase(event, 'gift');
  line.append(avatar(user), el('div', 'body', el('div', 'head', who(user), meta(event)), text));
  if (event.streaking) {
    line.dataset.streak = key;
    state.streaks.set(key, line);
  }
  return line;
}

function systemLine(event, text) {
  const line = lineBase(event, 'system');
  const body = el('p', 'text');
  if (event.user) body.append(who(event.user), ' ');
  body.append(text);
  line.append(body);
  return line;
}

function onChatScroll() {
  if (isAtBottom($('#chat'))) show($('#chat-jump'), false);
}

function onChatJump() {
  const chat = $('#chat');
  chat.scrollTop = chat.scrollHeight;
  show($('#chat-jump'), false);
}

function onChatActivate(event) {
  if (event.type === 'keydown' && event.key !== 'Enter' && event.key !== ' ') return;
  const line = event.target.closest('.chat-line.claim');
  if (!line) return;
  const claim = state.claims.get(line.dataset.msgId);
  if (!claim) return;
  event.preventDefault();
  openSaleForm(claim);
}

// ---------------------------------------------------------------------------------------------------
// The sale form

/** The unit price of the latest sale of this item, to prefill the form. */
function lastPrice(item) {
  let best = null;
  for (const sale of state.sales.values()) {
    if (sale.item === item && sale.unit_price && (!best || sale.id > best.id)) best = sale;
  }
  return best ? best.unit_price : '';
}

function openSaleForm(event) {
  const form = $('#sale-form');
  const claim = event.claim;
  field(form, 'message_id').value = event.msg_id;
  field(form, 'item').value = claim.item || '';
  field(form, 'variant').value = claim.variant || '';
  field(form, 'quantity').value = claim.quantity || 1;
  field(form, 'price').value = lastPrice(claim.item);
  field(form, 'note').value = '';
  const user = event.user || {};
  const by = user.unique_id ? `${user.nickname || user.unique_id} (@${user.unique_id})` : user.nickname || 'someone';
  setText($('#sale-claim'), `${by}: “${event.comment || ''}”`);
  showError($('#sale-error'), '');
  show($('#sale-force'), false);
  $('#sale-submit').disabled = false;
  const dialog = $('#sale-dialog');
  if (!dialog.open) dialog.showModal();
  field(form, 'price').focus();
}

function closeSaleForm() {
  const dialog = $('#sale-dialog');
  if (dialog.open) dialog.close();
}

function saleRequest(form, force) {
  const value = (name) => field(form, name).value.trim();
  const body = { message_id: value('message_id'), item: value('item') };
  if (!body.item) throw new Error('The item is required.');
  const quantity = Number(value('quantity'));
  if (!Number.isInteger(quantity) || quantity < 1) throw new Error('The quantity must be a whole number of at least 1.');
  body.quantity = quantity;
  if (value('variant')) body.variant = value('variant');
  // Sellers type "12,50" as often as "12.50".
  if (value('price')) body.price = value('price').replace(',', '.');
  if (value('note')) body.note = value('note');
  if (force) body.force = true;
  return body;
}

async function submitSale(force) {
  const form = $('#sale-form');
  let body;
  try {
    body = saleRequest(form, force);
  } catch (error) {
    showError($('#sale-error'), error.message);
    return;
  }
  const submit = $('#sale-submit');
  submit.disabled = true;
  $('#sale-force').disabled = true;
  try {
    const sale = await api('POST', '/sales', body);
    if (sale && sale.id !== undefined) upsertSale(sale, true);
    closeSaleForm();
  } catch (error) {
    showError($('#sale-error'), error.message);
    // A sale exists for this message: creating a second one needs the seller's explicit choice.
    show($('#sale-force'), error.status === 409);
  } finally {
    submit.disabled = false;
    $('#sale-force').disabled = false;
  }
}

// ---------------------------------------------------------------------------------------------------
// Sales

async function loadSales() {
  try {
    const answer = await api('GET', '/sales');
    for (const sale of (answer && answer.sales) || []) upsertSale(sale);
    showError($('#sales-error'), '');
  } catch (error) {
    showError($('#sales-error'), 'Cannot load the sales: ' + error.message);
  }
}

/** Adds or replaces a sale unless what we hold is newer (a list can answer after a live update). */
function upsertSale(sale, highlight) {
  const current = state.sales.get(sale.id);
  if (current && current.updated && sale.updated && current.updated > sale.updated) return;
  state.sales.set(sale.id, sale);
  if (sale.msg_id) {
    const line = state.lines.get(String(sale.msg_id));
    if (line) markSale(line);
  }
  renderSales();
  if (highlight) {
    const node = state.saleElements.get(sale.id);
    if (node) {
      node.classList.add('new');
      node.scrollIntoView({ block: 'nearest' });
    }
  }
}

/** Marks a claim's chat line when a live sale was made from it. */
function markSale(line) {
  const id = line.dataset.msgId;
  const sale = [...state.sales.values()].find((s) => String(s.msg_id) === id && s.status !== 'cancelled');
  line.classList.toggle('has-sale', Boolean(sale));
  if (sale) line.dataset.saleId = sale.id;
  else delete line.dataset.saleId;
}

function saleVisible(sale, filter) {
  if (!filter) return true;
  if (filter === 'open') return sale.status === 'pending' || sale.status === 'confirmed';
  return sale.status === filter;
}

function renderSales() {
  const list = $('#sales');
  const filter = $('#sales-filter').value;
  const sales = [...state.sales.values()].sort((a, b) => b.id - a.id);
  const wanted = new Set();
  let previous = null;
  for (const sale of sales) {
    if (!saleVisible(sale, filter)) continue;
    wanted.add(sale.id);
    let node = state.saleElements.get(sale.id);
    if (!node || node.dataset.updated !== String(sale.updated) || node.dataset.status !== sale.status) {
      const fresh = buildSale(sale);
      if (node) node.replaceWith(fresh);
      node = fresh;
      state.saleElements.set(sale.id, node);
    }
    const expected = previous ? previous.nextElementSibling : list.firstElementChild;
    if (expected !== node) list.insertBefore(node, expected);
    previous = node;
  }
  for (const [id, node] of state.saleElements) {
    if (!wanted.has(id)) {
      node.remove();
      state.saleElements.delete(id);
    }
  }
  renderSummary(sales);
}

function buildSale(sale) {
  const node = el('li', 'sale');
  node.dataset.saleId = sale.id;
  node.dataset.status = sale.status;
  node.dataset.updated = String(sale.updated);
  if (sale.msg_id) node.dataset.msgId = sale.msg_id;
  const what = [sale.item, sale.variant].filter(Boolean).join(' · ');
  const buyer = el('span', 'who', el('span', 'nick', sale.nickname || sale.unique_id || sale.buyer_id || '?'));
  if (sale.unique_id) buyer.append(' ', el('span', 'uid', '@' + sale.unique_id));
  const badge = el('span', 'badge status', sale.status);
  badge.dataset.state = sale.status;
  const actions = el('div', 'sale-actions');
  const action = (name, label) => {
    const button = el('button', 'sale-action', label);
    button.type = 'button';
    button.dataset.action = name;
    actions.append(button);
  };
  if (sale.status === 'pending') action('confirmed', 'Confirm');
  if (sale.status === 'pending' || sale.status === 'confirmed') action('paid', 'Paid');
  if (sale.status !== 'cancelled') action('cancel', 'Cancel');
  node.append(
    el(
      'div',
      'sale-main',
      el('span', 'sale-item', what, sale.quantity > 1 ? el('span', 'qty', ` ×${sale.quantity}`) : null),
      el('span', 'sale-total', sale.total ? `${sale.total} ${sale.currency || ''}`.trim() : 'no price'),
    ),
    el('div', 'sale-buyer', buyer),
    el('div', 'sale-meta', badge, ` #${sale.id}`, sale.created ? ` · ${formatTime(sale.created)}` : '', sale.note ? el('span', 'note', ` · ${sale.note}`) : null),
    actions,
  );
  return node;
}

/** Adds decimal strings exactly ("12.50" + "0.5"), as prices are decimals, not floats. */
function addDecimal(a, b) {
  const [ai, af = ''] = a.split('.');
  const [bi, bf = ''] = b.split('.');
  const scale = Math.max(af.length, bf.length);
  const sum = BigInt(ai + af.padEnd(scale, '0')) + BigInt(bi + bf.padEnd(scale, '0'));
  const digits = sum.toString().padStart(scale + 1, '0');
  return scale ? `${digits.slice(0, -scale)}.${digits.slice(-scale)}` : digits;
}

function renderSummary(sales) {
  const live = sales.filter((s) => s.status !== 'cancelled');
  const totals = new Map();
  for (const sale of live) {
    if (!sale.total || !/^\d+(\.\d+)?$/.test(sale.total)) continue;
    const currency = sale.currency || '';
    totals.set(currency, addDecimal(totals.get(currency) || '0', sale.total));
  }
  const money = [...totals].map(([currency, total]) => `${total} ${currency}`.trim()).join(' + ');
  const paid = live.filter((s) => s.status === 'paid').length;
  const text = live.length ? `${live.length} sale${live.length > 1 ? 's' : ''}${money ? ' · ' + money : ''} · ${paid} paid` : 'No sales yet.';
  setText($('#sales-summary'), text);
}

async function onSaleAction(event) {
  const button = event.target.closest('.sale-action');
  if (!button) return;
  const node = button.closest('.sale');
  const id = Number(node.dataset.saleId);
  // Cancelling takes a second click, so a mis-tap on a phone cannot cancel a sale.
  if (button.dataset.action === 'cancel' && !button.classList.contains('armed')) {
    button.classList.add('armed');
    setText(button, 'Really cancel?');
    setTimeout(() => {
      if (button.isConnected) {
        button.classList.remove('armed');
        setText(button, 'Cancel');
      }
    }, 4000);
    return;
  }
  for (const b of node.querySelectorAll('button')) b.disabled = true;
  try {
    const sale =
      button.dataset.action === 'cancel'
        ? await api('DELETE', `/sales/${id}`)
        : await api('PATCH', `/sales/${id}`, { status: button.dataset.action });
    if (sale && sale.id !== undefined) upsertSale(sale);
    showError($('#sales-error'), '');
  } catch (error) {
    showError($('#sales-error'), `Sale #${id}: ${error.message}`);
    for (const b of node.querySelectorAll('button')) b.disabled = false;
  }
}

// ---------------------------------------------------------------------------------------------------
// TikTok accounts (Login Kit)

/** What the OAuth callback put in the fragment (`#connected=@handle`, `#oauth_error=…`), read once. */
function readOAuthResult() {
  const params = new URLSearchParams(location.hash.replace(/^#/, ''));
  const result = { connected: params.get('connected'), error: params.get('oauth_error') };
  if (result.connected !== null || result.error !== null) {
    params.delete('connected');
    params.delete('oauth_error');
    const rest = params.toString();
    history.replaceState(null, '', location.pathname + location.search + (rest ? '#' + rest : ''));
  }
  return result;
}

function formatDate(rfc3339) {
  const date = new Date(rfc3339);
  return Number.isNaN(date.getTime()) ? rfc3339 : date.toLocaleString();
}

/** One connected account: avatar, handle, scopes and when its tokens expire (never a token). */
function buildAccount(account) {
  const node = el('div', 'account');
  node.dataset.openId = account.open_id;
  const pic = image(account.avatar_url, 'avatar');
  if (pic) node.append(pic);
  const body = el('div', 'account-body');
  const name = el('strong', null);
  setText(name, account.display_name || account.username || account.open_id);
  body.append(name);
  if (account.username) {
    const handle = el('span', 'handle');
    setText(handle, '@' + account.username);
    body.append(' ', handle);
  }
  const scopes = el('div', 'scopes');
  setText(scopes, account.scopes.join(', '));
  const expiry = el('div', 'expiry');
  setText(
    expiry,
    account.needs_login
      ? 'Expired: connect again'
      : 'Token until ' + formatDate(account.access_expires_at) + ' · renewable until ' +
          formatDate(account.refresh_expires_at),
  );
  body.append(scopes, expiry);
  node.append(body);
  return node;
}

async function loadAccounts() {
  // The panel sits above the chat: a chat that was at the bottom stays there when the panel grows.
  const chat = $('#chat');
  const followChat = isAtBottom(chat);
  try {
    await renderAccounts();
  } finally {
    if (followChat) chat.scrollTop = chat.scrollHeight;
  }
}

async function renderAccounts() {
  const note = $('#accounts-note');
  let data;
  try {
    data = await api('GET', '/accounts');
  } catch (error) {
    if (error.status !== 401) {
      note.classList.add('error');
      showError(note, error.message);
    }
    return;
  }
  $('#accounts').replaceChildren(...data.accounts.map(buildAccount));
  const link = $('#oauth-connect');
  if (data.oauth_configured && data.connect_url) {
    // A browser follows this link itself, so the API token rides in the query.
    link.href = data.connect_url + (state.token ? '?token=' + encodeURIComponent(state.token) : '');
    show(link, true);
  } else {
    show(link, false);
  }
  if (state.oauthResult.error) {
    note.classList.add('error');
    showError(note, 'TikTok login failed: ' + state.oauthResult.error);
  } else if (state.oauthResult.connected) {
    setText(note, 'Connected ' + state.oauthResult.connected);
    note.classList.remove('error');
    show(note, true);
  } else if (!data.oauth_configured && data.accounts.length === 0) {
    setText(note, 'Set TIKTOK_CLIENT_KEY and TIKTOK_CLIENT_SECRET to connect a TikTok account.');
    note.classList.remove('error');
    show(note, true);
  }
}

// ---------------------------------------------------------------------------------------------------
// Start

function start() {
  state.oauthResult = readOAuthResult();
  state.token = readToken();
  $('#auth').addEventListener('submit', onTokenSubmit);
  $('#connect-form').addEventListener('submit', onConnectSubmit);
  $('#status').addEventListener('click', onLiveAction);
  const chat = $('#chat');
  chat.addEventListener('scroll', onChatScroll, { passive: true });
  chat.addEventListener('click', onChatActivate);
  chat.addEventListener('keydown', onChatActivate);
  $('#chat-jump').addEventListener('click', onChatJump);
  $('#claims-only').addEventListener('change', (event) => {
    chat.classList.toggle('claims-only', event.target.checked);
    chat.scrollTop = chat.scrollHeight;
  });
  $('#sale-form').addEventListener('submit', (event) => {
    event.preventDefault();
    submitSale(false);
  });
  $('#sale-force').addEventListener('click', () => submitSale(true));
  $('#sale-cancel').addEventListener('click', closeSaleForm);
  $('#sales').addEventListener('click', onSaleAction);
  $('#sales-filter').addEventListener('change', renderSales);
  window.addEventListener('online', reconnectNow);
  document.addEventListener('visibilitychange', () => {
    if (document.visibilityState === 'visible') reconnectNow();
  });
  renderSummary([]);
  connect();
}

start();
