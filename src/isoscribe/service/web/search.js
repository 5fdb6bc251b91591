// Search in the transcript: every occurrence highlighted (CSS Custom Highlight API, so the word spans stay
// as they are), one of them current, next and previous with wrap-around.
import { $ } from "./dom.js";

const found = { ranges: [], current: -1 };

/** Find the search box's text again (after typing, or after the transcript was redrawn). */
export function refreshSearch() {
  const query = $("search-input").value.trim().toLocaleLowerCase();
  found.ranges = query ? [...document.querySelectorAll("#transcript .words")].flatMap((p) => rangesIn(p, query)) : [];
  found.current = found.ranges.length ? Math.min(Math.max(found.current, 0), found.ranges.length - 1) : -1;
  paint(false);
}

function rangesIn(paragraph, query) {
  const nodes = [];
  const walker = document.createTreeWalker(paragraph, NodeFilter.SHOW_TEXT);
  let text = "";
  while (walker.nextNode()) {
    nodes.push({ node: walker.currentNode, offset: text.length });
    text += walker.currentNode.data;
  }
  const lower = text.toLocaleLowerCase();
  const ranges = [];
  for (let at = lower.indexOf(query); at >= 0; at = lower.indexOf(query, at + query.length)) {
    const range = document.createRange();
    range.setStart(...position(nodes, at, false));
    range.setEnd(...position(nodes, at + query.length, true));
    ranges.push(range);
  }
  return ranges;
}

/** The text node and offset of character ``index``; ``isEnd``: an end lands at the end of the node before. */
function position(nodes, index, isEnd) {
  for (let i = nodes.length - 1; i >= 0; i -= 1) {
    const { node, offset } = nodes[i];
    if (isEnd ? offset < index : offset <= index) return [node, index - offset];
  }
  return [nodes[0].node, 0];
}

function step(direction) {
  if (!found.ranges.length) return;
  found.current = (found.current + direction + found.ranges.length) % found.ranges.length;
  paint(true);
}

function paint(scroll) {
  const count = found.ranges.length;
  const query = $("search-input").value.trim();
  $("search-count").textContent = !query ? "" : count ? `${found.current + 1} of ${count}` : "No match";
  $("search-input").dataset.matches = String(count);
  if (!window.CSS?.highlights) return;
  CSS.highlights.set("search", new Highlight(...found.ranges));
  CSS.highlights.set("search-current", new Highlight(...(count ? [found.ranges[found.current]] : [])));
  if (scroll && count) found.ranges[found.current].startContainer.parentElement.scrollIntoView({ block: "center" });
}

export function focusSearch() {
  $("search-input").focus();
  $("search-input").select();
}

export function wireSearch() {
  $("search-input").addEventListener("input", () => {
    found.current = 0;
    refreshSearch();
    if (found.ranges.length) paint(true);
  });
  $("search-input").addEventListener("keydown", (event) => {
    if (event.key === "Enter") {
      event.preventDefault();
      step(event.shiftKey ? -1 : 1);
    } else if (event.key === "Escape") {
      $("search-input").value = "";
      refreshSearch();
    }
  });
  $("search-next").addEventListener("click", () => step(1));
  $("search-previous").addEventListener("click", () => step(-1));
}
