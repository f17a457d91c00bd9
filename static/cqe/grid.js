/* 表格录入: the roster grid on Tabulator. The server checks and saves (forms/grid.py); this file only
   edits, pastes, sends the changed rows and shows each cell's error. */
(function () {
  "use strict";
  var cfg = JSON.parse(document.getElementById("cqe-grid-config").textContent);
  var T = cfg.text;
  var statusEl = document.getElementById("cqe-grid-status");
  var errorsEl = document.getElementById("cqe-grid-errors");
  var saveBtn = document.getElementById("cqe-grid-save");
  var dirty = new Set();
  var checkTimer = null;
  var busy = false;

  function fmt(text, n) { return text.replace("%(n)s", n); }
  function setStatus(text, kind) {
    statusEl.textContent = text || "";
    statusEl.className = "small " + (kind === "error" ? "text-danger" : kind === "ok" ? "text-success" : "text-muted");
  }

  // A row as the table holds it: values flattened to v_<field>, the errors joined for the 问题 column.
  function flat(row) {
    var r = {key: row.key, student_id: row.student_id, record_id: row.record_id, version: row.version,
             xjh: row.xjh, name: row.name, state: row.state, editable: row.editable && cfg.open,
             locked: row.locked || "", errors: row.errors || {}};
    cfg.columns.forEach(function (c) { r["v_" + c.field] = (row.values || {})[c.field] || ""; });
    r._msg = messages(r.errors);
    return r;
  }
  function messages(errors) { return Object.keys(errors || {}).map(function (k) { return errors[k]; }).join("；"); }
  function payload(r) {
    var values = {};
    cfg.columns.forEach(function (c) { values[c.field] = r["v_" + c.field] == null ? "" : String(r["v_" + c.field]); });
    return {key: r.key, student_id: r.student_id, record_id: r.record_id, version: r.version, values: values};
  }

  function valueCell(cell) {
    var row = cell.getRow().getData(), field = cell.getField().slice(2), el = cell.getElement();
    var err = row.errors && row.errors[field];
    el.classList.toggle("cqe-cell-error", !!err);
    el.title = err || "";
    if (err) { el.setAttribute("data-error", err); } else { el.removeAttribute("data-error"); }
    var span = document.createElement("span");
    span.textContent = cell.getValue() == null ? "" : String(cell.getValue());
    return span;
  }
  function textCell(cell) {
    var span = document.createElement("span");
    span.textContent = cell.getValue() == null ? "" : String(cell.getValue());
    return span;
  }
  function stateCell(cell) {
    var row = cell.getRow().getData();
    cell.getElement().title = row.locked || "";
    return textCell(cell);
  }
  function msgCell(cell) {
    var span = textCell(cell);
    span.className = "cqe-msg";
    return span;
  }

  function editorFor(c) {
    if (c.type === "choice") {
      return {editor: "list", editorParams: {values: (c.required ? [] : [""]).concat(c.choices), autocomplete: true,
                                             allowEmpty: true, listOnEmpty: true, freetext: false}};
    }
    if (c.type === "textarea") { return {editor: "textarea"}; }
    if (c.type === "date") { return {editor: "input", editorParams: {elementAttributes: {placeholder: "2022-03-01"}}}; }
    return {editor: "input"};
  }

  var columns = [
    {title: T.xjh, field: "xjh", formatter: textCell, editable: false, width: 190},
    {title: T.name, field: "name", formatter: textCell, editable: false, width: 90},
    {title: T.state, field: "state", formatter: stateCell, editable: false, width: 100}
  ];
  cfg.columns.forEach(function (c) {
    var col = Object.assign({title: c.title + (c.required ? " *" : ""), field: "v_" + c.field, formatter: valueCell,
                             editable: function (cell) { return cell.getRow().getData().editable; },
                             minWidth: 110}, editorFor(c));
    if (c.type === "textarea") { col.width = 220; }
    columns.push(col);
  });
  columns.push({title: T.problem, field: "_msg", formatter: msgCell, editable: false, minWidth: 320});

  // Excel / WPS put a block on the clipboard as tab-separated lines ending in CRLF; a cell holding a tab
  // or line break is quoted. Parse that, and paste it from the active cell into the value columns only.
  function parseBlock(text) {
    text = text.replace(/\r\n?/g, "\n");
    if (text.slice(-1) === "\n") { text = text.slice(0, -1); }
    var rows = [[]], cell = "", quoted = false;
    for (var i = 0; i < text.length; i++) {
      var ch = text[i];
      if (quoted) {
        if (ch === '"') { if (text[i + 1] === '"') { cell += '"'; i++; } else { quoted = false; } } else { cell += ch; }
      } else if (ch === '"' && cell === "") { quoted = true; }
      else if (ch === "\t") { rows[rows.length - 1].push(cell); cell = ""; }
      else if (ch === "\n") { rows[rows.length - 1].push(cell); rows.push([]); cell = ""; }
      else { cell += ch; }
    }
    rows[rows.length - 1].push(cell);
    return rows;
  }
  function pasteParser(clipboard) {
    var range = this.table.modules.selectRange && this.table.modules.selectRange.activeRange;
    if (!range) { return false; }
    var start = range.getBounds().start;
    var visible = this.table.columnManager.getVisibleColumnsByIndex();
    var first = visible.indexOf(start.column);
    if (first < 0) { return false; }
    return parseBlock(clipboard).map(function (cells) {
      var row = {};
      cells.forEach(function (value, j) {
        var col = visible[first + j];
        if (col && col.field && col.field.indexOf("v_") === 0) { row[col.field] = value.trim(); }
      });
      return row;
    });
  }
  var lockedSkipped = 0;
  function pasteAction(data) {
    var range = this.table.modules.selectRange && this.table.modules.selectRange.activeRange;
    if (!range) { return []; }
    var rows = this.table.rowManager.activeRows.slice();
    var start = rows.indexOf(range.getBounds().start.row);
    var changed = [];
    lockedSkipped = 0;
    if (start < 0) { return changed; }
    this.table.blockRedraw();
    data.forEach(function (values, i) {
      var row = rows[start + i];
      if (!row) { return; }
      if (!row.getData().editable) { lockedSkipped++; return; }
      row.updateData(values);
      changed.push(row.getComponent());
    });
    this.table.restoreRedraw();
    return changed;
  }

  var table = new Tabulator("#cqe-grid", {
    data: cfg.rows.map(flat),
    index: "key",
    columns: columns,
    layout: "fitDataStretch",
    renderVertical: "basic",
    selectableRange: 1,
    selectableRangeColumns: false,
    selectableRangeRows: true,
    selectableRangeClearCells: true,
    editTriggerEvent: "dblclick",
    clipboard: true,
    clipboardCopyStyled: false,
    clipboardCopyConfig: {rowHeaders: false, columnHeaders: false},
    clipboardCopyRowRange: "range",
    clipboardPasteParser: pasteParser,
    clipboardPasteAction: pasteAction,
    columnDefaults: {headerSort: false, resizable: "header"},
    rowHeader: {resizable: false, frozen: true, width: 44, hozAlign: "center", formatter: "rownum", editor: false,
                headerSort: false},
    rowFormatter: function (row) {
      var d = row.getData(), el = row.getElement();
      el.classList.toggle("cqe-row-locked", !d.editable);
      el.classList.toggle("cqe-row-dirty", dirty.has(d.key));
    }
  });

  function touched(rowComponent) {
    var d = rowComponent.getData();
    dirty.add(d.key);
    rowComponent.reformat();
    scheduleCheck();
    setStatus(fmt(T.unsaved, dirty.size));
  }
  table.on("cellEdited", function (cell) {
    var field = cell.getField().slice(2), row = cell.getRow(), d = row.getData();
    if (d.errors && d.errors[field]) {
      var errors = Object.assign({}, d.errors);
      delete errors[field];
      row.update({errors: errors, _msg: messages(errors)});
    }
    touched(row);
  });
  table.on("clipboardPasted", function (clipboard, data, rows) {
    (rows || []).forEach(touched);
    if (lockedSkipped) { setStatus(fmt(T.locked_skip, lockedSkipped), "error"); }
  });

  // Type to edit: a printable key on the active cell starts editing it with that key.
  document.getElementById("cqe-grid").addEventListener("keydown", function (e) {
    if (e.key.length !== 1 || e.ctrlKey || e.metaKey || e.altKey) { return; }
    var sr = table.modules.selectRange, ed = table.modules.edit;
    if (!sr || (ed && ed.currentCell)) { return; }
    var active = sr.getActiveCell && sr.getActiveCell();
    if (!active) { return; }
    var cell = active.getComponent();
    if (cell.getField().indexOf("v_") !== 0 || !cell.getRow().getData().editable) { return; }
    e.preventDefault();
    cell.edit(true);
    var input = cell.getElement().querySelector("input, textarea");
    if (input) { input.value = e.key; input.dispatchEvent(new Event("input", {bubbles: true})); }
  });

  function post(url, rows) {
    return fetch(url, {
      method: "POST", credentials: "same-origin",
      headers: {"Content-Type": "application/json", "X-CSRFToken": cfg.csrf, "Accept": "application/json"},
      body: JSON.stringify({class_id: cfg.class_id, rows: rows})
    }).then(function (response) {
      return response.json().then(function (body) { return {ok: response.ok, body: body}; },
                                  function () { return {ok: false, body: {error: String(response.status)}}; });
    });
  }

  function dirtyRows() {
    return table.getData().filter(function (r) { return dirty.has(r.key); }).map(payload);
  }

  function showErrors() {
    errorsEl.innerHTML = "";
    table.getData().forEach(function (r) {
      if (!r._msg) { return; }
      var li = document.createElement("li");
      li.textContent = r.xjh + " " + r.name + "：" + r._msg;
      li.addEventListener("click", function () { table.scrollToRow(r.key, "center", false); });
      errorsEl.appendChild(li);
    });
  }

  function applyErrors(byKey, keys) {
    keys.forEach(function (key) {
      var row = table.getRow(key);
      if (!row) { return; }
      var errors = byKey[key] || {};
      row.update({errors: errors, _msg: messages(errors)});
      row.reformat();
    });
    showErrors();
  }

  function scheduleCheck() {
    clearTimeout(checkTimer);
    checkTimer = setTimeout(runCheck, 350);
  }
  function runCheck() {
    if (busy) { scheduleCheck(); return; }
    var rows = dirtyRows();
    if (!rows.length) { return; }
    setStatus(T.checking);
    post(cfg.urls.check, rows).then(function (res) {
      if (!res.ok) { setStatus(res.body.error || T.network, "error"); return; }
      var sent = rows.map(function (r) { return r.key; });
      applyErrors(res.body.errors || {}, sent);
      var bad = Object.keys(res.body.errors || {}).length;
      setStatus(bad ? fmt(T.errors, bad) : fmt(T.unsaved, dirty.size), bad ? "error" : "");
    }).catch(function () { setStatus(T.network, "error"); });
  }

  saveBtn.addEventListener("click", function () {
    var rows = dirtyRows();
    if (!rows.length) { setStatus(T.nothing); return; }
    clearTimeout(checkTimer);
    busy = true;
    saveBtn.disabled = true;
    setStatus(T.saving);
    post(cfg.urls.save, rows).then(function (res) {
      if (!res.ok) { setStatus(T.failed + (res.body.error || ""), "error"); return; }
      dirty = new Set();
      (res.body.rows || []).forEach(function (r) { if (r.errors && Object.keys(r.errors).length) { dirty.add(r.key); } });
      table.replaceData(res.body.rows.map(flat)).then(function () {
        table.getRows().forEach(function (row) { row.reformat(); });
        showErrors();
      });
      setStatus(res.body.message, res.body.failed ? "error" : "ok");
    }).catch(function () {
      setStatus(T.network, "error");
    }).then(function () { busy = false; saveBtn.disabled = false; });
  });

  window.addEventListener("beforeunload", function (e) {
    if (dirty.size) { e.preventDefault(); e.returnValue = T.leave; return T.leave; }
  });
  window.cqeGrid = table;  // for the browser tests and the curious
})();
