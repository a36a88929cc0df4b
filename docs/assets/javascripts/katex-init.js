// Render the TeX that pymdownx.arithmatex (generic mode) leaves in .arithmatex elements,
// with the KaTeX shipped in docs/assets/katex (no network at view time). A formula KaTeX
// cannot parse is reported on the console, which the site check (tests/test_site.py) fails on.
function renderMath(root) {
  root.querySelectorAll(".arithmatex").forEach((el) => {
    if (el.dataset.rendered) return;
    const tex = el.textContent.trim();
    const display = tex.startsWith("\\[");
    const body = tex.replace(/^\\[\[(]/, "").replace(/\\[\])]$/, "");
    try {
      katex.render(body, el, { displayMode: display, throwOnError: true });
      el.dataset.rendered = "1";
    } catch (err) {
      console.error(`KaTeX could not render ${JSON.stringify(body)}: ${err.message}`);
    }
  });
}

if (typeof document$ !== "undefined") {
  document$.subscribe(({ body }) => renderMath(body));
} else {
  document.addEventListener("DOMContentLoaded", () => renderMath(document.body));
}
