/* Behaviour wired by data attributes: the Content-Security-Policy (views/security.py) runs no inline
   event handlers, so pages say what they need declaratively and this file does it.
     data-autosubmit        on a <select>/<input>: submit its form when it changes
     data-print             on a button: print the page
     data-confirm="…"       on a <form>: ask before submitting; on a button or link: ask before acting
     data-cqe-action="name" on a link: run Flask-Admin's list action (modelActions.execute) */
(function () {
  'use strict';
  document.addEventListener('change', function (e) {
    var el = e.target.closest && e.target.closest('[data-autosubmit]');
    if (el && el.form) { el.form.submit(); }
  });
  document.addEventListener('submit', function (e) {
    var form = e.target;
    if (form.dataset && form.dataset.confirm !== undefined && !window.confirm(form.dataset.confirm)) {
      e.preventDefault();
    }
  }, true);
  document.addEventListener('click', function (e) {
    if (!e.target.closest) { return; }
    var printer = e.target.closest('[data-print]');
    if (printer) { e.preventDefault(); window.print(); return; }
    var asking = e.target.closest('button[data-confirm], a[data-confirm], input[data-confirm]');
    if (asking && !window.confirm(asking.dataset.confirm)) { e.preventDefault(); e.stopImmediatePropagation(); return; }
    var action = e.target.closest('[data-cqe-action]');
    if (action) {
      e.preventDefault();
      if (window.modelActions) { window.modelActions.execute(action.dataset.cqeAction); }
      return;
    }
    // Flask-Admin links with href="javascript:void(0)": their handlers are bound by its scripts; the
    // browser must not try to navigate to the javascript: URL (the CSP would refuse it).
    var js = e.target.closest('a[href^="javascript:"]');
    if (js) { e.preventDefault(); }
  }, true);
})();
