// Small DOM and formatting helpers shared by the page's modules.

export const $ = (id) => document.getElementById(id);

export function element(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, value);
  node.append(...children);
  return node;
}

export function button(text, label, onClick, className = "") {
  const node = element("button", { type: "button", class: className }, text);
  if (label !== text) node.setAttribute("aria-label", label);
  node.addEventListener("click", onClick);
  return node;
}

export function clock(seconds) {
  const total = Math.max(0, Math.floor(seconds || 0));
  const hours = Math.floor(total / 3600);
  const minutes = String(Math.floor((total % 3600) / 60));
  const secs = String(total % 60).padStart(2, "0");
  return hours ? `${hours}:${minutes.padStart(2, "0")}:${secs}` : `${minutes}:${secs}`;
}

export function megabytes(bytes) {
  return `${(bytes / 1e6).toFixed(1)} MB`;
}

/** A download's name from the upload's: letters of any script stay ("Réunion été" → "Réunion_été"). */
export function fileStem(name) {
  const stem = name.replace(/\.[^.]+$/, "");
  return stem.replace(/[^\p{L}\p{M}\p{N}_.-]+/gu, "_") || "transcript";
}

const languageNames = new Intl.DisplayNames(["en"], { type: "language", fallback: "code" });

/** "German" for "de"; the code itself for one the browser does not know. */
export function languageName(code) {
  try {
    return languageNames.of(code);
  } catch {
    return code;
  }
}

/** "about 40 s left" / "about 3 min left" / "almost done"; "" while the server has no estimate yet. */
export function etaText(seconds) {
  if (seconds == null || !Number.isFinite(seconds)) return "";
  if (seconds < 1) return "almost done";
  if (seconds < 90) return `about ${Math.max(1, Math.round(seconds))} s left`;
  return `about ${Math.round(seconds / 60)} min left`;
}

export function dateText(epochSeconds) {
  if (!epochSeconds) return "";
  return new Date(epochSeconds * 1000).toLocaleString(undefined, {
    day: "numeric", month: "short", hour: "2-digit", minute: "2-digit",
  });
}

/** Show ``text`` in a status line; red when it reports a failure. */
export function say(id, text, isError = false) {
  const line = $(id);
  line.textContent = text;
  line.classList.toggle("error", isError && Boolean(text));
}
