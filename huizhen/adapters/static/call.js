// Huizhen call page: joins the consultation's room on /signaling and calls every peer there.
// The token comes from the URL fragment (#token=…), which browsers never send to the server.
"use strict";
(() => {
  const room = decodeURIComponent(location.pathname.split("/").filter(Boolean)[1] || "");
  const token = new URLSearchParams(location.hash.slice(1)).get("token") || "";
  const state = { status: "starting", peerId: null, peers: {}, framesReceived: 0, messages: [], errors: [], bitrate: null };
  window.huizhenCall = state;
  const $ = (id) => document.getElementById(id);
  const setStatus = (s) => { state.status = s; $("status").textContent = s; };
  const log = (line) => { $("log").textContent += line + "\n"; };
  $("room").textContent = room;

  let ws, local, iceServers = [];
  const pcs = new Map();  // peer id -> {pc, channel, pending candidates}
  const send = (msg) => ws && ws.readyState === WebSocket.OPEN && ws.send(JSON.stringify(msg));

  function countFrames(video) {
    const tick = () => { state.framesReceived += 1; video.requestVideoFrameCallback(tick); };
    if (video.requestVideoFrameCallback) video.requestVideoFrameCallback(tick);
  }

  function channel(id, dc) {
    pcs.get(id).channel = dc;
    dc.onopen = () => dc.send("你好 from " + (state.peerId || "browser"));
    dc.onmessage = (e) => {
      state.messages.push({ from: id, text: String(e.data) });
      const p = document.createElement("p"); p.textContent = id + ": " + e.data; $("messages").appendChild(p);
    };
  }

  function connection(id) {
    if (pcs.has(id)) return pcs.get(id).pc;
    const pc = new RTCPeerConnection({ iceServers });
    pcs.set(id, { pc, channel: null, pending: [] });
    local.getTracks().forEach((t) => pc.addTrack(t, local));
    pc.onicecandidate = (e) => send({ type: "candidate", to: id, candidate: e.candidate ? e.candidate.toJSON() : null });
    pc.ontrack = (e) => {
      if (e.track.kind !== "video") return;
      let v = document.getElementById("v-" + id);
      if (!v) {
        v = document.createElement("video"); v.id = "v-" + id; v.autoplay = true; v.playsInline = true; v.muted = true;
        $("videos").appendChild(v); countFrames(v);
      }
      v.srcObject = e.streams[0] || new MediaStream([e.track]);
    };
    pc.ondatachannel = (e) => channel(id, e.channel);
    pc.onconnectionstatechange = () => {
      state.peers[id] = pc.connectionState;
      if (pc.connectionState === "connected") setStatus("connected");
    };
    return pc;
  }

  async function call(id) {
    const pc = connection(id);
    channel(id, pc.createDataChannel("chat"));
    await pc.setLocalDescription(await pc.createOffer());
    send({ type: "offer", to: id, sdp: pc.localDescription.sdp });
  }

  async function flush(id) {
    const entry = pcs.get(id);
    for (const c of entry.pending.splice(0)) await entry.pc.addIceCandidate(c);
  }

  function hangup(id) {
    const entry = pcs.get(id);
    if (!entry) return;
    entry.pc.close(); pcs.delete(id); delete state.peers[id];
    const v = document.getElementById("v-" + id); if (v) v.remove();
  }

  async function reportStats() {
    for (const { pc } of pcs.values()) {
      let sent = 0, lost = 0, got = 0, rtt = 0;
      (await pc.getStats()).forEach((s) => {
        if (s.type === "outbound-rtp" && s.kind === "video") sent += s.bytesSent || 0;
        if (s.type === "remote-inbound-rtp" && s.kind === "video") { lost += s.packetsLost || 0; rtt = (s.roundTripTime || 0) * 1000; }
        if (s.type === "outbound-rtp" && s.kind === "video") got += s.packetsSent || 0;
      });
      const prev = pc.__prev || { sent, t: performance.now() };
      const kbps = ((sent - prev.sent) * 8) / Math.max(1, performance.now() - prev.t);
      pc.__prev = { sent, t: performance.now() };
      send({ type: "stats", bitrateKbps: Math.max(0, kbps), lossPct: got ? (100 * lost) / (got + lost) : 0, rttMs: rtt });
    }
  }

  async function applyBitrate(msg) {
    state.bitrate = msg;
    $("bitrate").textContent = `${msg.width}×${msg.height}@${msg.fps} ${msg.bitrateKbps} kbps`;
    for (const { pc } of pcs.values()) {
      for (const sender of pc.getSenders()) {
        if (!sender.track || sender.track.kind !== "video") continue;
        const params = sender.getParameters();
        if (!params.encodings || !params.encodings.length) continue;
        const height = sender.track.getSettings().height || msg.height;
        params.encodings[0].maxBitrate = msg.bitrateKbps * 1000;
        params.encodings[0].maxFramerate = msg.fps;
        params.encodings[0].scaleResolutionDownBy = Math.max(1, height / msg.height);
        await sender.setParameters(params).catch((e) => log("setParameters: " + e));
      }
    }
  }

  async function onMessage(msg) {
    switch (msg.type) {
      case "joined":
        state.peerId = msg.peer; iceServers = msg.iceServers || [];
        setStatus(msg.peers.length ? "calling" : "waiting");
        for (const p of msg.peers) await call(p.id);
        break;
      case "peer-joined": log("joined: " + msg.peer.id); break;
      case "peer-left": log("left: " + msg.peer); hangup(msg.peer); break;
      case "offer": {
        const pc = connection(msg.from);
        await pc.setRemoteDescription({ type: "offer", sdp: msg.sdp });
        await pc.setLocalDescription(await pc.createAnswer());
        send({ type: "answer", to: msg.from, sdp: pc.localDescription.sdp });
        await flush(msg.from);
        break;
      }
      case "answer":
        await connection(msg.from).setRemoteDescription({ type: "answer", sdp: msg.sdp });
        await flush(msg.from);
        break;
      case "candidate": {
        const entry = pcs.get(msg.from);
        if (!entry || !msg.candidate) break;
        if (entry.pc.remoteDescription) await entry.pc.addIceCandidate(msg.candidate);
        else entry.pending.push(msg.candidate);
        break;
      }
      case "bitrate": await applyBitrate(msg); break;
      case "room-closed": setStatus("closed"); [...pcs.keys()].forEach(hangup); break;
      case "error": state.errors.push(msg); log(`error ${msg.code}: ${msg.message}`); break;
    }
  }

  async function start() {
    if (!room || !token) { setStatus("missing room or #token="); return; }
    local = await navigator.mediaDevices.getUserMedia({ video: { width: 640, height: 480 }, audio: true });
    $("local").srcObject = local;
    ws = new WebSocket((location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/signaling");
    ws.onopen = () => { send({ type: "auth", token }); send({ type: "join", room }); };
    ws.onmessage = (e) => onMessage(JSON.parse(e.data)).catch((err) => log("error: " + err));
    ws.onclose = (e) => { if (state.status !== "closed") setStatus("disconnected " + e.code); };
    setInterval(reportStats, 2000);
  }

  $("send").onclick = () => {
    const text = $("chat").value; $("chat").value = "";
    for (const { channel } of pcs.values()) if (channel && channel.readyState === "open") channel.send(text);
  };
  $("hangup").onclick = () => { send({ type: "leave" }); [...pcs.keys()].forEach(hangup); setStatus("left"); };
  start().catch((e) => { setStatus("failed"); log(String(e)); });
})();
