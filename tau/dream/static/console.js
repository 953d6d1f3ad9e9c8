// The dream console: polls /api/state every 2 s and renders it.  Every
// value is written as text (textContent), never as HTML: project and
// resource names are user input.
"use strict";

function el(tag, text, cls) {
  var node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (cls) node.className = cls;
  return node;
}

function setText(id, text) { document.getElementById(id).textContent = text === null || text === undefined ? "" : String(text); }

function renderNodes(state) {
  var body = document.querySelector("#nodes tbody");
  body.replaceChildren();
  (state.nodes || []).forEach(function (node) {
    var row = el("tr");
    row.setAttribute("data-node", node.name);
    row.appendChild(el("td", node.name));
    row.appendChild(el("td", (node.services || []).join(", "), "services"));
    row.appendChild(el("td", node.pid));
    var health = (state.health || {})[node.name] || (node.running ? "starting" : "exited");
    row.appendChild(el("td", health, health === "up" ? "health-up" : "health-down"));
    var urls = el("td");
    Object.keys(node.urls || {}).sort().forEach(function (name) {
      urls.appendChild(el("div", name + " " + node.urls[name]));
    });
    row.appendChild(urls);
    row.appendChild(el("td", node.peer, "peer"));
    body.appendChild(row);
  });
}

function renderProjects(projects) {
  var box = document.getElementById("projects");
  box.replaceChildren();
  setText("projects-error", projects.error);
  var items = projects.items || [];
  if (!items.length && !projects.error) box.appendChild(el("p", "no project yet"));
  items.forEach(function (project) {
    var div = el("div", null, "project");
    div.setAttribute("data-project", project.id);
    var title = el("h3");
    title.appendChild(el("span", project.name || "(unnamed)", "project-name"));
    title.appendChild(el("code", " " + project.id));
    div.appendChild(title);
    div.appendChild(el("p", "commit " + (project.commit || "none")));
    var list = el("ul");
    (project.resources || []).forEach(function (r) {
      var text = r.kind + ": " + (r.name || "(unnamed)") + " (" + r.id + ")" + (r.application ? " in " + r.application : "");
      list.appendChild(el("li", text, "resource"));
    });
    div.appendChild(list);
    box.appendChild(div);
  });
}

function renderJobs(jobs) {
  var box = document.getElementById("jobs");
  box.replaceChildren();
  setText("jobs-error", jobs.error);
  var items = jobs.items || [];
  if (!items.length && !jobs.error) box.appendChild(el("p", "no job yet"));
  items.slice().reverse().forEach(function (job) {
    var div = el("div", null, "job");
    div.setAttribute("data-job", job.id);
    var title = el("h3");
    title.appendChild(el("code", job.id));
    title.appendChild(el("span", " " + job.status, "status-" + job.status));
    div.appendChild(title);
    if (job.repository) div.appendChild(el("p", job.repository + (job.ref ? " " + job.ref : "") + (job.commit ? " @ " + job.commit : ""), "job-source"));
    (job.logs || []).forEach(function (entry) {
      var details = el("details");
      details.appendChild(el("summary", "log " + entry.name + " (" + entry.cid + ")"));
      details.appendChild(el("pre", entry.text));
      div.appendChild(details);
    });
    box.appendChild(div);
  });
}

function render(state) {
  setText("name", state.name);
  setText("fqdn", state.fqdn);
  setText("dns", state.dns || "no seer");
  renderNodes(state);
  renderProjects(state.projects || {});
  renderJobs(state.jobs || {});
  setText("updated", "updated " + new Date().toLocaleTimeString());
}

function poll() {
  fetch("api/state", {cache: "no-store"})
    .then(function (r) { return r.json(); })
    .then(render)
    .catch(function (e) { setText("updated", "console unreachable: " + e); })
    .finally(function () { setTimeout(poll, 2000); });
}

poll();
