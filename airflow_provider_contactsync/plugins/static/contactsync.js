// The Contactsync page's only script: "Sync now" and "Full refresh" trigger a DAG run through Airflow's
// own REST API (POST /api/v2/dags/{dag_id}/dagRuns) with the session cookie the Airflow UI uses, so
// Airflow checks the user's permission and records the trigger in its audit log. No dependency.
(function () {
  "use strict";
  var box = document.getElementById("trigger");
  if (!box) { return; }
  var status = document.getElementById("trigger-status");

  function say(text, kind) {
    status.textContent = text;
    status.className = kind || "";
  }

  function trigger(button) {
    var message = button.getAttribute("data-confirm");
    if (message && !window.confirm(message)) { return; }
    var conf = JSON.parse(button.getAttribute("data-conf") || "{}");
    var buttons = box.querySelectorAll("button.trigger");
    buttons.forEach(function (b) { b.disabled = true; });
    say("Starting…");
    fetch(box.getAttribute("data-trigger-url"), {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "Accept": "application/json" },
      body: JSON.stringify({ logical_date: null, conf: conf })
    }).then(function (response) {
      return response.json().catch(function () { return {}; }).then(function (body) {
        if (response.ok) {
          say("Run " + body.dag_run_id + " is " + body.state + ".", "ok");
          box.setAttribute("data-last-run-id", body.dag_run_id);
        } else {
          var detail = typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail || body);
          say("Not started (" + response.status + "): " + detail, "error");
        }
      });
    }).catch(function (error) {
      say("Not started: " + error, "error");
    }).finally(function () {
      buttons.forEach(function (b) { b.disabled = b.hasAttribute("data-forbidden"); });
    });
  }

  box.querySelectorAll("button.trigger").forEach(function (button) {
    if (button.disabled) { button.setAttribute("data-forbidden", ""); }
    button.addEventListener("click", function () { trigger(button); });
  });
})();
