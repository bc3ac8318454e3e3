/*
 * Parley Web SDK: window.IMKitUI.init({ domain, clientKey, token, container }).
 *
 * Plain ES2019 with no build step. Parley serves this file at /sdk/imkit.js after the
 * Socket.IO client, inside one closure that provides `io` and `PARLEY_SDK_VERSION`
 * (parley/web/assets.py); nothing but `window.IMKitUI` is added to the page.
 *
 * The UI lives in a shadow root, so the page's styles and the chat's never mix. It talks
 * to Parley like any IMKIT client: REST with IM-CLIENT-KEY + IM-Authorization, and one
 * Socket.IO connection authenticated in its CONNECT packet, which on every reconnection
 * asks for what it missed (`resume`: the last `seq` seen in each room).
 */
/* global io, PARLEY_SDK_VERSION */
(function () {
  'use strict';

  const VERSION = typeof PARLEY_SDK_VERSION === 'string' ? PARLEY_SDK_VERSION : 'dev';
  const SCRIPT_URL = (document.currentScript && document.currentScript.src) || '';
  const UPLOAD_BUCKET = 'chatserver-upload';
  const PAGE_SIZE = 30;
  const ROOM_PAGE = 300;
  const MAX_RESUME_ROOMS = 1000;
  const TYPING_SEND_MS = 3000;
  const TYPING_SHOW_MS = 6000;
  const TYPING_AFTER_MESSAGE_MS = 1500;
  const GROUP_GAP_MS = 5 * 60 * 1000;
  const FIRST_CONNECT_WAIT_MS = 8000;
  const LOG = '[IMKitUI]';

  // Codes after which retrying cannot help: the integrating developer must act.
  const FATAL = new Set([
    'MISSING_CLIENT_KEY',
    'INVALID_CLIENT_KEY',
    'CLIENT_KEY_MISMATCH',
    'INVALID_TOKEN',
    'UNAUTHORIZED',
    'INVALID_AUTH',
    'CONTAINER_NOT_FOUND',
  ]);
  const HINTS = {
    MISSING_CLIENT_KEY:
      'Pass your application\u2019s Client Key: IMKitUI.init({ domain, clientKey, token }).',
    INVALID_CLIENT_KEY:
      'Copy the Client Key again from your Parley application: this one is malformed, unknown or revoked.',
    CLIENT_KEY_MISMATCH:
      'This Client Key belongs to another application than the one served at this domain, or this page\u2019s origin is not one the application allows.',
    INVALID_TOKEN:
      'The user token is missing, expired or revoked: issue a new one from your backend.',
    NETWORK_ERROR: 'Check the domain option and that the chat server is running.',
    CONTAINER_NOT_FOUND: 'The container option must be an element or a selector that matches one.',
  };

  // ---------------------------------------------------------------------------------------
  // Errors

  function sdkError(code, message, status) {
    const error = new Error(message || code);
    error.name = 'IMKitError';
    error.code = code;
    if (status) error.status = status;
    return error;
  }

  /** REST errors are {RC, RM, error: CODE, message}; socket refusals {RC, RM, error: {code, message}}. */
  function errorFromBody(body, status) {
    if (body && typeof body === 'object') {
      const err = body.error;
      if (typeof err === 'string') return sdkError(err, body.message || body.RM, status || body.RC);
      if (err && typeof err === 'object' && err.code) {
        return sdkError(err.code, err.message || body.RM, status || body.RC);
      }
    }
    return sdkError('SERVER_ERROR', 'The chat server answered with status ' + status, status);
  }

  // ---------------------------------------------------------------------------------------
  // Small helpers

  function serverBase(domain) {
    let raw = String(domain || (SCRIPT_URL ? new URL(SCRIPT_URL).origin : location.origin));
    if (!/^[a-z][a-z0-9+.-]*:\/\//i.test(raw)) raw = location.protocol + '//' + raw;
    const url = new URL(raw);
    return { origin: url.origin, path: url.pathname.replace(/\/+$/, '') };
  }

  /** `url` when it is a web address; never `javascript:` or other schemes from a message. */
  function webUrl(url) {
    try {
      const parsed = new URL(String(url), location.href);
      return parsed.protocol === 'https:' || parsed.protocol === 'http:' ? parsed.href : null;
    } catch (e) {
      return null;
    }
  }

  function randomId() {
    const bytes = new Uint8Array(16);
    crypto.getRandomValues(bytes);
    return 'w' + Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
  }

  function idOf(value) {
    if (value && typeof value === 'object') return value._id || value.id || null;
    return typeof value === 'string' ? value : null;
  }

  function seqOf(message) {
    return message && typeof message.seq === 'number' ? message.seq : 0;
  }

  function timeOf(message) {
    return (message && (message.createdAtMS || message.messageTimeMS)) || 0;
  }

  function formatBytes(bytes) {
    if (!(bytes >= 0)) return '';
    const units = ['B', 'KB', 'MB', 'GB'];
    let value = bytes;
    let unit = 0;
    while (value >= 1024 && unit < units.length - 1) {
      value /= 1024;
      unit += 1;
    }
    return (unit === 0 ? value : value.toFixed(value < 10 ? 1 : 0)) + '\u00a0' + units[unit];
  }

  function initials(name) {
    const words = String(name || '?')
      .trim()
      .split(/\s+/)
      .filter(Boolean);
    const letters = words.length > 1 ? words[0][0] + words[1][0] : Array.from(words[0] || '?')[0];
    return letters.toUpperCase();
  }

  function hue(text) {
    let hash = 0;
    for (const ch of String(text)) hash = (hash * 31 + ch.codePointAt(0)) % 360;
    return hash;
  }

  function dayKey(ms) {
    const d = new Date(ms);
    return d.getFullYear() + '-' + d.getMonth() + '-' + d.getDate();
  }

  /** Creates an element: attrs may hold `class`, `text`, `hidden`, `on<event>` handlers. */
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    const props = attrs || {};
    Object.keys(props).forEach((key) => {
      const value = props[key];
      if (value === null || value === undefined || value === false) return;
      if (key === 'class') node.className = value;
      else if (key === 'text') node.textContent = value;
      else if (key === 'hidden') node.hidden = true;
      else if (key.startsWith('on') && typeof value === 'function') {
        node.addEventListener(key.slice(2).toLowerCase(), value);
      } else node.setAttribute(key, value === true ? '' : String(value));
    });
    appendAll(node, children);
    return node;
  }

  function appendAll(node, children) {
    children.forEach((child) => {
      if (child === null || child === undefined || child === false) return;
      if (Array.isArray(child)) appendAll(node, child);
      else node.appendChild(typeof child === 'string' ? document.createTextNode(child) : child);
    });
  }

  const ICONS = {
    send: ['M4.5 12 19.5 4.5 15 19.5l-3.2-6.3z', 'M11.8 13.2 19.5 4.5'],
    attach: [
      'M20 11.6 12.1 19.5a5 5 0 0 1-7.1-7.1l8.2-8.2a3.4 3.4 0 0 1 4.8 4.8l-8.1 8.1a1.8 1.8 0 0 1-2.5-2.5l7.3-7.3',
    ],
    back: ['M15 5.5 8.5 12l6.5 6.5'],
    file: ['M14 3.5H7.5a2 2 0 0 0-2 2v13a2 2 0 0 0 2 2h9a2 2 0 0 0 2-2V8z', 'M14 3.5V8h4.5'],
    alert: ['M12 3.5a8.5 8.5 0 1 0 0 17 8.5 8.5 0 0 0 0-17z', 'M12 8v4.8', 'M12 15.8v.2'],
    check: ['M5.5 12.5 9.5 16.5 18.5 7.5'],
    checks: ['M2.5 12.5 6.5 16.5 15.5 7.5', 'M10.5 16.5 19.5 7.5'],
    close: ['M6.5 6.5 17.5 17.5', 'M17.5 6.5 6.5 17.5'],
    chat: [
      'M5 5.5h14a1.5 1.5 0 0 1 1.5 1.5v8.5a1.5 1.5 0 0 1-1.5 1.5H10l-4.5 3.5V17H5a1.5 1.5 0 0 1-1.5-1.5V7A1.5 1.5 0 0 1 5 5.5z',
    ],
  };

  function icon(name) {
    const ns = 'http://www.w3.org/2000/svg';
    const svg = document.createElementNS(ns, 'svg');
    svg.setAttribute('viewBox', '0 0 24 24');
    svg.setAttribute('aria-hidden', 'true');
    svg.setAttribute('focusable', 'false');
    svg.setAttribute('class', 'imk-icon');
    ICONS[name].forEach((d) => {
      const path = document.createElementNS(ns, 'path');
      path.setAttribute('d', d);
      svg.appendChild(path);
    });
    return svg;
  }

  function visuallyHidden(text) {
    return el('span', { class: 'imk-sr', text });
  }

  function domReady() {
    if (document.readyState !== 'loading') return Promise.resolve();
    return new Promise((resolve) =>
      document.addEventListener('DOMContentLoaded', resolve, { once: true }),
    );
  }

  // ---------------------------------------------------------------------------------------
  // REST

  class Api {
    constructor(base, clientKey, token) {
      this.base = base;
      this.clientKey = clientKey;
      this.token = token;
    }

    url(path, query) {
      const url = new URL(this.base.origin + this.base.path + path);
      Object.keys(query || {}).forEach((key) => {
        if (query[key] !== undefined && query[key] !== null)
          url.searchParams.set(key, String(query[key]));
      });
      return url.toString();
    }

    headers() {
      const headers = { 'IM-CLIENT-KEY': this.clientKey };
      if (this.token) headers['IM-Authorization'] = this.token;
      return headers;
    }

    /** The `result` of a call, or an IMKitError with the server's code. */
    async call(method, path, options) {
      const opts = options || {};
      const init = { method, headers: this.headers(), credentials: 'omit' };
      if (opts.json !== undefined) {
        init.headers['Content-Type'] = 'application/json';
        init.body = JSON.stringify(opts.json);
      } else if (opts.form) {
        init.body = opts.form;
      }
      let response;
      try {
        response = await fetch(this.url(path, opts.query), init);
      } catch (e) {
        throw sdkError(
          'NETWORK_ERROR',
          'The chat server at ' + this.base.origin + ' cannot be reached',
        );
      }
      let body = null;
      try {
        body = await response.json();
      } catch (e) {
        body = null;
      }
      if (!response.ok || !body || body.RC !== 0) throw errorFromBody(body, response.status);
      return body.result;
    }

    /** Whether `url` is on this server: only then may it carry the user's credentials. */
    /** Whether `url` is a file on this server: only then may it carry the user's
     * credentials (a message's URLs are whatever its sender wrote). */
    owns(url) {
      try {
        const parsed = new URL(url, location.href);
        return (
          parsed.origin === this.base.origin &&
          parsed.pathname.startsWith(this.base.path + '/files/')
        );
      } catch (e) {
        return false;
      }
    }

    async blob(url) {
      const response = await fetch(url, { headers: this.headers(), credentials: 'omit' });
      if (!response.ok)
        throw sdkError('FILE_UNAVAILABLE', 'The file could not be loaded', response.status);
      return response.blob();
    }
  }

  // ---------------------------------------------------------------------------------------
  // Room state

  class Room {
    constructor(data) {
      this.id = data._id;
      this.data = data;
      this.unread = data.unread || 0;
      this.lastMessage = data.lastMessage || null;
      this.lastSeq = seqOf(data.lastMessage);
      this.messages = new Map(); // _id → message, server ones
      this.pending = new Map(); // clientMessageId → local message not yet stored
      this.loaded = false;
      this.hasOlder = true;
      this.loadingOlder = false;
      this.readBy = new Map(); // member id → id of the last message it read
      this.typing = new Map(); // user id → { name, timer }
      this.spokeAt = new Map(); // user id → when its last new message arrived
      this.markedSeq = 0;
      this.absorbReadState(data);
    }

    /** A newer state of the room from the server; the fields personal to this user
     * (unread, …) are absent from `room` events and then kept. */
    update(data, withPersonal) {
      this.data = Object.assign({}, this.data, data);
      if (withPersonal && typeof data.unread === 'number') this.unread = data.unread;
      if (data.lastMessage && seqOf(data.lastMessage) >= seqOf(this.lastMessage)) {
        this.lastMessage = data.lastMessage;
      }
      this.lastSeq = Math.max(this.lastSeq, seqOf(data.lastMessage));
      this.absorbReadState(data);
    }

    absorbReadState(data) {
      (data.memberProperties || []).forEach((prop) => {
        if (prop && prop.client && prop.lastRead) this.readBy.set(prop.client, prop.lastRead);
      });
    }

    members() {
      return (this.data.members || []).filter((m) => m && typeof m === 'object');
    }

    memberName(userId) {
      const member = this.members().find((m) => idOf(m) === userId);
      return (member && member.nickname) || userId;
    }

    activity() {
      return timeOf(this.lastMessage) || this.data.createdTimeMS || 0;
    }

    /** The seq of a message id, when this client knows that message. */
    seqOfId(messageId) {
      const known = this.messages.get(messageId);
      if (known) return seqOf(known);
      if (this.lastMessage && idOf(this.lastMessage) === messageId) return seqOf(this.lastMessage);
      return -1;
    }

    newest() {
      let best = this.lastMessage && this.lastMessage.seq ? this.lastMessage : null;
      this.messages.forEach((m) => {
        if (!best || seqOf(m) > seqOf(best)) best = m;
      });
      return best;
    }
  }

  // ---------------------------------------------------------------------------------------
  // One chat UI

  class Chat {
    constructor(config) {
      this.config = config;
      this.base = serverBase(config.domain);
      this.api = new Api(this.base, config.clientKey, config.token);
      this.rooms = new Map();
      this.openRoomId = null;
      this.me = null;
      this.socket = null;
      this.roomsLoaded = false;
      this.buffered = [];
      this.failed = null;
      this.destroyed = false;
      this.blobs = new Map(); // file URL → Promise of an object URL
      this.msgEls = new Map(); // key → <li> of the open room
      this.lastTypingSent = 0;
      this.readTimer = null;
      this.cleanups = [];
      this.dateFormat = new Intl.DateTimeFormat(config.locale, {
        hour: 'numeric',
        minute: '2-digit',
      });
      this.dayFormat = new Intl.DateTimeFormat(config.locale, {
        weekday: 'long',
        month: 'long',
        day: 'numeric',
      });
      this.shortDay = new Intl.DateTimeFormat(config.locale, { month: 'short', day: 'numeric' });
      this.ready = new Promise((resolve, reject) => {
        this.resolveReady = resolve;
        this.rejectReady = reject;
      });
      this.ready.catch(() => {}); // reported through console.error and onError; no unhandled noise
    }

    // -- start and failure ----------------------------------------------------------------

    async start() {
      try {
        await domReady();
        this.mount();
        if (!this.config.clientKey) {
          throw sdkError('MISSING_CLIENT_KEY', 'Client key is required for SDK initialization');
        }
        this.setStatus('connecting');
        this.me = await this.api.call('GET', '/me');
        this.renderMe();
        await this.connect();
        await this.loadRooms();
        this.roomsLoaded = true;
        this.buffered.splice(0).forEach((run) => run());
        this.ui.shell.classList.remove('imk-loading');
        this.resolveReady(this.publicApi);
        if (typeof this.config.onReady === 'function') this.config.onReady(this.publicApi);
      } catch (error) {
        this.fail(error);
      }
    }

    fail(error) {
      if (this.failed || this.destroyed) return;
      const err =
        error && error.code
          ? error
          : sdkError('SDK_ERROR', String((error && error.message) || error));
      this.failed = err;
      console.error(LOG + ' ' + err.code + ': ' + err.message);
      if (this.socket) this.socket.close();
      this.showError(err);
      this.rejectReady(err);
      if (typeof this.config.onError === 'function') {
        try {
          this.config.onError(err);
        } catch (e) {
          console.error(LOG, e);
        }
      }
    }

    destroy() {
      this.destroyed = true;
      if (this.socket) this.socket.close();
      clearTimeout(this.readTimer);
      this.rooms.forEach((room) => room.typing.forEach((t) => clearTimeout(t.timer)));
      this.cleanups.forEach((undo) => undo());
      this.blobs.forEach((p) =>
        p.then(
          (url) => URL.revokeObjectURL(url),
          () => {},
        ),
      );
      if (this.host && this.host.parentNode) this.host.parentNode.removeChild(this.host);
    }

    listen(target, type, handler) {
      target.addEventListener(type, handler);
      this.cleanups.push(() => target.removeEventListener(type, handler));
    }

    // -- mounting ---------------------------------------------------------------------------

    container() {
      const option = this.config.container;
      if (option === undefined || option === null) return null;
      const found = typeof option === 'string' ? document.querySelector(option) : option;
      if (!found || typeof found.appendChild !== 'function') {
        throw sdkError(
          'CONTAINER_NOT_FOUND',
          'No element matches the container option ' + String(option),
        );
      }
      return found;
    }

    mount() {
      const container = this.container();
      this.host = el('div', { class: 'imkit-ui' });
      if (container) {
        this.host.style.height = '100%';
        container.appendChild(this.host);
      } else {
        this.host.classList.add('imkit-ui-page');
        Object.assign(this.host.style, { position: 'fixed', inset: '0' });
        document.body.appendChild(this.host);
      }
      this.root = this.host.attachShadow({ mode: 'open' });
      const stylesheet = el('link', { rel: 'stylesheet', href: this.assetUrl('imkit.css') });
      this.ui = this.buildShell();
      const reveal = () => this.ui.shell.classList.add('imk-styled');
      stylesheet.addEventListener('load', reveal);
      stylesheet.addEventListener('error', reveal);
      this.root.append(stylesheet, this.ui.shell);
      this.listen(document, 'visibilitychange', () => this.scheduleRead());
      this.listen(window, 'focus', () => this.scheduleRead());
    }

    assetUrl(name) {
      const base = SCRIPT_URL || this.base.origin + this.base.path + '/sdk/imkit.js';
      return new URL(name + '?v=' + encodeURIComponent(VERSION), base).toString();
    }

    buildShell() {
      const ui = {};
      ui.meAvatar = el('span', { class: 'imk-avatar imk-avatar-sm', 'aria-hidden': 'true' });
      ui.meName = el('span', { class: 'imk-me-name' });
      ui.status = el('span', {
        class: 'imk-conn',
        role: 'status',
        'data-state': 'connecting',
        text: 'Connecting\u2026',
      });
      ui.roomList = el('ul', {
        class: 'imk-rooms',
        role: 'list',
        onKeydown: (e) => this.onRoomListKey(e),
      });
      ui.noRooms = el('p', { class: 'imk-empty', hidden: true, text: 'No conversations yet.' });
      ui.side = el(
        'nav',
        { class: 'imk-side', 'aria-label': 'Conversations' },
        el(
          'header',
          { class: 'imk-side-head' },
          ui.meAvatar,
          el('div', { class: 'imk-me' }, ui.meName, ui.status),
        ),
        el('h2', { class: 'imk-side-title', text: 'Chats' }),
        ui.roomList,
        ui.noRooms,
      );
      ui.placeholder = el(
        'div',
        { class: 'imk-placeholder' },
        icon('chat'),
        el('p', { text: 'Select a conversation to start chatting.' }),
      );
      ui.conv = this.buildConversation(ui);
      ui.main = el('main', { class: 'imk-main' }, ui.placeholder, ui.conv);
      ui.layout = el('div', { class: 'imk-layout', 'data-view': 'list' }, ui.side, ui.main);
      ui.error = el('div', { class: 'imk-error', role: 'alert', hidden: true });
      ui.viewer = this.buildViewer(ui);
      ui.shell = el('div', { class: 'imk imk-loading' }, ui.layout, ui.error, ui.viewer);
      return ui;
    }

    buildConversation(ui) {
      ui.back = el(
        'button',
        {
          type: 'button',
          class: 'imk-icon-btn imk-back',
          'aria-label': 'Back to conversations',
          onClick: () => this.closeRoom(),
        },
        icon('back'),
      );
      ui.convAvatar = el('span', { class: 'imk-avatar', 'aria-hidden': 'true' });
      ui.convTitle = el('h2', { class: 'imk-conv-title', id: 'imk-conv-title' });
      ui.convSub = el('p', { class: 'imk-conv-sub' });
      ui.older = el(
        'button',
        { type: 'button', class: 'imk-older', onClick: () => this.loadOlder() },
        'Load older messages',
      );
      ui.start = el('p', {
        class: 'imk-start',
        hidden: true,
        text: 'This is the beginning of the conversation.',
      });
      ui.messages = el('ol', { class: 'imk-msgs' });
      ui.log = el(
        'div',
        {
          class: 'imk-log',
          role: 'log',
          'aria-labelledby': 'imk-conv-title',
          tabindex: '0',
          onScroll: () => this.onLogScroll(),
        },
        el('div', { class: 'imk-log-top' }, ui.older, ui.start),
        ui.messages,
      );
      ui.typing = el('div', { class: 'imk-typing', 'aria-live': 'polite' });
      ui.file = el('input', {
        type: 'file',
        class: 'imk-sr',
        id: 'imk-file',
        multiple: true,
        tabindex: '-1',
        onChange: (e) => this.onFilesChosen(e),
      });
      ui.attach = el(
        'button',
        {
          type: 'button',
          class: 'imk-icon-btn',
          'aria-label': 'Attach an image or file',
          onClick: () => ui.file.click(),
        },
        icon('attach'),
      );
      ui.input = el('textarea', {
        id: 'imk-input',
        class: 'imk-input',
        rows: '1',
        placeholder: 'Write a message\u2026',
        autocomplete: 'off',
        onKeydown: (e) => this.onInputKey(e),
        onInput: () => this.onInput(),
        onPaste: (e) => this.onPaste(e),
      });
      ui.send = el(
        'button',
        { type: 'submit', class: 'imk-icon-btn imk-send', 'aria-label': 'Send' },
        icon('send'),
      );
      ui.composer = el(
        'form',
        { class: 'imk-composer', onSubmit: (e) => this.onSubmit(e) },
        ui.file,
        ui.attach,
        el('label', { for: 'imk-input', class: 'imk-sr', text: 'Message' }),
        ui.input,
        ui.send,
      );
      const conv = el(
        'section',
        {
          class: 'imk-conv',
          hidden: true,
          'aria-labelledby': 'imk-conv-title',
          onKeydown: (e) => this.onConvKey(e),
          onDragover: (e) => e.preventDefault(),
          onDrop: (e) => this.onDrop(e),
        },
        el(
          'header',
          { class: 'imk-conv-head' },
          ui.back,
          ui.convAvatar,
          el('div', { class: 'imk-conv-names' }, ui.convTitle, ui.convSub),
        ),
        ui.log,
        ui.typing,
        ui.composer,
      );
      return conv;
    }

    buildViewer(ui) {
      ui.viewerImg = el('img', { class: 'imk-viewer-img', alt: '' });
      const close = el(
        'button',
        {
          type: 'button',
          class: 'imk-icon-btn imk-viewer-close',
          'aria-label': 'Close image',
          onClick: () => ui.viewer.close(),
        },
        icon('close'),
      );
      return el(
        'dialog',
        {
          class: 'imk-viewer',
          'aria-label': 'Image',
          onClick: (e) => e.target === ui.viewer && ui.viewer.close(),
        },
        close,
        ui.viewerImg,
      );
    }

    showError(err) {
      const ui = this.ui;
      if (!ui) return;
      ui.error.textContent = '';
      ui.error.append(
        el(
          'div',
          { class: 'imk-error-card' },
          icon('alert'),
          el('h2', { text: 'The chat could not start' }),
          el('p', { class: 'imk-error-code' }, el('code', { text: err.code })),
          el('p', { class: 'imk-error-message', text: err.message }),
          HINTS[err.code] ? el('p', { class: 'imk-error-hint', text: HINTS[err.code] }) : null,
        ),
      );
      ui.error.hidden = false;
      ui.layout.hidden = true;
      ui.shell.classList.remove('imk-loading');
    }

    setStatus(state) {
      const labels = {
        connecting: 'Connecting\u2026',
        online: 'Online',
        offline: 'Reconnecting\u2026',
      };
      this.ui.status.dataset.state = state;
      this.ui.status.textContent = labels[state];
    }

    renderMe() {
      this.ui.meName.textContent = this.me.nickname || this.me._id;
      this.fillAvatar(
        this.ui.meAvatar,
        this.me.nickname || this.me._id,
        this.me.avatarUrl,
        this.me._id,
      );
    }

    fillAvatar(node, name, url, seed) {
      node.textContent = '';
      node.style.setProperty('--imk-hue', String(hue(seed || name)));
      node.appendChild(el('span', { text: initials(name) }));
      if (url && /^https?:/i.test(url)) {
        const img = el('img', { alt: '', referrerpolicy: 'no-referrer', loading: 'lazy' });
        img.addEventListener('error', () => img.remove());
        img.src = url;
        node.appendChild(img);
      }
    }

    // -- real time --------------------------------------------------------------------------

    /** Opens the socket; resolves once it connected or its first attempt failed for a
     * reason that may pass, rejects when the server refused the credentials. */
    connect() {
      return new Promise((resolve, reject) => {
        const settle = { resolve, reject, timer: setTimeout(resolve, FIRST_CONNECT_WAIT_MS) };
        this.firstConnect = settle;
        const socket = io(this.base.origin, {
          path: this.base.path + '/socket.io',
          transports: ['websocket'],
          forceNew: true,
          reconnectionDelay: 1000,
          reconnectionDelayMax: 5000,
          auth: (cb) => cb(this.handshake()),
        });
        this.socket = socket;
        socket.on('connect', () => this.onConnect());
        socket.on('disconnect', (reason) => this.onDisconnect(reason));
        socket.on('connect_error', (err) => this.onConnectError(err));
        const handlers = {
          'chat message': (m) => this.onChatMessage(m),
          room: (r) => this.onRoomEvent(r),
          roomDeleted: (r) => this.removeRoom(idOf(r)),
          lastRead: (d) => this.onLastRead(d),
          typing: (d) => this.onTyping(d),
          userDeleteMessages: (d) => this.onUserDelete(d),
        };
        Object.keys(handlers).forEach((name) => {
          socket.on(name, (data) => this.dispatch(name, handlers[name], data));
        });
      });
    }

    settleFirstConnect(error) {
      const settle = this.firstConnect;
      if (!settle) return;
      this.firstConnect = null;
      clearTimeout(settle.timer);
      if (error) settle.reject(error);
      else settle.resolve();
    }

    /** What the CONNECT packet carries: the credentials and, once this client knows its
     * rooms, the last seq of each so the server sends what was missed meanwhile. */
    handshake() {
      const auth = { clientKey: this.config.clientKey, token: this.config.token };
      if (this.roomsLoaded) {
        const resume = {};
        this.sortedRooms()
          .slice(0, MAX_RESUME_ROOMS)
          .forEach((room) => {
            resume[room.id] = room.lastSeq;
          });
        auth.resume = resume;
      }
      return auth;
    }

    dispatch(name, handler, data) {
      const run = () => {
        try {
          handler(data);
        } catch (e) {
          console.error(LOG + ' while handling "' + name + '"', e);
        }
      };
      if (this.roomsLoaded) run();
      else this.buffered.push(run); // applied on top of the room list once it is loaded
    }

    onConnect() {
      this.setStatus('online');
      const reconnected = this.roomsLoaded;
      this.settleFirstConnect(null);
      if (reconnected) this.refreshRooms();
    }

    onDisconnect(reason) {
      if (this.destroyed || this.failed) return;
      this.setStatus('offline');
      // The server ended the session on purpose: Socket.IO does not retry that by itself.
      if (reason === 'io server disconnect') this.retrySoon();
    }

    onConnectError(err) {
      const data = err && err.data;
      if (data && data.error) {
        const error = errorFromBody(data, data.RC);
        if (FATAL.has(error.code)) {
          this.settleFirstConnect(error);
          this.fail(error);
          return;
        }
      }
      this.setStatus('offline');
      this.settleFirstConnect(null);
      // A refusal from the server (say, it is overloaded) is not retried by Socket.IO.
      if (this.socket && !this.socket.active) this.retrySoon();
    }

    retrySoon() {
      if (this.retryTimer) return;
      this.retryTimer = setTimeout(
        () => {
          this.retryTimer = null;
          if (!this.destroyed && !this.failed && this.socket && !this.socket.connected)
            this.socket.connect();
        },
        2000 + Math.random() * 2000,
      );
    }

    // -- rooms ------------------------------------------------------------------------------

    async loadRooms() {
      const result = await this.api.call('GET', '/rooms', {
        query: { limit: ROOM_PAGE, sort: '-lastMessage' },
      });
      (result.data || []).forEach((data) => this.upsertRoom(data, true));
      this.renderRoomList();
    }

    async refreshRooms() {
      try {
        await this.loadRooms();
        this.scheduleRead();
      } catch (e) {
        if (FATAL.has(e.code)) this.fail(e);
      }
    }

    upsertRoom(data, withPersonal) {
      const id = idOf(data);
      if (!id) return null;
      let room = this.rooms.get(id);
      if (room) room.update(data, withPersonal);
      else {
        room = new Room(Object.assign({ _id: id }, data));
        this.rooms.set(id, room);
      }
      return room;
    }

    async fetchRoom(roomId) {
      try {
        const data = await this.api.call('GET', '/rooms/' + encodeURIComponent(roomId));
        const room = this.upsertRoom(data, true);
        this.renderRoomList(room);
        return room;
      } catch (e) {
        return null;
      }
    }

    removeRoom(roomId) {
      const room = this.rooms.get(roomId);
      if (!room) return;
      this.rooms.delete(roomId);
      room.typing.forEach((t) => clearTimeout(t.timer));
      if (this.openRoomId === roomId) this.closeRoom();
      this.renderRoomList(null);
    }

    sortedRooms() {
      return Array.from(this.rooms.values()).sort((a, b) => b.activity() - a.activity());
    }

    roomName(room) {
      if (room.data.name) return room.data.name;
      const others = room.members().filter((m) => idOf(m) !== this.me._id);
      if (others.length) return others.map((m) => m.nickname || idOf(m)).join(', ');
      return 'Conversation';
    }

    roomPicture(room) {
      if (room.data.cover) return room.data.cover;
      const others = room.members().filter((m) => idOf(m) !== this.me._id);
      return room.data.roomType === 'direct' && others[0] ? others[0].avatarUrl : null;
    }

    isGroup(room) {
      return room.data.roomType !== 'direct' && room.members().length > 2;
    }

    /** Orders the list by activity; renders `changed` (a Room), or every room when
     * called without it, or none for null. */
    renderRoomList(changed) {
      const list = this.ui.roomList;
      const focused = this.root.activeElement;
      const rooms = this.sortedRooms();
      rooms.forEach((room, index) => {
        const fresh = !room.item;
        const item = room.item || this.createRoomItem(room);
        if (fresh || changed === undefined || changed === room) this.renderRoomItem(room);
        if (list.children[index] !== item) list.insertBefore(item, list.children[index] || null);
      });
      while (list.children.length > rooms.length) list.removeChild(list.lastChild);
      if (focused && focused !== this.root.activeElement && focused.isConnected) focused.focus();
      this.ui.noRooms.hidden = rooms.length > 0;
    }

    createRoomItem(room) {
      room.button = el('button', {
        type: 'button',
        class: 'imk-room',
        'data-room': room.id,
        onClick: () => this.openRoom(room.id),
      });
      room.item = el('li', null, room.button);
      return room.item;
    }

    renderRoomItem(room) {
      const button = room.button;
      if (!button) return;
      const name = this.roomName(room);
      const avatar = el('span', { class: 'imk-avatar', 'aria-hidden': 'true' });
      this.fillAvatar(avatar, name, this.roomPicture(room), room.id);
      const typing = this.typingText(room);
      const preview = typing || this.previewText(room);
      const last = room.lastMessage;
      button.textContent = '';
      button.append(
        avatar,
        el(
          'span',
          { class: 'imk-room-body' },
          el(
            'span',
            { class: 'imk-room-top' },
            el('span', { class: 'imk-room-name', text: name }),
            last
              ? el('time', {
                  class: 'imk-room-time',
                  datetime: new Date(timeOf(last)).toISOString(),
                  text: this.shortTime(timeOf(last)),
                })
              : null,
          ),
          el(
            'span',
            { class: 'imk-room-bottom' },
            el('span', {
              class: typing ? 'imk-room-preview imk-is-typing' : 'imk-room-preview',
              text: preview,
            }),
            room.unread > 0
              ? el(
                  'span',
                  { class: 'imk-badge', 'data-count': String(room.unread) },
                  room.unread > 99 ? '99+' : String(room.unread),
                  visuallyHidden(room.unread === 1 ? ' unread message' : ' unread messages'),
                )
              : null,
          ),
        ),
      );
      button.classList.toggle('imk-unread', room.unread > 0);
      if (this.openRoomId === room.id) button.setAttribute('aria-current', 'true');
      else button.removeAttribute('aria-current');
    }

    previewText(room) {
      const m = room.lastMessage;
      if (!m) return 'No messages yet';
      if (m.isHidden) return 'Hidden message';
      const text = this.summary(m, room);
      return idOf(m.sender) === this.me._id ? 'You: ' + text : text;
    }

    summary(m, room) {
      switch (m.messageType) {
        case 'text':
          return typeof m.message === 'string' ? m.message : '';
        case 'image':
          return 'Photo';
        case 'file':
        case 'audio':
        case 'video':
          return (
            (m.extra && m.extra.fileName) || (typeof m.message === 'string' && m.message) || 'File'
          );
        case 'recall':
          return 'Message recalled';
        case 'location':
          return 'Location';
        case 'sticker':
          return 'Sticker';
        default: {
          const system = this.systemText(m, room);
          if (system) return system;
          return typeof m.message === 'string' && m.message ? m.message : 'Message';
        }
      }
    }

    systemText(m, room) {
      const actor =
        idOf(m.sender) === this.me._id ? 'You' : room.memberName(idOf(m.sender)) || 'Someone';
      const names = (list) =>
        (list || [])
          .map((p) => (p && p.nickname) || idOf(p))
          .filter(Boolean)
          .join(', ');
      const extra = m.extra && typeof m.extra === 'object' ? m.extra : {};
      const subject =
        names(extra.invitees || extra.members) ||
        (m.member && (m.member.nickname || idOf(m.member))) ||
        (typeof m.message === 'string' ? m.message : '');
      switch (m.messageType) {
        case 'joinRoom':
          return actor + ' joined';
        case 'leaveRoom':
          return actor + ' left';
        case 'addMember':
        case 'addMembers':
          return actor + ' added ' + (subject || 'members');
        case 'deleteMember':
        case 'deleteMembers':
          return actor + ' removed ' + (subject || 'members');
        case 'assignAdmin':
          return actor + ' changed an admin';
        case 'cancelInvitations':
          return actor + ' withdrew invitations';
        default:
          return null;
      }
    }

    shortTime(ms) {
      if (!ms) return '';
      const date = new Date(ms);
      const now = new Date();
      if (dayKey(ms) === dayKey(now.getTime())) return this.dateFormat.format(date);
      const days = (now - date) / 86400000;
      if (days < 6)
        return new Intl.DateTimeFormat(this.config.locale, { weekday: 'short' }).format(date);
      return this.shortDay.format(date);
    }

    onRoomListKey(event) {
      if (event.key !== 'ArrowDown' && event.key !== 'ArrowUp') return;
      const buttons = Array.from(this.ui.roomList.querySelectorAll('.imk-room'));
      const index = buttons.indexOf(this.root.activeElement);
      if (index < 0) return;
      const next = buttons[index + (event.key === 'ArrowDown' ? 1 : -1)];
      if (next) {
        event.preventDefault();
        next.focus();
      }
    }

    // -- the open room ----------------------------------------------------------------------

    async openRoom(roomId) {
      const room = this.rooms.get(roomId);
      if (!room || this.failed) return;
      const previous = this.openRoomId;
      if (previous && this.rooms.get(previous))
        this.rooms.get(previous).draft = this.ui.input.value;
      this.openRoomId = roomId;
      this.ui.layout.dataset.view = 'room';
      this.ui.placeholder.hidden = true;
      this.ui.conv.hidden = false;
      if (previous && this.rooms.get(previous)) this.renderRoomItem(this.rooms.get(previous));
      this.renderRoomItem(room);
      this.renderHeader(room);
      this.renderTyping(room);
      this.ui.input.value = room.draft || '';
      this.resizeInput();
      this.renderAllMessages(room);
      this.scrollToBottom();
      // On touch screens focusing the input would open the keyboard over the history.
      if (window.matchMedia && window.matchMedia('(pointer: coarse)').matches) this.ui.log.focus();
      else this.ui.input.focus();
      if (!room.loaded) await this.loadLatest(room);
      this.scheduleRead();
    }

    closeRoom() {
      const roomId = this.openRoomId;
      if (this.rooms.get(roomId)) this.rooms.get(roomId).draft = this.ui.input.value;
      this.openRoomId = null;
      this.ui.layout.dataset.view = 'list';
      this.ui.conv.hidden = true;
      this.ui.placeholder.hidden = false;
      const room = this.rooms.get(roomId);
      if (room) {
        this.renderRoomItem(room);
        if (room.button) room.button.focus();
      }
    }

    onConvKey(event) {
      if (
        event.key === 'Escape' &&
        !this.ui.viewer.open &&
        this.ui.layout.dataset.view === 'room'
      ) {
        this.closeRoom();
      }
    }

    renderHeader(room) {
      const name = this.roomName(room);
      this.ui.convTitle.textContent = name;
      this.fillAvatar(this.ui.convAvatar, name, this.roomPicture(room), room.id);
      const count = room.members().length;
      this.ui.convSub.textContent =
        room.data.roomType === 'direct'
          ? 'Direct message'
          : count + (count === 1 ? ' member' : ' members');
    }

    async loadLatest(room) {
      this.ui.older.disabled = true;
      try {
        const page = await this.api.call(
          'GET',
          '/rooms/' + encodeURIComponent(room.id) + '/messages/v3',
          {
            query: { limit: PAGE_SIZE, sortOrder: 'desc', timeRangeField: 'createdAt' },
          },
        );
        const data = page.data || [];
        room.hasOlder = data.length >= PAGE_SIZE;
        room.loaded = true;
        data.forEach((m) => this.storeMessage(room, m));
        if (this.openRoomId === room.id) {
          this.renderAllMessages(room);
          this.scrollToBottom();
        }
      } catch (e) {
        if (FATAL.has(e.code)) this.fail(e);
        else console.warn(LOG + ' history of ' + room.id + ': ' + e.code);
      } finally {
        this.ui.older.disabled = false;
      }
    }

    async loadOlder() {
      const room = this.rooms.get(this.openRoomId);
      if (!room || !room.loaded || !room.hasOlder || room.loadingOlder) return;
      const oldest = this.oldestMessage(room);
      if (!oldest) {
        room.hasOlder = false;
        this.renderLogTop(room);
        return;
      }
      room.loadingOlder = true;
      this.renderLogTop(room);
      try {
        const page = await this.api.call(
          'GET',
          '/rooms/' + encodeURIComponent(room.id) + '/messages/v3',
          {
            // The anchor is part of the page: ask for one more and drop it.
            query: {
              limit: PAGE_SIZE + 1,
              beforeMessage: oldest._id,
              sortOrder: 'desc',
              timeRangeField: 'createdAt',
            },
          },
        );
        const older = (page.data || []).filter((m) => m._id !== oldest._id);
        room.hasOlder = older.length >= PAGE_SIZE;
        const log = this.ui.log;
        const before = log.scrollHeight - log.scrollTop;
        older.forEach((m) => this.storeMessage(room, m));
        if (this.openRoomId === room.id) {
          older.forEach((m) => this.placeMessage(room, m));
          this.decorate(room);
          log.scrollTop = log.scrollHeight - before; // keep what the reader was looking at
        }
      } catch (e) {
        console.warn(LOG + ' older messages: ' + e.code);
      } finally {
        room.loadingOlder = false;
        this.renderLogTop(room);
      }
    }

    oldestMessage(room) {
      let oldest = null;
      room.messages.forEach((m) => {
        if (!oldest || seqOf(m) < seqOf(oldest)) oldest = m;
      });
      return oldest;
    }

    renderLogTop(room) {
      const more = room.loaded && room.hasOlder;
      this.ui.older.hidden = !more;
      this.ui.older.textContent = room.loadingOlder ? 'Loading\u2026' : 'Load older messages';
      this.ui.older.setAttribute('aria-busy', room.loadingOlder ? 'true' : 'false');
      this.ui.start.hidden = !room.loaded || room.hasOlder;
    }

    onLogScroll() {
      if (this.ui.log.scrollTop < 120) this.loadOlder();
    }

    isAtBottom() {
      const log = this.ui.log;
      return log.scrollHeight - log.scrollTop - log.clientHeight < 80;
    }

    scrollToBottom() {
      const log = this.ui.log;
      log.scrollTop = log.scrollHeight;
    }

    isViewing(roomId) {
      return (
        this.openRoomId === roomId &&
        document.visibilityState === 'visible' &&
        this.host.getClientRects().length > 0 &&
        !this.failed
      );
    }

    // -- messages ---------------------------------------------------------------------------

    /** Keeps a server message; false when an equal or newer state was already known. */
    storeMessage(room, m) {
      const known = room.messages.get(m._id);
      if (known && (known.updatedAtMS || 0) >= (m.updatedAtMS || 0)) return false;
      if (m.isDeleted) {
        room.messages.delete(m._id);
        return true;
      }
      room.messages.set(m._id, m);
      if (m.clientMessageId) room.pending.delete(m.clientMessageId);
      if (seqOf(m) >= seqOf(room.lastMessage)) room.lastMessage = m;
      return true;
    }

    async onChatMessage(m) {
      if (!m || !m._id || !m.room) return;
      let room = this.rooms.get(m.room);
      if (!room) room = await this.fetchRoom(m.room);
      if (!room) return;
      const fresh = seqOf(m) > room.lastSeq;
      if (!this.storeMessage(room, m)) return;
      const sender = idOf(m.sender);
      if (fresh) {
        room.lastSeq = seqOf(m);
        if (sender !== this.me._id && !this.isViewing(room.id)) room.unread += 1;
      }
      if (fresh) room.spokeAt.set(sender, Date.now());
      this.stopTyping(room, sender);
      if (this.openRoomId === room.id) this.showMessage(room, m);
      this.renderRoomList(room);
      this.scheduleRead();
    }

    onUserDelete(data) {
      const room = this.rooms.get(data && data.room);
      if (!room) return;
      (data.messages || []).forEach((id) => {
        room.messages.delete(id);
        const item = this.msgEls.get(id);
        if (item && this.openRoomId === room.id) {
          item.remove();
          this.msgEls.delete(id);
        }
      });
      if (this.openRoomId === room.id) this.decorate(room);
    }

    /** Puts one message into the open room's list (new, changed or confirmed). */
    showMessage(room, m) {
      const stick = this.isAtBottom() || idOf(m.sender) === this.me._id;
      if (m.clientMessageId && this.msgEls.has(m.clientMessageId)) {
        this.msgEls.get(m.clientMessageId).remove();
        this.msgEls.delete(m.clientMessageId);
      }
      this.placeMessage(room, m);
      this.decorate(room);
      if (stick) this.scrollToBottom();
    }

    renderAllMessages(room) {
      this.ui.messages.textContent = '';
      this.msgEls.clear();
      const all = Array.from(room.messages.values()).concat(Array.from(room.pending.values()));
      all
        .sort((a, b) => this.orderKey(a) - this.orderKey(b))
        .forEach((m) => this.placeMessage(room, m));
      this.decorate(room);
      this.renderLogTop(room);
    }

    orderKey(m) {
      return m.pending ? Number.MAX_SAFE_INTEGER / 2 + m.localOrder : seqOf(m);
    }

    placeMessage(room, m) {
      const key = m.pending ? m.clientMessageId : m._id;
      const item = this.renderMessage(room, m);
      item.dataset.order = String(this.orderKey(m));
      const existing = this.msgEls.get(key);
      if (existing) {
        existing.replaceWith(item);
      } else {
        const order = this.orderKey(m);
        let next = null;
        for (
          let node = this.ui.messages.lastElementChild;
          node;
          node = node.previousElementSibling
        ) {
          if (Number(node.dataset.order) <= order) break;
          next = node;
        }
        this.ui.messages.insertBefore(item, next);
      }
      this.msgEls.set(key, item);
    }

    renderMessage(room, m) {
      const sender = idOf(m.sender);
      const mine = sender === this.me._id;
      const system = this.systemText(m, room);
      const item = el('li', {
        class: 'imk-msg',
        'data-id': m._id || m.clientMessageId,
        'data-sender': sender || '',
        'data-time': String(timeOf(m)),
      });
      item.appendChild(el('div', { class: 'imk-day', role: 'separator', hidden: true }));
      if (system) {
        item.classList.add('imk-system');
        item.appendChild(el('p', { class: 'imk-system-text', text: system }));
        return item;
      }
      item.classList.add(mine ? 'imk-out' : 'imk-in');
      const who = mine ? 'You' : (m.sender && m.sender.nickname) || room.memberName(sender);
      item.appendChild(el('div', { class: 'imk-sender', hidden: true, text: who }));
      const bubble = el(
        'div',
        { class: 'imk-bubble' },
        visuallyHidden(who + ': '),
        this.renderContent(m),
      );
      const meta = el(
        'div',
        { class: 'imk-meta' },
        m.editedAt ? el('span', { class: 'imk-edited', text: 'edited' }) : null,
        el('time', {
          datetime: new Date(timeOf(m) || Date.now()).toISOString(),
          text: this.dateFormat.format(new Date(timeOf(m) || Date.now())),
        }),
        mine ? el('span', { class: 'imk-tick' }) : null,
      );
      item.append(bubble, meta);
      if (mine) item.appendChild(el('div', { class: 'imk-status', hidden: true }));
      if (m.pending) item.classList.add('imk-pending');
      if (m.failed) item.appendChild(this.renderFailure(room, m));
      return item;
    }

    renderFailure(room, m) {
      return el(
        'div',
        { class: 'imk-failed', role: 'alert' },
        el('span', { text: 'Not sent' + (m.failed.code ? ' (' + m.failed.code + ')' : '') + '. ' }),
        el(
          'button',
          { type: 'button', class: 'imk-link-btn', onClick: () => this.resend(room, m) },
          'Retry',
        ),
        el(
          'button',
          { type: 'button', class: 'imk-link-btn', onClick: () => this.discard(room, m) },
          'Remove',
        ),
      );
    }

    renderContent(m) {
      if (m.isHidden)
        return el('p', { class: 'imk-text imk-muted', text: 'This message is hidden.' });
      switch (m.messageType) {
        case 'text':
          return this.renderText(
            typeof m.message === 'string' ? m.message : JSON.stringify(m.message),
          );
        case 'image':
          return this.renderImage(m);
        case 'file':
        case 'audio':
        case 'video':
          return this.renderFile(m);
        case 'recall':
          return el('p', { class: 'imk-text imk-muted', text: 'This message was recalled.' });
        default:
          return el('p', {
            class: 'imk-text imk-muted',
            text: this.summary(m, this.rooms.get(m.room) || new Room({ _id: m.room })),
          });
      }
    }

    renderText(text) {
      const p = el('p', { class: 'imk-text' });
      const pattern = /\bhttps?:\/\/[^\s<>"']+[^\s<>"'.,;:!?)\]]/gi;
      let last = 0;
      let match;
      while ((match = pattern.exec(text)) !== null) {
        if (match.index > last)
          p.appendChild(document.createTextNode(text.slice(last, match.index)));
        p.appendChild(
          el('a', { href: match[0], target: '_blank', rel: 'noopener noreferrer', text: match[0] }),
        );
        last = match.index + match[0].length;
      }
      if (last < text.length) p.appendChild(document.createTextNode(text.slice(last)));
      return p;
    }

    imageOf(m) {
      const first = Array.isArray(m.images) && m.images[0] ? m.images[0] : m;
      return {
        original: first.originalUrl || m.originalUrl,
        thumbnail: first.thumbnailUrl || m.thumbnailUrl || first.originalUrl || m.originalUrl,
        width: first.width || m.width,
        height: first.height || m.height,
      };
    }

    renderImage(m) {
      const image = this.imageOf(m);
      const img = el('img', {
        class: 'imk-image',
        alt: m.localName ? 'Image ' + m.localName : 'Image',
      });
      if (image.width && image.height) {
        img.width = image.width;
        img.height = image.height;
        img.style.aspectRatio = image.width + ' / ' + image.height;
      }
      if (m.localUrl) img.src = m.localUrl;
      else if (image.thumbnail) this.loadInto(img, image.thumbnail);
      const open = () => this.openViewer(image.original || image.thumbnail, m.localUrl);
      img.addEventListener('load', () => {
        if (this.isAtBottom()) this.scrollToBottom();
      });
      return el(
        'button',
        { type: 'button', class: 'imk-image-btn', 'aria-label': 'Open image', onClick: open },
        img,
      );
    }

    renderFile(m) {
      const url = m.originalUrl ? webUrl(m.originalUrl) : null;
      const extra = m.extra && typeof m.extra === 'object' ? m.extra : {};
      const name =
        extra.fileName || m.localName || (typeof m.message === 'string' && m.message) || 'File';
      const size = formatBytes(extra.bytes !== undefined ? extra.bytes : m.localSize);
      const link = el(
        'a',
        { class: 'imk-file', href: url || '#', download: name },
        icon('file'),
        el(
          'span',
          { class: 'imk-file-body' },
          el('span', { class: 'imk-file-name', text: name }),
          size ? el('span', { class: 'imk-file-size', text: size }) : null,
        ),
      );
      if (url && this.api.owns(url)) {
        link.addEventListener('click', (e) => {
          e.preventDefault();
          this.download(url, name);
        });
      } else if (url) {
        link.setAttribute('target', '_blank');
        link.setAttribute('rel', 'noopener noreferrer');
      }
      return link;
    }

    /** Files on this server need the user's credentials: fetched, then shown as blob URLs. */
    objectUrl(url) {
      if (!this.blobs.has(url)) {
        const promise = this.api.blob(url).then((blob) => URL.createObjectURL(blob));
        promise.catch(() => this.blobs.delete(url));
        this.blobs.set(url, promise);
      }
      return this.blobs.get(url);
    }

    loadInto(img, address) {
      const url = webUrl(address);
      if (!url) return;
      if (!this.api.owns(url)) {
        img.src = url;
        return;
      }
      this.objectUrl(url).then(
        (src) => {
          img.src = src;
        },
        () => {
          img.alt = 'Image unavailable';
          img.classList.add('imk-broken');
        },
      );
    }

    openViewer(url, localUrl) {
      const viewer = this.ui.viewer;
      this.ui.viewerImg.removeAttribute('src');
      if (localUrl) this.ui.viewerImg.src = localUrl;
      else if (url) this.loadInto(this.ui.viewerImg, url);
      if (!viewer.open) viewer.showModal();
    }

    async download(url, name) {
      try {
        const href = await this.objectUrl(url);
        const a = el('a', { href, download: name });
        a.click();
      } catch (e) {
        console.warn(LOG + ' download failed: ' + (e.code || e));
      }
    }

    /** Day separators, sender names, grouping and read receipts, from the order. */
    decorate(room) {
      let previous = null;
      const group = this.isGroup(room);
      Array.from(this.ui.messages.children).forEach((item) => {
        const time = Number(item.dataset.time) || Date.now();
        const newDay =
          !previous || dayKey(time) !== dayKey(Number(previous.dataset.time) || Date.now());
        const day = item.querySelector('.imk-day');
        day.hidden = !newDay;
        if (newDay) day.textContent = this.dayLabel(time);
        const continues =
          !newDay &&
          previous &&
          !previous.classList.contains('imk-system') &&
          previous.dataset.sender === item.dataset.sender &&
          time - Number(previous.dataset.time) < GROUP_GAP_MS;
        item.classList.toggle('imk-cont', Boolean(continues));
        const name = item.querySelector('.imk-sender');
        if (name) name.hidden = !(group && item.classList.contains('imk-in') && !continues);
        previous = item;
      });
      this.renderReceipts(room);
    }

    dayLabel(ms) {
      const today = new Date();
      if (dayKey(ms) === dayKey(today.getTime())) return 'Today';
      if (dayKey(ms) === dayKey(today.getTime() - 86400000)) return 'Yesterday';
      return this.dayFormat.format(new Date(ms));
    }

    /** Who read each own message: members whose last read message is at or after it. */
    renderReceipts(room) {
      if (this.openRoomId !== room.id) return;
      const others = room
        .members()
        .map(idOf)
        .filter((id) => id && id !== this.me._id);
      const readSeq = others.map((id) =>
        room.readBy.has(id) ? room.seqOfId(room.readBy.get(id)) : -1,
      );
      const own = Array.from(this.ui.messages.querySelectorAll('.imk-out'));
      own.forEach((item, index) => {
        const m = room.messages.get(item.dataset.id);
        const readers = m ? others.filter((id, i) => readSeq[i] >= seqOf(m)) : [];
        const tick = item.querySelector('.imk-tick');
        const state = !m ? 'pending' : readers.length ? 'read' : 'sent';
        const label = this.receiptLabel(room, state, readers, others.length);
        tick.textContent = '';
        tick.dataset.state = state;
        tick.setAttribute('role', 'img');
        tick.setAttribute('aria-label', label);
        tick.title = label;
        if (state !== 'pending') tick.appendChild(icon(state === 'read' ? 'checks' : 'check'));
        const status = item.querySelector('.imk-status');
        const lastOwn = index === own.length - 1;
        const pending = room.pending.get(item.dataset.id);
        status.hidden = !lastOwn || Boolean(pending && pending.failed);
        status.textContent = lastOwn ? label : '';
      });
    }

    receiptLabel(room, state, readers, total) {
      if (state === 'pending') return 'Sending\u2026';
      if (state === 'sent') return 'Sent';
      if (!this.isGroup(room)) return 'Read';
      const names = readers.map((id) => room.memberName(id)).join(', ');
      return readers.length === total
        ? 'Read by everyone'
        : 'Read by ' + readers.length + (names ? ' (' + names + ')' : '');
    }

    // -- read state -------------------------------------------------------------------------

    scheduleRead() {
      clearTimeout(this.readTimer);
      this.readTimer = setTimeout(() => this.markRead(), 250);
    }

    async markRead() {
      const room = this.rooms.get(this.openRoomId);
      if (!room || !room.loaded || !this.isViewing(room.id)) return;
      const newest = room.newest();
      const upToDate = seqOf(newest) <= room.markedSeq || idOf(newest.sender) === this.me._id;
      if (!newest || (room.unread === 0 && upToDate)) return;
      room.markedSeq = seqOf(newest);
      try {
        const result = await this.api.call(
          'PUT',
          '/rooms/' + encodeURIComponent(room.id) + '/lastRead',
          { json: { message: newest._id } },
        );
        // Marks can overlap and their answers come back in any order: the answer to an
        // older mark counts unread messages that a newer mark has read since.
        if (seqOf(newest) < room.markedSeq) return;
        room.unread = result && typeof result.badge === 'number' ? result.badge : 0;
        room.readBy.set(this.me._id, newest._id);
        this.renderRoomItem(room);
      } catch (e) {
        if (seqOf(newest) >= room.markedSeq) room.markedSeq = 0; // to be marked again
        if (FATAL.has(e.code)) this.fail(e);
      }
    }

    onLastRead(data) {
      const room = this.rooms.get(data && data.roomID);
      if (!room || !data.memberID || !data.messageID) return;
      room.readBy.set(data.memberID, data.messageID);
      if (data.memberID === this.me._id && room.seqOfId(data.messageID) >= room.lastSeq) {
        room.unread = 0; // read on another device of this user
        this.renderRoomItem(room);
      }
      this.renderReceipts(room);
    }

    onRoomEvent(data) {
      const id = idOf(data);
      if (!id) return;
      const members = Array.isArray(data.members) ? data.members.map(idOf) : null;
      if (members && members.indexOf(this.me._id) < 0) {
        this.removeRoom(id); // left or removed
        return;
      }
      const room = this.upsertRoom(data, false);
      this.renderRoomList(room);
      if (room && this.openRoomId === id) {
        this.renderHeader(room);
        this.renderReceipts(room);
      }
    }

    // -- typing -----------------------------------------------------------------------------

    onTyping(data) {
      const room = this.rooms.get(data && data.room);
      const sender = data && idOf(data.sender);
      if (!room || !sender || sender === this.me._id) return;
      // Typing and sending travel separately: a "typing" sent just before the message
      // may arrive just after it, and must not outlive it.
      if (Date.now() - (room.spokeAt.get(sender) || 0) < TYPING_AFTER_MESSAGE_MS) return;
      const known = room.typing.get(sender);
      if (known) clearTimeout(known.timer);
      const name = (data.senderInfo && data.senderInfo.nickname) || room.memberName(sender);
      const timer = setTimeout(() => this.stopTyping(room, sender), TYPING_SHOW_MS);
      room.typing.set(sender, { name, timer });
      this.renderTyping(room);
      this.renderRoomItem(room);
    }

    stopTyping(room, sender) {
      const known = room.typing.get(sender);
      if (!known) return;
      clearTimeout(known.timer);
      room.typing.delete(sender);
      this.renderTyping(room);
      this.renderRoomItem(room);
    }

    typingText(room) {
      const names = Array.from(room.typing.values()).map((t) => t.name);
      if (!names.length) return '';
      if (names.length === 1) return names[0] + ' is typing\u2026';
      if (names.length === 2) return names[0] + ' and ' + names[1] + ' are typing\u2026';
      return 'Several people are typing\u2026';
    }

    renderTyping(room) {
      if (this.openRoomId === room.id) this.ui.typing.textContent = this.typingText(room);
    }

    sendTyping() {
      const now = Date.now();
      if (
        !this.openRoomId ||
        !this.socket ||
        !this.socket.connected ||
        now - this.lastTypingSent < TYPING_SEND_MS
      )
        return;
      this.lastTypingSent = now;
      this.socket.emit('typing', this.openRoomId);
    }

    // -- composing and sending --------------------------------------------------------------

    onInputKey(event) {
      if (event.key === 'Enter' && !event.shiftKey && !event.isComposing) {
        event.preventDefault();
        this.ui.composer.requestSubmit();
      }
    }

    onInput() {
      this.resizeInput();
      if (this.ui.input.value.trim()) this.sendTyping();
    }

    resizeInput() {
      const input = this.ui.input;
      input.style.height = 'auto';
      input.style.height = Math.min(input.scrollHeight, 160) + 'px';
    }

    onSubmit(event) {
      event.preventDefault();
      const room = this.rooms.get(this.openRoomId);
      const text = this.ui.input.value.trim();
      if (!room || !text) return;
      this.ui.input.value = '';
      this.resizeInput();
      this.lastTypingSent = 0;
      this.post(room, this.addPending(room, { messageType: 'text', message: text }));
    }

    /** A message shown at once, before the server has it; `clientMessageId` makes a
     * retry of the same send idempotent. */
    addPending(room, fields) {
      this.localOrder = (this.localOrder || 0) + 1;
      const m = Object.assign(
        {
          clientMessageId: randomId(),
          room: room.id,
          sender: { _id: this.me._id, nickname: this.me.nickname },
          createdAtMS: Date.now(),
          pending: true,
          localOrder: this.localOrder,
        },
        fields,
      );
      room.pending.set(m.clientMessageId, m);
      if (this.openRoomId === room.id) this.showMessage(room, m);
      return m;
    }

    async post(room, m) {
      const body = { clientMessageId: m.clientMessageId };
      [
        'messageType',
        'message',
        'images',
        'originalUrl',
        'thumbnailUrl',
        'width',
        'height',
        'extra',
      ].forEach((key) => {
        if (m[key] !== undefined) body[key] = m[key];
      });
      try {
        const stored = await this.api.call(
          'POST',
          '/rooms/' + encodeURIComponent(room.id) + '/message',
          { json: body },
        );
        if (m.localUrl && stored.thumbnailUrl)
          this.blobs.set(stored.thumbnailUrl, Promise.resolve(m.localUrl));
        await this.onChatMessage(stored);
      } catch (e) {
        if (FATAL.has(e.code)) this.fail(e);
        this.markFailed(room, m, e);
      }
    }

    markFailed(room, m, error) {
      m.failed = { code: error.code, message: error.message };
      if (this.openRoomId === room.id && room.pending.has(m.clientMessageId))
        this.showMessage(room, m);
    }

    resend(room, m) {
      if (!room.pending.has(m.clientMessageId)) return;
      delete m.failed;
      if (this.openRoomId === room.id) this.showMessage(room, m);
      if (m.source && !m.uploaded) this.deliverFile(room, m);
      else this.post(room, m);
    }

    discard(room, m) {
      room.pending.delete(m.clientMessageId);
      const item = this.msgEls.get(m.clientMessageId);
      if (item) item.remove();
      this.msgEls.delete(m.clientMessageId);
      if (m.localUrl) URL.revokeObjectURL(m.localUrl);
      this.decorate(room);
      this.ui.input.focus();
    }

    onFilesChosen(event) {
      const files = Array.from(event.target.files || []);
      event.target.value = '';
      this.sendFiles(files);
    }

    onPaste(event) {
      const files = Array.from((event.clipboardData && event.clipboardData.files) || []);
      if (files.length) {
        event.preventDefault();
        this.sendFiles(files);
      }
    }

    onDrop(event) {
      event.preventDefault();
      this.sendFiles(Array.from((event.dataTransfer && event.dataTransfer.files) || []));
    }

    sendFiles(files) {
      const room = this.rooms.get(this.openRoomId);
      if (!room) return;
      files.forEach((file) => {
        const isImage = /^image\//.test(file.type);
        const m = this.addPending(room, {
          messageType: isImage ? 'image' : 'file',
          source: file,
          localName: file.name,
          localSize: file.size,
          localUrl: isImage ? URL.createObjectURL(file) : undefined,
        });
        this.deliverFile(room, m);
      });
    }

    /** Upload to POST /files/{bucket}, then send an image or file message with its URLs. */
    async deliverFile(room, m) {
      if (!m.uploaded) {
        try {
          const form = new FormData();
          form.append('extra', JSON.stringify({ roomId: room.id }));
          form.append('file', m.source, m.source.name);
          const uploaded = await this.api.call('POST', '/files/' + UPLOAD_BUCKET, { form });
          Object.assign(m, this.fileMessage(uploaded, m.source));
          m.uploaded = true;
        } catch (e) {
          if (FATAL.has(e.code)) this.fail(e);
          this.markFailed(room, m, e);
          return;
        }
      }
      await this.post(room, m);
    }

    fileMessage(uploaded, file) {
      const url = uploaded.originalUrl || uploaded.url;
      if (uploaded.width && uploaded.height) {
        const image = {
          originalUrl: url,
          thumbnailUrl: uploaded.thumbnailUrl || url,
          width: uploaded.width,
          height: uploaded.height,
        };
        return Object.assign({ messageType: 'image', images: [image] }, image);
      }
      const name = uploaded.filename || file.name;
      const dot = name.lastIndexOf('.');
      return {
        messageType: 'file',
        message: name,
        originalUrl: url,
        extra: {
          fileName: name,
          fileExtension: dot > 0 ? name.slice(dot + 1).toLowerCase() : '',
          mimeType: uploaded.mimetype || file.type || 'application/octet-stream',
          bytes: uploaded.length || file.size,
        },
      };
    }
  }

  // ---------------------------------------------------------------------------------------
  // Public API

  /**
   * Mounts a chat UI. Options: domain (the Parley server; default: where this script came
   * from), clientKey, token, container (element or selector; default: the whole page),
   * locale, onReady(chat), onError(error). Returns { ready, destroy, openRoom, socket };
   * `ready` rejects with an Error carrying `code` (MISSING_CLIENT_KEY, INVALID_CLIENT_KEY,
   * CLIENT_KEY_MISMATCH, INVALID_TOKEN, …) and `message`.
   */
  function init(config) {
    const chat = new Chat(Object.assign({}, config || {}));
    chat.publicApi = {
      ready: chat.ready,
      destroy: () => chat.destroy(),
      openRoom: (roomId) => chat.openRoom(roomId),
      get socket() {
        return chat.socket;
      },
      get user() {
        return chat.me;
      },
    };
    chat.start();
    return chat.publicApi;
  }

  window.IMKitUI = Object.freeze({ init, version: VERSION });
})();
