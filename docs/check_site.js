// The page-side checks of docs/check_site.py: run in each loaded page, called with one
// argument, whether code blocks must fit the column at desktop width.
(async (FIT_CODE) => {
  await document.fonts.ready;
  await new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r)));
  const problems = [];
  const say = (el) => {
    const cls = typeof el.className === "string" && el.className.trim()
      ? "." + el.className.trim().split(/\s+/).join(".") : "";
    const text = (el.textContent || "").trim().replace(/\s+/g, " ").slice(0, 50);
    return `<${el.tagName.toLowerCase()}${cls}> "${text}"`;
  };
  const doc = document.documentElement;
  if (doc.scrollWidth > doc.clientWidth + 1)
    problems.push(`the page scrolls sideways (${doc.scrollWidth} px wide in ${doc.clientWidth} px)`);
  const column = document.querySelector(".md-content");
  const box = column.getBoundingClientRect();
  // A reader sees that a box scrolls sideways by a scrollbar that takes space (desktop) or,
  // where scrollbars are overlays (phones), by scroll shadows: backgrounds attached "local".
  const scrollsVisibly = (el) => {
    const s = getComputedStyle(el);
    const border = parseFloat(s.borderTopWidth) + parseFloat(s.borderBottomWidth);
    return el.offsetHeight - el.clientHeight - border >= 3 || s.backgroundAttachment.includes("local");
  };
  const visit = (el) => {
    for (const child of el.children) {
      const r = child.getBoundingClientRect();
      if (r.width <= 1 && r.height <= 1) continue;  // not shown, or visually hidden (for screen readers)
      if (r.right > box.right + 1 || r.left < box.left - 1) {
        problems.push(`${say(child)} sticks out of the main column (${Math.round(r.left)}..${Math.round(r.right)} px, column ${Math.round(box.left)}..${Math.round(box.right)} px)`);
        continue;
      }
      const overflowX = getComputedStyle(child).overflowX;
      const hidden = child.scrollWidth > child.clientWidth + 1;
      if (overflowX !== "visible") {  // clips its content: what is inside cannot stick out
        if (!hidden) continue;
        const code = child.tagName === "CODE" && child.parentElement.tagName === "PRE";
        if (code && FIT_CODE && window.innerWidth >= 1000)
          problems.push(`code block needs sideways scrolling (${child.scrollWidth} px in ${child.clientWidth} px): ${say(child)}`);
        else if (overflowX === "hidden" || overflowX === "clip")
          problems.push(`${say(child)} cuts off ${child.scrollWidth - child.clientWidth} px`);
        else if (!scrollsVisibly(child))
          problems.push(`${say(child)} hides ${child.scrollWidth - child.clientWidth} px with no scrollbar or scroll shadow`);
        continue;
      }
      visit(child);
    }
  };
  visit(column);
  const images = [...document.images]
    .filter((img) => !img.complete || img.naturalWidth === 0)
    .map((img) => img.currentSrc || img.src);
  const links = [...document.querySelectorAll("a[href]")]
    .filter((a) => !a.closest(".md-search"))
    .map((a) => a.href);
  return { problems, images, links, height: doc.scrollHeight };
})
