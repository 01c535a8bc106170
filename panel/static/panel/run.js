// The run page, live: polls the run's progress (JSON) and updates the page in place — each
// task's row as its state changes, the nixops4 output as it comes, the log, and the recap at
// the end. No reload, no framework; every text is set with textContent.
(function () {
  "use strict";
  var root = document.getElementById("live-run");
  if (!root || root.dataset.done === "1") return;
  var url = root.dataset.progressUrl;
  var after = Number(root.dataset.next || 0);
  var tbody = document.querySelector("#tasks tbody");
  var applyOutput = document.getElementById("apply-output");
  var log = document.getElementById("log");
  var OUTCOMES = ["ok", "changed", "failed", "skipped", "unreachable"];

  function cell(text, className) {
    var td = document.createElement("td");
    if (className) td.className = className;
    td.textContent = text;
    return td;
  }

  function row(task) {
    var tr = tbody.querySelector('tr[data-task="' + CSS.escape(task.id) + '"]');
    if (!tr) {
      var placeholder = tbody.querySelector("tr.placeholder");
      if (placeholder) placeholder.remove();
      tr = document.createElement("tr");
      tr.dataset.task = task.id;
      tr.appendChild(cell(task.id, "task-id"));
      tr.appendChild(cell(task.host));
      tr.appendChild(cell("", "task-status"));
      tr.appendChild(cell("", "task-duration"));
      tbody.appendChild(tr);
    }
    return tr;
  }

  function showTask(task) {
    var tr = row(task);
    if (tr.dataset.status === task.status) return;
    tr.dataset.status = task.status;
    tr.className = "status-" + task.status;
    tr.querySelector(".task-status").textContent = task.status;
    tr.querySelector(".task-duration").textContent =
      task.duration === null || task.duration === undefined ? "" : task.duration.toFixed(2) + "s";
    var idCell = tr.querySelector(".task-id");
    var old = idCell.querySelector(".task-message");
    if (old) old.remove();
    if (task.message) {
      var div = document.createElement("div");
      div.className = "task-message";
      div.textContent = task.message;
      idCell.appendChild(div);
    }
  }

  function append(pre, text) {
    var atBottom = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 4;
    pre.appendChild(document.createTextNode(text));
    if (atBottom) pre.scrollTop = pre.scrollHeight;
  }

  function showRecap(recap) {
    var hosts = Object.keys(recap || {});
    if (!hosts.length) return;
    var box = document.getElementById("recap");
    var table = document.createElement("table");
    table.className = "list recap-table";
    var head = document.createElement("tr");
    ["Host"].concat(OUTCOMES).forEach(function (h) {
      var th = document.createElement("th"); th.textContent = h; head.appendChild(th);
    });
    var thead = document.createElement("thead"); thead.appendChild(head); table.appendChild(thead);
    var body = document.createElement("tbody");
    hosts.forEach(function (host) {
      var tr = document.createElement("tr");
      tr.appendChild(cell(host));
      OUTCOMES.forEach(function (o) { tr.appendChild(cell(String(recap[host][o] || 0))); });
      body.appendChild(tr);
    });
    table.appendChild(body);
    box.replaceChildren(table);
  }

  function counts(tasks) {
    var n = { done: 0, running: 0, total: tasks.length };
    tasks.forEach(function (t) {
      if (t.status === "running") n.running += 1;
      else if (t.status !== "pending") n.done += 1;
    });
    return n.done + " of " + n.total + " tasks finished" + (n.running ? ", " + n.running + " running" : "");
  }

  function update(data) {
    data.tasks.forEach(showTask);
    data.chunks.forEach(function (chunk) {
      if (chunk.number <= after) return;
      append(log, chunk.text);
      if (chunk.task.indexOf("nixops4.") === 0 && chunk.stream !== "event") append(applyOutput, chunk.text);
    });
    after = Math.max(after, data.next);
    document.getElementById("run-counts").textContent = "(" + counts(data.tasks) + ")";
    var result = document.getElementById("run-result");
    result.textContent = data.result;
    result.className = "result " + data.state;
    if (data.error) {
      var box = document.getElementById("run-error");
      box.textContent = data.error;
      box.hidden = false;
    }
    var stopForm = document.getElementById("stop-form");
    if (stopForm && (data.finished || data.stopping)) stopForm.hidden = true;
    if (data.finished) {
      showRecap(data.recap);
      document.getElementById("run-elapsed").textContent =
        typeof data.duration === "number" ? "— took " + data.duration.toFixed(1) + " s" : "";
      root.dataset.finished = "1";
    }
    if (typeof data.log === "string") {  // the stored record, whole (the run ended elsewhere)
      log.textContent = data.log;
      applyOutput.textContent = data.apply_output;
    }
    if (data.finished && data.state !== "running" && data.state !== "storing") {
      root.dataset.done = "1";
      return true;
    }
    return false;
  }

  function clock() {  // how long the run has been going, while it goes
    var started = Number(root.dataset.started || 0);
    if (!started || root.dataset.finished === "1") return;
    var seconds = Math.max(0, Math.round(Date.now() / 1000 - started));
    var text = seconds < 60 ? seconds + " s" : Math.floor(seconds / 60) + " min " + (seconds % 60) + " s";
    document.getElementById("run-elapsed").textContent = "— running for " + text;
    setTimeout(clock, 1000);
  }

  function poll() {
    fetch(url + "?after=" + after, { headers: { Accept: "application/json" }, credentials: "same-origin" })
      .then(function (response) {
        if (!response.ok) throw new Error("HTTP " + response.status);
        return response.json();
      })
      .then(function (data) { if (!update(data)) setTimeout(poll, 400); })
      .catch(function () { setTimeout(poll, 2000); });
  }
  clock();
  poll();
})();
