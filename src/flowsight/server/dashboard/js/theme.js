// Light and dark: the system's choice (prefers-color-scheme) until the
// toggle is used; the toggle's choice is kept in localStorage.

const KEY = 'flowsight.theme';
const dark = window.matchMedia('(prefers-color-scheme: dark)');

export function currentTheme() {
  const set = document.documentElement.dataset.theme;
  if (set === 'light' || set === 'dark') return set;
  return dark.matches ? 'dark' : 'light';
}

export function toggleTheme() {
  const next = currentTheme() === 'dark' ? 'light' : 'dark';
  document.documentElement.dataset.theme = next;
  try { localStorage.setItem(KEY, next); } catch { /* storage off: for this page only */ }
  return next;
}

/** The toggle's state: pressed = dark theme on. */
export function themeLabel() {
  const isDark = currentTheme() === 'dark';
  return {pressed: isDark, label: isDark ? 'Dark theme on (switch to light)' : 'Light theme on (switch to dark)'};
}
