/*
 * The live board (/live/): signs in through the REST API, takes a single-use ticket for every
 * WebSocket connection, subscribes to one board channel and renders what the server streams
 * (DESIGN.md §5).
 *
 * Every string that comes from the server or a user goes into the page as text
 * (textContent, setAttribute on elements made here), never as HTML.
 */
(() => {
  "use strict";

  const API = "/api/v1/";
  const WS_PATH = "/ws/leaderboard";
  const SESSION_KEY = "scoreboard.live.session";
  const VIEW_KEY = "scoreboard.live.view";

  const PING_INTERVAL_MS = 25000;
  const BACKOFF_FIRST_MS = 1000;
  const BACKOFF_MAX_MS = 30000;
  // A connection that stayed up this long was healthy: the next outage starts from 1 s again.
  const HEALTHY_AFTER_MS = 10000;
  const MOVEMENT_SHOWN_MS = 5000;
  const BANNER_SHOWN_MS = 8000;
  const NOTICE_SHOWN_MS = 8000;
  // The server could not read the board for a subscribe: ask again after this long.
  const RESUBSCRIBE_AFTER_OUTAGE_MS = 5000;
  const BOARD_SIZE = 10;

  const CLOSE_UNAUTHORIZED = 4401;
  const CLOSE_FLOODING = 4429;
  const CLOSE_TOO_SLOW = 4408;
  const CLOSE_NO_PONG = 4000;

  const PERIOD_CHANNELS = {
    all: "leaderboard.top10",
    daily: "leaderboard.daily.top10",
    weekly: "leaderboard.weekly.top10",
    monthly: "leaderboard.monthly.top10",
  };
  const COUNTRY_CODE = /^[A-Z]{2}$/;

  const byTestId = (id) => document.querySelector(`[data-testid="${id}"]`);
  const ui = {
    status: byTestId("status"),
    signIn: byTestId("sign-in"),
    form: byTestId("sign-in-form"),
    username: byTestId("sign-in-username"),
    password: byTestId("sign-in-password"),
    submit: byTestId("sign-in-submit"),
    signInError: byTestId("sign-in-error"),
    live: byTestId("live"),
    signedInUser: byTestId("signed-in-user"),
    signOut: byTestId("sign-out"),
    pickers: byTestId("pickers"),
    period: byTestId("period-picker"),
    country: byTestId("country-picker"),
    countryHint: byTestId("country-hint"),
    banner: byTestId("leader-banner"),
    notice: byTestId("notice"),
    title: byTestId("board-title"),
    board: byTestId("board"),
    empty: byTestId("board-empty"),
    updated: byTestId("updated-at"),
  };

  const numberFormat = new Intl.NumberFormat();

  class SignInRequired extends Error {}

  // ---- state ---------------------------------------------------------------------------------

  let session = loadSession(); // {accessToken, refreshToken, user: {id, username}} or null
  let channel = PERIOD_CHANNELS.all; // the one channel shown; set from the pickers at start

  let socket = null;
  let generation = 0; // bumped by every connect and sign-out; older callbacks see they are stale
  let attempt = 0; // consecutive failed connections, for the backoff
  let pongPending = false;
  const timers = {
    reconnect: 0,
    countdown: 0,
    ping: 0,
    healthy: 0,
    resubscribe: 0,
    banner: 0,
    notice: 0,
  };

  const seqs = new Map(); // channel -> last applied seq
  const awaitingSnapshot = new Set(); // channels subscribed (again) whose snapshot has not come
  const movements = new Map(); // userId -> {kind, places, timer}
  let refreshing = null;

  // ---- storage -------------------------------------------------------------------------------

  function loadSession() {
    try {
      const stored = JSON.parse(sessionStorage.getItem(SESSION_KEY) || "null");
      if (
        stored &&
        typeof stored.accessToken === "string" &&
        typeof stored.refreshToken === "string" &&
        stored.user &&
        typeof stored.user.username === "string"
      ) {
        return stored;
      }
    } catch (error) {
      // Unreadable storage: start signed out.
    }
    return null;
  }

  function saveSession(tokens) {
    // The score-signing key in the token response is not needed here and is not kept.
    session = {
      accessToken: String(tokens.accessToken),
      refreshToken: String(tokens.refreshToken),
      user: {
        id: String(tokens.user && tokens.user.id),
        username: String(tokens.user && tokens.user.username),
      },
    };
    sessionStorage.setItem(SESSION_KEY, JSON.stringify(session));
  }

  function loadView() {
    try {
      const stored = JSON.parse(sessionStorage.getItem(VIEW_KEY) || "null");
      if (stored && typeof stored === "object") {
        return {
          period: Object.hasOwn(PERIOD_CHANNELS, stored.period) ? stored.period : "all",
          country: COUNTRY_CODE.test(stored.country) ? stored.country : "",
        };
      }
    } catch (error) {
      // Fall through to the default view.
    }
    return { period: "all", country: "" };
  }

  function channelFor(view) {
    return view.country
      ? `leaderboard.country.${view.country}.top10`
      : PERIOD_CHANNELS[view.period];
  }

  // ---- HTTP ----------------------------------------------------------------------------------

  async function post(path, { body, token } = {}) {
    const headers = { Accept: "application/json" };
    const init = { method: "POST", headers, credentials: "omit", cache: "no-store" };
    if (token) headers.Authorization = `Bearer ${token}`;
    if (body !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    const response = await fetch(API + path, init);
    let payload = null;
    try {
      payload = await response.json();
    } catch (error) {
      payload = null;
    }
    const envelope = payload && typeof payload === "object" ? payload : {};
    return {
      status: response.status,
      ok: response.ok && envelope.success === true && !!envelope.data,
      data: envelope.data,
      error: envelope.error && typeof envelope.error === "object" ? envelope.error : {},
    };
  }

  /* A new token pair from the refresh token. Resolves true when refreshed, false when the
   * refresh token is no good any more (sign in again); rejects on a transient failure. One
   * refresh at a time: refresh tokens are single use. */
  function refreshTokens() {
    if (!refreshing) {
      const current = session;
      refreshing = (async () => {
        if (!current) return false;
        const reply = await post("auth/token/refresh", {
          body: { refreshToken: current.refreshToken },
        });
        if (session !== current) return session !== null; // signed out or in meanwhile
        if (reply.ok) {
          saveSession(reply.data);
          return true;
        }
        if ([400, 401, 403].includes(reply.status)) return false;
        throw new Error(`token refresh answered ${reply.status}`);
      })().finally(() => {
        refreshing = null;
      });
    }
    return refreshing;
  }

  async function fetchTicket() {
    let reply = await post("realtime/ticket", { token: session.accessToken });
    if (reply.status === 401) {
      if (!(await refreshTokens())) throw new SignInRequired();
      reply = await post("realtime/ticket", { token: session.accessToken });
      if (reply.status === 401) throw new SignInRequired();
    }
    if (!reply.ok || typeof reply.data.ticket !== "string") {
      throw new Error(`ticket request answered ${reply.status}`);
    }
    return reply.data.ticket;
  }

  // ---- connection ----------------------------------------------------------------------------

  function clearConnectionTimers() {
    for (const name of ["reconnect", "countdown", "ping", "healthy", "resubscribe"]) {
      clearTimeout(timers[name]);
      clearInterval(timers[name]);
      timers[name] = 0;
    }
  }

  function dropSocket(code, reason) {
    const old = socket;
    socket = null;
    seqs.clear();
    awaitingSnapshot.clear();
    if (old && old.readyState <= WebSocket.OPEN) old.close(code, reason);
  }

  async function connect() {
    const current = ++generation;
    clearConnectionTimers();
    dropSocket(1000, "reconnecting");
    if (!session) return;
    setStatus("connecting", attempt ? "Reconnecting…" : "Connecting…");

    let ticket;
    try {
      ticket = await fetchTicket();
    } catch (error) {
      if (current !== generation) return;
      if (error instanceof SignInRequired) {
        signOut("Your session has expired. Please sign in again.");
      } else {
        scheduleReconnect();
      }
      return;
    }
    if (current !== generation) return;

    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    let ws;
    try {
      ws = new WebSocket(`${scheme}//${location.host}${WS_PATH}?ticket=${encodeURIComponent(ticket)}`);
    } catch (error) {
      scheduleReconnect();
      return;
    }
    socket = ws;
    ws.addEventListener("open", () => ws === socket && onOpen());
    ws.addEventListener("message", (event) => ws === socket && onMessage(event.data));
    ws.addEventListener("close", (event) => ws === socket && onClose(event));
    // An "error" event is always followed by "close", which handles it.
  }

  function onOpen() {
    setStatus("live", "Live");
    subscribe(channel);
    pongPending = false;
    timers.ping = setInterval(heartbeat, PING_INTERVAL_MS);
    timers.healthy = setTimeout(() => {
      attempt = 0;
    }, HEALTHY_AFTER_MS);
  }

  function heartbeat() {
    if (pongPending) {
      // No pong for a whole interval: the connection is dead even if the socket does not know.
      clearConnectionTimers();
      dropSocket(CLOSE_NO_PONG, "no pong");
      scheduleReconnect();
      return;
    }
    pongPending = true;
    send("ping", {});
  }

  function onClose(event) {
    socket = null;
    seqs.clear();
    awaitingSnapshot.clear();
    clearConnectionTimers();
    if (event.code === CLOSE_UNAUTHORIZED) {
      renewAfterUnauthorized();
      return;
    }
    if (event.code === CLOSE_FLOODING) {
      showNotice("The server closed the connection: too many messages.");
    } else if (event.code === CLOSE_TOO_SLOW) {
      showNotice("The connection could not keep up with the updates.");
    }
    scheduleReconnect();
  }

  /* 4401: the ticket or the access token behind it is no good. Refresh the access token and
   * connect again, or ask to sign in when the refresh token is no good either. */
  async function renewAfterUnauthorized() {
    const current = generation;
    let refreshed;
    try {
      refreshed = await refreshTokens();
    } catch (error) {
      if (current === generation) scheduleReconnect();
      return;
    }
    if (current !== generation) return;
    if (refreshed) {
      scheduleReconnect();
    } else {
      signOut("Your session has expired. Please sign in again.");
    }
  }

  /* Exponential backoff with jitter: the ceiling doubles from 1 s to 30 s, and the wait is
   * drawn between half the ceiling and the ceiling, so clients that lost the same server do
   * not all come back at the same instant. */
  function scheduleReconnect() {
    clearConnectionTimers();
    const ceiling = Math.min(BACKOFF_MAX_MS, BACKOFF_FIRST_MS * 2 ** attempt);
    const delay = Math.round(ceiling / 2 + (Math.random() * ceiling) / 2);
    attempt = Math.min(attempt + 1, 10);
    const due = Date.now() + delay;
    const countdown = () => {
      const seconds = Math.max(1, Math.ceil((due - Date.now()) / 1000));
      setStatus("reconnecting", `Reconnecting in ${seconds} s`);
    };
    countdown();
    timers.countdown = setInterval(countdown, 250);
    timers.reconnect = setTimeout(connect, delay);
  }

  function send(event, data) {
    if (socket && socket.readyState === WebSocket.OPEN) {
      socket.send(JSON.stringify({ event, data }));
      return true;
    }
    return false;
  }

  function subscribe(name) {
    seqs.delete(name);
    awaitingSnapshot.add(name);
    send("subscribe", { channel: name });
  }

  function unsubscribe(name) {
    seqs.delete(name);
    awaitingSnapshot.delete(name);
    send("unsubscribe", { channel: name });
  }

  // ---- server events -------------------------------------------------------------------------

  function onMessage(raw) {
    let message;
    try {
      message = JSON.parse(raw);
    } catch (error) {
      return;
    }
    if (!message || typeof message !== "object" || typeof message.event !== "string") return;
    const data = message.data && typeof message.data === "object" ? message.data : {};
    switch (message.event) {
      case "leaderboard.update":
        onUpdate(data);
        break;
      case "leaderboard.rank_change":
        if (data.channel === channel) onRankChange(data);
        break;
      case "leaderboard.new_leader":
        if (data.channel === channel) onNewLeader(data);
        break;
      case "pong":
        pongPending = false;
        break;
      case "error":
        onError(data);
        break;
      default:
        break; // "unsubscribed" and events this page does not know need nothing
    }
  }

  function onUpdate(data) {
    const name = data.channel;
    if (name !== channel || !Number.isInteger(data.seq) || !Array.isArray(data.leaderboard)) {
      return;
    }
    if (data.snapshot === true) {
      awaitingSnapshot.delete(name);
      seqs.set(name, data.seq);
      renderBoard(data.leaderboard, data.timestamp);
      return;
    }
    if (awaitingSnapshot.has(name) || !seqs.has(name)) return; // the snapshot will say it all
    if (data.seq !== seqs.get(name) + 1) {
      // Missed an update, or the server's sequence restarted: ask for a fresh snapshot.
      subscribe(name);
      return;
    }
    seqs.set(name, data.seq);
    renderBoard(data.leaderboard, data.timestamp);
  }

  function onError(data) {
    showNotice(typeof data.message === "string" ? data.message : "The server sent an error.");
    const outage = data.code === "DATABASE_ERROR" || data.code === "REDIS_ERROR";
    if (outage && awaitingSnapshot.has(channel) && !timers.resubscribe) {
      timers.resubscribe = setTimeout(() => {
        timers.resubscribe = 0;
        if (awaitingSnapshot.has(channel)) subscribe(channel);
      }, RESUBSCRIBE_AFTER_OUTAGE_MS);
    }
  }

  function onRankChange(data) {
    if (data.userId === undefined || data.userId === null) return;
    const userId = String(data.userId);
    const newRank = Number(data.newRank);
    if (!Number.isInteger(newRank)) return;
    let movement;
    if (data.oldRank === null || data.oldRank === undefined) {
      movement = { kind: "new", places: 0 };
    } else {
      const oldRank = Number(data.oldRank);
      if (!Number.isInteger(oldRank) || oldRank === newRank) return;
      movement = oldRank > newRank
        ? { kind: "up", places: oldRank - newRank }
        : { kind: "down", places: newRank - oldRank };
    }
    const previous = movements.get(userId);
    if (previous) clearTimeout(previous.timer);
    movement.timer = setTimeout(() => {
      if (movements.get(userId) === movement) {
        movements.delete(userId);
        applyMovement(rowOf(userId), null);
      }
    }, MOVEMENT_SHOWN_MS);
    movements.set(userId, movement);
    applyMovement(rowOf(userId), movement);
  }

  function onNewLeader(data) {
    const score = Number.isFinite(data.score) ? numberFormat.format(data.score) : "";
    let text = `${String(data.username ?? "")} took the lead with ${score} points`;
    const previous = data.previousLeader;
    if (previous && typeof previous === "object" && previous.username !== undefined) {
      text += `, ahead of ${String(previous.username)}`;
    }
    ui.banner.textContent = `${text}.`;
    ui.banner.hidden = false;
    clearTimeout(timers.banner);
    timers.banner = setTimeout(() => {
      ui.banner.hidden = true;
    }, BANNER_SHOWN_MS);
  }

  // ---- rendering -----------------------------------------------------------------------------

  function setStatus(state, text) {
    ui.status.dataset.state = state;
    ui.status.textContent = text;
  }

  function showNotice(text) {
    ui.notice.textContent = text;
    ui.notice.hidden = false;
    clearTimeout(timers.notice);
    timers.notice = setTimeout(() => {
      ui.notice.hidden = true;
    }, NOTICE_SHOWN_MS);
  }

  function cell(testId, text, className) {
    const td = document.createElement("td");
    td.dataset.testid = testId;
    if (className) td.className = className;
    td.textContent = text;
    return td;
  }

  function avatarFor(url) {
    if (typeof url !== "string" || url === "") return null;
    let parsed;
    try {
      parsed = new URL(url);
    } catch (error) {
      return null;
    }
    if (parsed.protocol !== "https:") return null; // no javascript:, data: or plain http
    const image = document.createElement("img");
    image.className = "avatar";
    image.setAttribute("src", parsed.href);
    image.setAttribute("alt", "");
    image.setAttribute("width", "24");
    image.setAttribute("height", "24");
    image.setAttribute("loading", "lazy");
    image.setAttribute("referrerpolicy", "no-referrer");
    return image;
  }

  function rowFor(entry) {
    const row = document.createElement("tr");
    const userId = String(entry.userId);
    row.dataset.testid = "board-row";
    row.dataset.userId = userId;
    if (session && session.user.id === userId) row.classList.add("me");

    row.append(cell("rank", String(entry.rank ?? ""), "rank"));

    const player = document.createElement("td");
    player.dataset.testid = "player";
    player.className = "player";
    const who = document.createElement("span");
    who.className = "who";
    const avatar = avatarFor(entry.avatar);
    if (avatar) who.append(avatar);
    const name = document.createElement("span");
    name.dataset.testid = "player-name";
    name.className = "name";
    name.textContent = String(entry.username ?? "");
    who.append(name);
    player.append(who);
    row.append(player);

    row.append(cell("country", typeof entry.country === "string" ? entry.country : "", "country"));
    const score = Number.isFinite(entry.score) ? numberFormat.format(entry.score) : "";
    row.append(cell("score", score, "numeric"));
    row.append(cell("movement", "", "movement"));
    applyMovement(row, movements.get(userId) || null);
    return row;
  }

  function rowOf(userId) {
    for (const row of ui.board.children) {
      if (row.dataset.userId === userId) return row;
    }
    return null;
  }

  function applyMovement(row, movement) {
    if (!row) return;
    row.classList.remove("moved-up", "moved-down", "entered");
    const target = row.querySelector('[data-testid="movement"]');
    if (!movement) {
      target.textContent = "";
      target.removeAttribute("title");
      return;
    }
    const places = movement.places === 1 ? "place" : "places";
    if (movement.kind === "new") {
      row.classList.add("entered");
      target.textContent = "new";
      target.setAttribute("title", "New on this board");
    } else if (movement.kind === "up") {
      row.classList.add("moved-up");
      target.textContent = `↑${movement.places}`;
      target.setAttribute("title", `Up ${movement.places} ${places}`);
    } else {
      row.classList.add("moved-down");
      target.textContent = `↓${movement.places}`;
      target.setAttribute("title", `Down ${movement.places} ${places}`);
    }
  }

  function renderBoard(entries, timestamp) {
    const rows = entries
      .filter((entry) => entry && typeof entry === "object")
      .slice(0, BOARD_SIZE)
      .map(rowFor);
    ui.board.replaceChildren(...rows);
    ui.board.dataset.channel = channel;
    ui.empty.hidden = rows.length > 0;
    const moment = typeof timestamp === "string" ? new Date(timestamp) : null;
    ui.updated.textContent =
      moment && !Number.isNaN(moment.getTime()) ? `Updated ${moment.toLocaleTimeString()}` : "";
  }

  function clearBoard() {
    ui.board.replaceChildren();
    delete ui.board.dataset.channel;
    ui.empty.hidden = true;
    ui.updated.textContent = "";
    ui.banner.hidden = true;
    for (const movement of movements.values()) clearTimeout(movement.timer);
    movements.clear();
  }

  function showView() {
    const view = loadView();
    ui.period.value = view.period;
    ui.country.value = view.country; // a code the picker does not offer selects nothing
    if (ui.country.value !== view.country) ui.country.value = "";
    updatePickers();
    channel = channelFor({ period: ui.period.value, country: ui.country.value });
  }

  function updatePickers() {
    const country = ui.country.value;
    ui.period.disabled = country !== "";
    ui.countryHint.hidden = country === "";
    const where = country
      ? `${ui.country.selectedOptions[0].textContent}, all time`
      : ui.period.selectedOptions[0].textContent;
    ui.title.textContent = `Top ${BOARD_SIZE}: ${where}`;
  }

  function onPickerChange() {
    const view = {
      period: Object.hasOwn(PERIOD_CHANNELS, ui.period.value) ? ui.period.value : "all",
      country: COUNTRY_CODE.test(ui.country.value) ? ui.country.value : "",
    };
    sessionStorage.setItem(VIEW_KEY, JSON.stringify(view));
    updatePickers();
    const next = channelFor(view);
    if (next === channel) return;
    const previous = channel;
    channel = next;
    clearBoard();
    if (socket && socket.readyState === WebSocket.OPEN) {
      unsubscribe(previous);
      subscribe(next);
    }
  }

  // ---- signing in and out --------------------------------------------------------------------

  function showSignedIn() {
    ui.signIn.hidden = true;
    ui.live.hidden = false;
    ui.signedInUser.textContent = session.user.username;
  }

  function signOut(reason) {
    generation += 1;
    clearConnectionTimers();
    dropSocket(1000, "signed out");
    session = null;
    attempt = 0;
    sessionStorage.removeItem(SESSION_KEY);
    clearBoard();
    ui.notice.hidden = true;
    ui.live.hidden = true;
    ui.signIn.hidden = false;
    ui.signInError.textContent = reason || "";
    ui.signInError.hidden = !reason;
    setStatus("signed-out", "Signed out");
  }

  async function onSignIn(event) {
    event.preventDefault();
    ui.submit.disabled = true;
    ui.signInError.hidden = true;
    let message = "";
    try {
      const reply = await post("auth/token", {
        body: { username: ui.username.value.trim(), password: ui.password.value },
      });
      if (reply.ok) {
        saveSession(reply.data);
        ui.password.value = "";
        attempt = 0;
        showSignedIn();
        connect();
        return;
      }
      if (reply.status === 401) {
        message = "Wrong username or password.";
      } else if (reply.status === 429) {
        message = "Too many attempts. Try again in a minute.";
      } else {
        message = typeof reply.error.message === "string" ? reply.error.message : "Sign-in failed.";
      }
    } catch (error) {
      message = "The server cannot be reached.";
    } finally {
      ui.submit.disabled = false;
    }
    ui.signInError.textContent = message;
    ui.signInError.hidden = false;
  }

  // ---- start ---------------------------------------------------------------------------------

  ui.form.addEventListener("submit", onSignIn);
  ui.signOut.addEventListener("click", () => signOut(""));
  ui.period.addEventListener("change", onPickerChange);
  ui.country.addEventListener("change", onPickerChange);
  ui.pickers.addEventListener("submit", (event) => event.preventDefault());
  window.addEventListener("online", () => {
    if (session && timers.reconnect) connect(); // the network is back: no need to wait
  });

  showView();
  if (session) {
    showSignedIn();
    connect();
  } else {
    setStatus("signed-out", "Signed out");
  }
})();
