/*
 * The live console: the conversation screen and the dashboard.
 *
 * One WebSocket to /ws/console/ (staff session). On every (re)connect the page
 * asks for the messages after the last seq it shows ("catch_up"), so a dropped
 * socket costs nothing: messages are keyed by seq, a duplicate is ignored and a
 * gap triggers another catch_up. No polling: the server pushes.
 */
(function () {
  "use strict";

  function relative(date) {
    var s = Math.round((Date.now() - date.getTime()) / 1000);
    if (s < 5) return "just now";
    if (s < 60) return s + " s ago";
    if (s < 3600) return Math.floor(s / 60) + " min ago";
    if (s < 86400) return Math.floor(s / 3600) + " h ago";
    return Math.floor(s / 86400) + " d ago";
  }

  function refreshTimes(root) {
    (root || document).querySelectorAll("time[datetime]").forEach(function (el) {
      var date = new Date(el.getAttribute("datetime"));
      if (!isNaN(date)) {
        el.textContent = relative(date);
      }
    });
  }

  function fragment(html) {
    var template = document.createElement("template");
    template.innerHTML = html; // rendered and escaped by the server (console/rendering.py)
    return template.content;
  }

  function socketUrl(path) {
    return (location.protocol === "https:" ? "wss://" : "ws://") + location.host + path;
  }

  // A WebSocket that reconnects with backoff and calls onOpen each time it is up.
  function LiveSocket(path, handlers) {
    this.path = path;
    this.handlers = handlers;
    this.delay = 500;
    this.socket = null;
    this.connect();
  }
  LiveSocket.prototype.connect = function () {
    var self = this;
    var socket = new WebSocket(socketUrl(this.path));
    this.socket = socket;
    socket.onopen = function () {
      self.delay = 500;
      self.handlers.status("live");
      self.handlers.open();
    };
    socket.onmessage = function (event) {
      self.handlers.message(JSON.parse(event.data));
    };
    socket.onclose = function () {
      if (self.socket !== socket) return;
      self.handlers.status("reconnecting");
      setTimeout(function () { self.connect(); }, self.delay);
      self.delay = Math.min(self.delay * 2, 10000);
    };
  };
  LiveSocket.prototype.send = function (data) {
    if (this.socket && this.socket.readyState === WebSocket.OPEN) {
      this.socket.send(JSON.stringify(data));
    }
  };

  function setLiveStatus(state) {
    var el = document.getElementById("live-status");
    if (!el) return;
    el.dataset.state = state;
    el.textContent = state === "live" ? "live" : "reconnecting…";
  }

  // --- the conversation screen --------------------------------------------------

  function Conversation(config) {
    this.config = config;
    this.lastSeq = config.lastSeq;
    this.firstSeq = config.firstSeq;
    this.transcript = document.getElementById("transcript");
    this.presence = document.getElementById("presence");
    this.typingTimers = {};
    var self = this;
    this.live = new LiveSocket(config.wsPath, {
      status: setLiveStatus,
      open: function () {
        self.live.send({ op: "catch_up", after_seq: self.lastSeq });
        self.live.send({ op: "presence" });
      },
      message: function (data) { self.onEvent(data); },
    });
    this.bindEarlier();
    this.bindComposer();
    this.bindRequests();
    this.scrollToBottom();
  }

  Conversation.prototype.nearBottom = function () {
    var el = document.scrollingElement || document.documentElement;
    return el.scrollHeight - el.scrollTop - el.clientHeight < 200;
  };

  Conversation.prototype.scrollToBottom = function () {
    if (location.hash) return;
    var last = this.transcript.lastElementChild;
    if (last) last.scrollIntoView({ block: "end" });
  };

  Conversation.prototype.onEvent = function (data) {
    if (data.type === "messages") {
      this.append(data.messages);
    } else if (data.type === "presence") {
      this.renderPresence(data.agents);
    } else if (data.type === "agent") {
      this.setAgent(data.agent_id, function (li) {
        li.classList.toggle("online", !!data.is_online);
        li.classList.toggle("offline", !data.is_online);
        if (data.is_online) li.querySelector(".seen time").setAttribute("datetime", new Date().toISOString());
      });
    } else if (data.type === "waiting" && data.thread_id === this.config.threadId) {
      if (!this.setAgent(data.agent_id, function (li) { li.classList.toggle("waiting", !!data.is_waiting); })) {
        this.live.send({ op: "presence" }); // a newcomer: fetch the panel again
      }
    } else if (data.type === "typing" && data.thread_id === this.config.threadId) {
      var self = this;
      this.setAgent(data.agent_id, function (li) {
        li.classList.toggle("typing", !!data.is_typing);
        clearTimeout(self.typingTimers[data.agent_id]);
        if (data.is_typing) {
          // A typing notice that is never withdrawn fades after 15 s.
          self.typingTimers[data.agent_id] = setTimeout(function () { li.classList.remove("typing"); }, 15000);
        }
      });
    } else if (data.type === "state" && data.thread_id === this.config.threadId) {
      this.config.status = data.status;
      document.getElementById("thread-status").textContent = data.status;
    }
  };

  Conversation.prototype.append = function (messages) {
    var stick = this.nearBottom();
    var added = false;
    for (var i = 0; i < messages.length; i++) {
      var m = messages[i];
      if (m.seq <= this.lastSeq) continue; // already shown
      if (m.seq !== this.lastSeq + 1) {
        // A gap: ask for everything after what we have, in order.
        this.live.send({ op: "catch_up", after_seq: this.lastSeq });
        break;
      }
      var empty = document.getElementById("transcript-empty");
      if (empty) empty.remove();
      var node = fragment(m.html);
      refreshTimes(node);
      this.transcript.appendChild(node);
      this.lastSeq = m.seq;
      added = true;
    }
    if (added) {
      document.getElementById("message-count").textContent = this.lastSeq;
      if (stick) this.scrollToBottom();
    }
  };

  Conversation.prototype.bindEarlier = function () {
    var self = this;
    var button = document.getElementById("earlier");
    if (!button) return;
    button.addEventListener("click", function () {
      button.disabled = true;
      fetch(self.config.transcriptUrl + "?before=" + self.firstSeq, { credentials: "same-origin" })
        .then(function (r) { return r.json(); })
        .then(function (page) {
          var before = document.documentElement.scrollHeight;
          var html = page.messages.map(function (m) { return m.html; }).join("");
          var node = fragment(html);
          refreshTimes(node);
          self.transcript.insertBefore(node, self.transcript.firstChild);
          self.firstSeq = page.first_seq;
          window.scrollBy(0, document.documentElement.scrollHeight - before);
          button.hidden = !page.has_more;
        })
        .finally(function () { button.disabled = false; });
    });
  };

  Conversation.prototype.bindComposer = function () {
    var form = document.getElementById("composer");
    if (!form) return;
    var error = document.getElementById("composer-error");
    var self = this;
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      error.textContent = "";
      var send = document.getElementById("composer-send");
      send.disabled = true;
      fetch(form.action, {
        method: "POST",
        body: new FormData(form),
        credentials: "same-origin",
        headers: { Accept: "application/json" },
      })
        .then(function (r) { return r.json(); })
        .then(function (result) {
          if (result.ok) {
            form.content.value = "";
            self.answering(null);
            // The socket brings the message; catch up in case it is down.
            self.live.send({ op: "catch_up", after_seq: self.lastSeq });
          } else {
            error.textContent = result.error;
          }
        })
        .catch(function () { error.textContent = "Could not reach the server; try again."; })
        .finally(function () { send.disabled = false; });
    });
    form.content.addEventListener("keydown", function (event) {
      if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) form.requestSubmit();
    });
  };

  // "Answer" on a request for a human: the next post replies to it (reply_to_msg_id) and clears it.
  Conversation.prototype.bindRequests = function () {
    var self = this;
    document.querySelectorAll("button[data-answer]").forEach(function (button) {
      button.addEventListener("click", function () {
        self.answering(button.dataset.answer, button.dataset.seq);
      });
    });
  };
  Conversation.prototype.answering = function (msgId, seq) {
    var form = document.getElementById("composer");
    if (!form || !form.reply_to_msg_id) return;
    var label = document.getElementById("composer-answering");
    if (msgId) {
      form.reply_to_msg_id.value = msgId;
      label.textContent = "answering the request in #" + seq;
      label.hidden = false;
      form.content.focus();
    } else {
      var answered = form.reply_to_msg_id.value;
      var item = answered && document.querySelector('.requests li[data-msg-id="' + answered + '"]');
      if (item) item.remove();
      form.reply_to_msg_id.value = "";
      label.hidden = true;
    }
  };

  Conversation.prototype.setAgent = function (agentId, change) {
    var li = this.presence && this.presence.querySelector('li[data-agent-id="' + agentId + '"]');
    if (li) change(li);
    return !!li;
  };

  Conversation.prototype.renderPresence = function (agents) {
    var list = this.presence;
    list.textContent = "";
    if (!agents.length) {
      var none = document.createElement("li");
      none.className = "none";
      none.textContent = "No agent has joined yet.";
      list.appendChild(none);
    }
    agents.forEach(function (a) {
      var li = document.createElement("li");
      li.dataset.agentId = a.agent_id;
      li.className = (a.is_online ? "online" : "offline") + (a.is_waiting ? " waiting" : "");
      var dot = document.createElement("span");
      dot.className = "dot";
      var name = document.createElement("span");
      name.className = "name";
      name.textContent = a.name;
      var detail = document.createElement("span");
      detail.className = "detail";
      detail.textContent = a.detail;
      var waiting = document.createElement("span");
      waiting.className = "badge waiting-badge";
      waiting.textContent = "waiting now";
      var typing = document.createElement("span");
      typing.className = "badge typing-badge";
      typing.textContent = "typing…";
      var seen = document.createElement("div");
      seen.className = "seen";
      seen.textContent = "last seen ";
      var time = document.createElement("time");
      time.setAttribute("datetime", a.last_seen);
      time.title = a.last_seen;
      seen.appendChild(time);
      var cursors = document.createElement("div");
      cursors.className = "cursors";
      cursors.title = "delivered up to #" + a.delivered_seq + ", read up to #" + a.seen_seq;
      cursors.textContent = "got #" + a.delivered_seq + " · read #" + a.seen_seq;
      [dot, name, document.createTextNode(" "), detail, waiting, typing, seen, cursors].forEach(function (n) { li.appendChild(n); });
      list.appendChild(li);
    });
    refreshTimes(list);
  };

  // --- the dashboard ----------------------------------------------------------------

  function Dashboard(root) {
    var self = this;
    this.root = root;
    this.pending = null;
    this.live = new LiveSocket(root.dataset.wsPath, {
      status: setLiveStatus,
      open: function () { self.live.send({ op: "counters" }); self.live.send({ op: "queues" }); },
      message: function (data) {
        if (data.type === "counters") {
          Object.keys(data.counters).forEach(function (key) {
            var el = root.querySelector('[data-counter="' + key + '"]');
            if (el) el.textContent = data.counters[key];
          });
        } else if (data.type === "queues") {
          var queues = document.getElementById("queues");
          if (queues) {
            queues.textContent = "";
            var node = fragment(data.html); // rendered and escaped by the server
            refreshTimes(node);
            queues.appendChild(node);
          }
        } else if (["activity", "agent", "waiting", "state"].indexOf(data.type) >= 0) {
          self.refresh();
        }
      },
    });
  }
  // Many events in a burst cost one recount.
  // Replies fall overdue with time, not with an event: look at the queues once a minute too.
  Dashboard.prototype.everyMinute = function () {
    var self = this;
    setInterval(function () { self.refresh(); }, 60000);
  };
  Dashboard.prototype.refresh = function () {
    var self = this;
    if (this.pending) return;
    this.pending = setTimeout(function () {
      self.pending = null;
      self.live.send({ op: "counters" });
      self.live.send({ op: "queues" });
    }, 1000);
  };

  document.addEventListener("DOMContentLoaded", function () {
    refreshTimes();
    setInterval(refreshTimes, 15000); // relative times age locally; nothing is fetched
    var config = document.getElementById("console-config");
    if (config) {
      window.agentchatConsole = new Conversation(JSON.parse(config.textContent));
    }
    var dashboard = document.getElementById("dashboard");
    if (dashboard) {
      window.agentchatDashboard = new Dashboard(dashboard);
      window.agentchatDashboard.everyMinute();
    }
  });
})();
