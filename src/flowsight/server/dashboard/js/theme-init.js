// Run before the page is drawn (a classic script in <head>): the theme chosen
// with the toggle, if any; otherwise the system's (prefers-color-scheme).
(function () {
  try {
    var theme = localStorage.getItem('flowsight.theme');
    if (theme === 'light' || theme === 'dark') document.documentElement.dataset.theme = theme;
  } catch (e) { /* storage off: the system's theme */ }
})();
