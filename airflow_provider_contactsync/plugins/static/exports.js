// The export history's only script: asks before an action that sends a file or starts an export
// (forms with data-confirm). The actions are plain form posts: without this script they still work.
(function () {
  "use strict";
  document.querySelectorAll("form[data-confirm]").forEach(function (form) {
    form.addEventListener("submit", function (event) {
      if (!window.confirm(form.getAttribute("data-confirm"))) { event.preventDefault(); }
    });
  });
})();
