// tribunal UI behaviour: keyboard shortcuts in the review queue, the shortcut sheet,
// sortable tables and live job progress (server-sent events). Pages work without it.
"use strict";

(function () {
  function typing(e) {
    var t = e.target;
    return t && (t.tagName === "INPUT" || t.tagName === "TEXTAREA" || t.tagName === "SELECT" || t.isContentEditable);
  }

  function follow(id) {
    var a = document.getElementById(id);
    if (a && a.href) { window.location.href = a.href; return true; }
    return false;
  }

  function toggleSheet() {
    var s = document.getElementById("shortcuts");
    if (s) { s.hidden = !s.hidden; }
  }

  document.addEventListener("keydown", function (e) {
    if (e.ctrlKey || e.metaKey || e.altKey || typing(e)) { return; }
    var k = e.key;
    if (k === "?") { toggleSheet(); e.preventDefault(); return; }
    if (k === "Escape") { var s = document.getElementById("shortcuts"); if (s) { s.hidden = true; } return; }
    if (!document.getElementById("item") && k !== "u") { return; }
    if (k === "j") { follow("next"); e.preventDefault(); return; }
    if (k === "k") { follow("prev"); e.preventDefault(); return; }
    if (k === "u") {
      var u = document.getElementById("undo-form");
      if (u) { u.submit(); e.preventDefault(); }
      return;
    }
    if (/^[1-9]$/.test(k)) {
      var b = document.querySelector('button.category[data-key="' + k + '"]');
      if (b) { b.click(); e.preventDefault(); }
    }
  });

  document.addEventListener("DOMContentLoaded", function () {
    var help = document.getElementById("help-link");
    if (help) { help.addEventListener("click", function (e) { e.preventDefault(); toggleSheet(); }); }

    // Sortable tables: click a header to sort by that column (numbers numerically).
    document.querySelectorAll("table.sortable th").forEach(function (th) {
      th.addEventListener("click", function () {
        var table = th.closest("table");
        var body = table.tBodies[0];
        if (!body) { return; }
        var idx = Array.prototype.indexOf.call(th.parentNode.children, th);
        var asc = th.getAttribute("data-sort") !== "asc";
        th.parentNode.querySelectorAll("th").forEach(function (h) { h.removeAttribute("data-sort"); });
        th.setAttribute("data-sort", asc ? "asc" : "desc");
        var rows = Array.prototype.slice.call(body.rows);
        rows.sort(function (a, b) {
          var x = (a.cells[idx] || {}).textContent || "", y = (b.cells[idx] || {}).textContent || "";
          var nx = parseFloat(x), ny = parseFloat(y);
          var c = (!isNaN(nx) && !isNaN(ny)) ? nx - ny : x.localeCompare(y);
          return asc ? c : -c;
        });
        rows.forEach(function (r) { body.appendChild(r); });
      });
    });

    // Live job progress.
    var job = document.getElementById("job");
    // A cancelling job is still letting go of its work: followed until it is cancelled.
    var live_states = ["queued", "running", "cancelling"];
    if (job && window.EventSource && live_states.indexOf(job.dataset.state) >= 0) {
      var es = new EventSource(job.dataset.events);
      es.addEventListener("progress", function (ev) {
        var p = JSON.parse(ev.data);
        document.getElementById("job-state").textContent = p.state;
        document.getElementById("job-done").textContent = p.done;
        document.getElementById("job-failed").textContent = p.failed;
        document.getElementById("job-bar").value = p.done + p.failed;
        if (live_states.indexOf(p.state) < 0) {
          es.close();
          var live = document.getElementById("job-live");
          if (live) { live.textContent = "The job is " + p.state + "."; }
        }
      });
    }

    // Live calibration-run progress on the set page; the page reloads (showing the
    // new report) when the run's report is written.
    var run = document.getElementById("run-live");
    if (run && window.EventSource) {
      var rs = new EventSource(run.dataset.events);
      rs.addEventListener("progress", function (ev) {
        var p = JSON.parse(ev.data);
        document.getElementById("run-state").textContent = p.state;
        document.getElementById("run-progress").textContent = p.done;
        document.getElementById("run-bar").value = p.done + p.failed;
        if (p.report) {
          rs.close();
          window.location.href = run.dataset.reload;
        } else if (p.state === "cancelled") {
          rs.close();
          document.getElementById("run-live-hint").textContent = "The run was cancelled.";
        }
      });
    }
  });
})();
