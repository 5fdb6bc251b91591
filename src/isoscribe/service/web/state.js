// What the page holds between events; each module reads and writes its own part.

export const UNFINISHED = new Set(["queued", "running"]);

export const state = {
  jobRows: new Map(), // job id -> <li>
  jobsListed: 50, // how many of the newest jobs the list shows; "Show older jobs" adds a page
  uploads: [], // {name, fraction, row}
  openJob: null, // the job shown in the main pane
  transcript: null, // its transcript JSON (speakers, languages, model...); segments live in `history`
  history: null, // EditHistory of the segment lists
  revision: null, // the server's revision number of what `history` was loaded from or saved as
  summary: null,
  editing: null, // index of the segment whose text is being edited
  wordSpans: [],
  wordStarts: [],
  currentWord: null,
  audioUrl: null,
  pollTimer: null,
  downloads: null, // GET /v1/formats, web downloads, fetched once
  watch: null, // AbortController of the open running job's event feed
};
