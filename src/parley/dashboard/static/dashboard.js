// Parley dashboard: copy buttons. Everything else works without script.
(function () {
  "use strict";

  function statusFor(id) {
    return document.querySelector('[data-copy-status="' + id + '"]');
  }

  function fallbackCopy(field) {
    field.focus();
    field.select();
    try {
      return document.execCommand("copy");
    } catch (err) {
      return false;
    }
  }

  function announce(button, id, ok) {
    var status = statusFor(id);
    var label = button.dataset.label || button.textContent;
    button.dataset.label = label;
    button.textContent = ok ? "Copied" : "Press Ctrl+C";
    if (status) {
      status.textContent = ok ? "Copied to the clipboard." : "Select the text and copy it.";
    }
    window.setTimeout(function () {
      button.textContent = label;
      if (status) {
        status.textContent = "";
      }
    }, 2500);
  }

  document.addEventListener("click", function (event) {
    var button = event.target.closest("[data-copy]");
    if (!button) {
      return;
    }
    var id = button.getAttribute("data-copy");
    var field = document.getElementById(id);
    if (!field) {
      return;
    }
    var text = field.value;
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(
        function () { announce(button, id, true); },
        function () { announce(button, id, fallbackCopy(field)); }
      );
    } else {
      announce(button, id, fallbackCopy(field));
    }
  });

  document.addEventListener("focusin", function (event) {
    if (event.target.matches && event.target.matches("[data-select-on-focus]")) {
      event.target.select();
    }
  });
})();
