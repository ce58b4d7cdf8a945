// Baton dashboard: keeps pages live and sends actions without a page load.
// - Subscribes to /api/events (SSE) from the page's cursor; on a timeline event it fetches the
//   same page again and swaps <main id="live">, so the view changes in place. The browser
//   reconnects by itself with Last-Event-ID, so nothing is missed across a dropped connection.
// - Action forms are posted with fetch and the session's CSRF token in X-CSRF-Token.
// - While the task has a running job, the log tail is fetched every two seconds.
(function () {
  "use strict";
  var live = document.getElementById("live");
  if (!live) return;
  var dot = document.getElementById("live-dot");
  var toast = document.getElementById("toast");
  var pending = null;

  function say(text) {
    if (!toast) return;
    toast.textContent = text;
    toast.className = "show";
    clearTimeout(say.timer);
    say.timer = setTimeout(function () { toast.className = ""; }, 4000);
  }

  function refresh() {
    pending = null;
    fetch(location.href, { credentials: "same-origin", headers: { "X-Baton-Live": "1" } })
      .then(function (r) { return r.ok ? r.text() : null; })
      .then(function (html) {
        if (!html) return;
        var doc = new DOMParser().parseFromString(html, "text/html");
        var fresh = doc.getElementById("live");
        if (!fresh) return;
        var focused = document.activeElement && document.activeElement.tagName === "TEXTAREA";
        if (focused) return; // never wipe an answer being typed; the next event refreshes
        live.replaceChildren.apply(live, Array.prototype.slice.call(fresh.childNodes));
        for (var i = 0; i < fresh.attributes.length; i++) {
          var a = fresh.attributes[i];
          if (a.name !== "data-cursor") live.setAttribute(a.name, a.value);
        }
        document.title = doc.title;
        live.dispatchEvent(new CustomEvent("baton:refreshed"));
      })
      .catch(function () {});
  }

  if (window.EventSource) {
    var url = "/api/events?after=" + encodeURIComponent(live.dataset.cursor || "0");
    if (live.dataset.page === "task" && live.dataset.task) url += "&task=" + encodeURIComponent(live.dataset.task);
    var source = new EventSource(url);
    source.onopen = function () { if (dot) dot.className = "live-dot on"; };
    source.onerror = function () { if (dot) dot.className = "live-dot"; };
    // Closed when the page goes away, so a stream never holds one of the browser's few
    // connections to this host while the next page loads.
    window.addEventListener("pagehide", function () { source.close(); });
    source.addEventListener("timeline", function (event) {
      live.dataset.lastEvent = event.lastEventId;
      if (!pending) pending = setTimeout(refresh, 120);
    });
  }

  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (!form.classList || !form.classList.contains("action")) return;
    event.preventDefault();
    var button = form.querySelector("button");
    if (button && button.dataset.confirm && !window.confirm(button.dataset.confirm)) return;
    var body = new URLSearchParams(new FormData(form));
    var csrf = form.querySelector("input[name=csrf]");
    if (button) button.disabled = true;
    fetch(form.action, {
      method: "POST",
      credentials: "same-origin",
      headers: { "X-CSRF-Token": csrf ? csrf.value : "", "Content-Type": "application/x-www-form-urlencoded" },
      body: body.toString(),
    })
      .then(function (r) { return r.json().then(function (j) { return [r.ok, j]; }); })
      .then(function (answer) {
        var ok = answer[0], json = answer[1];
        if (!ok) say(json.message || "refused");
        else if (json.outcome === "suppressed") say("nothing done: " + json.reason);
        else if (json.outcome === "applied") say(json.note || "done");
        else say("done");
        refresh();
      })
      .catch(function () { say("the server did not answer; try again"); })
      .then(function () { if (button) button.disabled = false; });
  });

  function pollLog() {
    var log = document.getElementById("log");
    if (log && live.dataset.running === "1") {
      fetch(log.dataset.src, { credentials: "same-origin" })
        .then(function (r) { return r.ok ? r.text() : null; })
        .then(function (text) {
          var current = document.getElementById("log");
          if (text && current) { current.textContent = text; current.scrollTop = current.scrollHeight; }
        })
        .catch(function () {});
    }
  }
  setInterval(pollLog, 2000);
})();
