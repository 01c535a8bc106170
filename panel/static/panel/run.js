// The run page, live: polls the run's progress (JSON) and updates the page in place — each
// task's row as its state changes, the nixops4 output as it comes, the log, and the recap at
// the end; the result in the colour of its meaning (the JSON's "tone"), Resume once a deploy
// failed, was interrupted or broke off. Each task's row opens the task's own output below it
// (…/tasks/<id>/output, refreshed while the run goes). No reload, no framework; every text is
// set with textContent.
(function () {
  "use strict";
  var root = document.getElementById("live-run");
  if (!root) return;
  var url = root.dataset.progressUrl;
  var after = Number(root.dataset.next || 0);
  var tbody = document.querySelector("#tasks tbody");
  var applyBox = document.getElementById("apply-box");
  var applyOutput = document.getElementById("apply-output");
  var log = document.getElementById("log");
  var OUTCOMES = ["ok", "changed", "failed", "skipped", "unreachable"];
  var RESUMABLE = ["failed", "interrupted", "broken"];
  var open = {};  // task id → its detail row, while open

  function taskUrl(template, id) {
    return template.replace("/tasks/TASK/", "/tasks/" + encodeURIComponent(id) + "/");
  }

  function cell(text, className) {
    var td = document.createElement("td");
    if (className) td.className = className;
    td.textContent = text;
    return td;
  }

  function idCell(task) {
    var td = document.createElement("td");
    td.className = "task-id";
    var a = document.createElement("a");
    a.className = "task-link";
    a.href = taskUrl(root.dataset.taskUrl, task.id);
    a.textContent = task.id;
    td.appendChild(a);
    var host = document.createElement("div");
    host.className = "task-host-inline muted";
    host.textContent = "on " + task.host;
    td.appendChild(host);
    return td;
  }

  function row(task) {
    var tr = tbody.querySelector('tr[data-task="' + CSS.escape(task.id) + '"]');
    if (!tr) {
      var placeholder = tbody.querySelector("tr.placeholder");
      if (placeholder) placeholder.remove();
      tr = document.createElement("tr");
      tr.dataset.task = task.id;
      tr.appendChild(idCell(task));
      tr.appendChild(cell(task.host, "col-host"));
      tr.appendChild(cell("", "task-status"));
      tr.appendChild(cell("", "task-duration col-time"));
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
    var id = tr.querySelector(".task-id");
    var old = id.querySelector(".task-message");
    if (old) old.remove();
    if (task.message) {
      var div = document.createElement("div");
      div.className = "task-message";
      div.textContent = task.message;
      id.appendChild(div);
    }
  }

  // --- one task's output, opened below its row ------------------------------------------------

  function fillDetail(detail, data) {
    var pre = detail.querySelector("pre");
    var note = detail.querySelector(".task-output-note");
    pre.textContent = data.text;
    pre.hidden = !data.text;
    note.textContent = data.text
      ? (data.source === "log" ? "The engine's log of this task (secrets masked)." : "Its output so far (secrets masked).")
      : (data.finished || ["ok", "changed", "failed", "skipped", "unreachable"].indexOf(data.status) >= 0
        ? "The task printed nothing." : "Nothing printed yet.");
    var rerun = detail.querySelector(".task-rerun");
    rerun.hidden = !data.can_rerun;
  }

  function loadDetail(id) {
    var detail = open[id];
    if (!detail) return;
    fetch(taskUrl(root.dataset.outputUrl, id), { headers: { Accept: "application/json" }, credentials: "same-origin" })
      .then(function (response) {
        if (!response.ok) throw new Error("HTTP " + response.status);
        return response.json();
      })
      .then(function (data) { if (open[id] === detail) fillDetail(detail, data); })
      .catch(function () {
        detail.querySelector(".task-output-note").textContent = "The output could not be loaded; open the task's page.";
      });
  }

  function toggle(tr) {
    var id = tr.dataset.task;
    if (open[id]) {
      open[id].remove();
      delete open[id];
      tr.classList.remove("open");
      return;
    }
    var detail = document.createElement("tr");
    detail.className = "task-detail";
    detail.dataset.detailOf = id;
    var td = document.createElement("td");
    td.colSpan = 4;
    var note = document.createElement("p");
    note.className = "task-output-note muted";
    note.textContent = "Loading its output…";
    var pre = document.createElement("pre");
    pre.className = "output task-output";
    pre.hidden = true;
    var links = document.createElement("p");
    links.className = "task-links";
    var page = document.createElement("a");
    page.href = taskUrl(root.dataset.taskUrl, id);
    page.textContent = "Open the task's page";
    var rerun = document.createElement("a");
    rerun.className = "task-rerun button";
    rerun.href = page.href + "#rerun";
    rerun.textContent = "Re-run this task alone…";
    rerun.hidden = true;
    links.appendChild(page);
    links.appendChild(document.createTextNode(" "));
    links.appendChild(rerun);
    td.appendChild(note);
    td.appendChild(pre);
    td.appendChild(links);
    detail.appendChild(td);
    tr.after(detail);
    tr.classList.add("open");
    open[id] = detail;
    loadDetail(id);
  }

  tbody.addEventListener("click", function (event) {
    var link = event.target.closest("a.task-link");
    if (!link || event.ctrlKey || event.metaKey || event.shiftKey || event.button !== 0) return;
    event.preventDefault();
    toggle(link.closest("tr"));
  });

  // --- the run's progress ---------------------------------------------------------------------

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
    var scroll = document.createElement("div");
    scroll.className = "scroll";
    scroll.appendChild(table);
    box.replaceChildren(scroll);
  }

  function counts(tasks) {
    var n = { done: 0, running: 0, total: tasks.length };
    tasks.forEach(function (t) {
      if (t.status === "running") n.running += 1;
      else if (t.status !== "pending") n.done += 1;
    });
    return n.done + " of " + n.total + " tasks finished" + (n.running ? ", " + n.running + " running" : "");
  }

  function showApply(text) {
    if (root.dataset.apply === "1" && text) applyBox.hidden = false;
  }

  function update(data) {
    data.tasks.forEach(showTask);
    data.chunks.forEach(function (chunk) {
      if (chunk.number <= after) return;
      append(log, chunk.text);
      if (chunk.task.indexOf("nixops4.") === 0 && chunk.stream !== "event") {
        append(applyOutput, chunk.text);
        showApply(chunk.text);
      }
    });
    after = Math.max(after, data.next);
    if (data.number) document.getElementById("run-number").textContent = data.number;
    document.getElementById("run-counts").textContent = data.tasks.length ? "(" + counts(data.tasks) + ")" : "";
    var result = document.getElementById("run-result");
    result.textContent = data.label || data.result;
    result.className = "result " + (data.tone || data.state);
    if (data.error) {
      document.getElementById("run-error-text").textContent = data.error_text || data.error;
      document.getElementById("run-advice-text").textContent = data.advice || "";
      document.getElementById("run-advice").hidden = !data.advice;
      document.getElementById("run-error").hidden = false;
    }
    var stopForm = document.getElementById("stop-form");
    if (stopForm && (data.finished || data.stopping)) stopForm.hidden = true;
    document.getElementById("stopping").hidden = !(data.stopping && !data.finished);
    if (typeof data.log === "string") {  // the stored record, whole (the run ended elsewhere)
      log.textContent = data.log;
      applyOutput.textContent = data.apply_output;
      showApply(data.apply_output);
    }
    Object.keys(open).forEach(loadDetail);
    if (data.finished) {
      showRecap(data.recap);
      document.getElementById("run-elapsed").textContent =
        typeof data.duration === "number" ? "— took " + data.duration.toFixed(1) + " s" : "";
      root.dataset.finished = "1";
      document.querySelectorAll(".message.while-running").forEach(function (m) { m.remove(); });
      var placeholder = tbody.querySelector("tr.placeholder td");
      if (placeholder) placeholder.textContent = "No task ran.";
    }
    if (data.finished && ["running", "storing", "queued"].indexOf(data.state) < 0) {
      var resume = document.getElementById("resume-form");
      if (resume && resume.dataset.mayResume === "1" && RESUMABLE.indexOf(data.tone) >= 0 &&
          data.tasks.some(function (t) { return t.status !== "ok" && t.status !== "changed"; })) {
        resume.hidden = false;
      }
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
  if (root.dataset.done === "1") return;  // an ended run: its rows still open their output
  clock();
  poll();
})();
