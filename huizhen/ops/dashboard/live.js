// "Something changed": the subscription messageProcessed over graphql-transport-ws, and a slow poll in
// any case (a safety net while the socket is down).
// Callers only see onChange(callback); switching transports never touches them.
import { session } from "./api.js";

const POLL_MS = Number(new URLSearchParams(location.search).get("poll") || 5000);

export function onChange(callback, { subscription = "subscription { messageProcessed { id } }" } = {}) {
  let timer = null;
  let pending = false;
  const fire = () => {  // coalesce bursts: one refresh at a time
    if (pending) return;
    pending = true;
    setTimeout(async () => { try { await callback(); } finally { pending = false; } }, 200);
  };
  const mode = { value: "polling" };
  timer = setInterval(fire, POLL_MS);
  const socket = subscribe(subscription, fire, () => { mode.value = "live"; }, () => { mode.value = "polling"; });
  return {
    mode,
    stop() { clearInterval(timer); socket?.close(); },
  };
}

function subscribe(query, onNext, onLive, onDown) {
  let ws;
  try {
    const url = new URL("/graphql", location.href);
    url.searchParams.set("token", session.token);  // browsers cannot set headers on a WebSocket
    url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
    ws = new WebSocket(url, "graphql-transport-ws");
  } catch {
    return null;
  }
  ws.onopen = () => ws.send(JSON.stringify({ type: "connection_init", payload: { Authorization: `Bearer ${session.token}` } }));
  ws.onmessage = (event) => {
    const msg = JSON.parse(event.data);
    if (msg.type === "connection_ack") {
      ws.send(JSON.stringify({ id: "1", type: "subscribe", payload: { query } }));
      onLive();  // subscribed: changes now arrive as they happen
    }
    else if (msg.type === "next" && !msg.payload?.errors) { onLive(); onNext(); }
    else if (msg.type === "error") { onDown(); ws.close(); }  // no such subscription yet: keep polling
    else if (msg.type === "ping") ws.send(JSON.stringify({ type: "pong" }));
  };
  ws.onerror = onDown;
  ws.onclose = onDown;
  return ws;
}
