// The arrow keys belong to what has the keyboard focus (issue 16; docs/sphinxext/a11y.py).
//
// The site turns on Sphinx's `navigation_with_keys`: doctools.js, listening on `document`,
// goes to the previous or next page on ArrowLeft or ArrowRight unless the focus is in a
// form control, even when the focused element used the key itself. So a reader who
// focused a code block to scroll it sideways, or who moves between the tokens or cells of
// an explorer, was taken to another page. This listener, on the root element, runs after
// the focused element's own handlers and before doctools.js; it keeps the key on the page
// when a widget has handled it (preventDefault), or when the focus is in a scrollable
// block, a wide table or an explorer. Everywhere else the arrows still turn the pages.

(() => {
  const KEEP =
    "pre[tabindex], .table-wrapper[tabindex], [role='region'][tabindex], .attnlib-explorer";
  document.documentElement.addEventListener("keydown", (event) => {
    if (event.key !== "ArrowLeft" && event.key !== "ArrowRight") return;
    const focus = document.activeElement;
    if (event.defaultPrevented || focus?.closest?.(KEEP)) event.stopPropagation();
  });
})();
