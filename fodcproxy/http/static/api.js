// Talking to the proxy's HTTP API (README "HTTP API"). Every failure becomes an ApiError whose
// message says which request failed and why, ready to be shown to the operator.

const TIMEOUT_MS = 30_000;

export class ApiError extends Error {
  constructor(path, message, status = null) {
    super(`${path}: ${message}`);
    this.name = "ApiError";
    this.path = path;
    this.status = status;  // the HTTP status, or null when there was no answer
  }
}

// A proxy started with --http-token-file wants `Authorization: Bearer <token>` on every call
// but /health. The operator types the token into the page; it is kept for this tab only.
const TOKEN_KEY = "fodcproxy.token";

export function setToken(token) {
  if (token) sessionStorage.setItem(TOKEN_KEY, token);
  else sessionStorage.removeItem(TOKEN_KEY);
}

function authorization() {
  const token = sessionStorage.getItem(TOKEN_KEY);
  return token ? { Authorization: `Bearer ${token}` } : {};
}

/** The URL of an API path relative to the page ("cluster" -> http://host/prefix/cluster). */
function urlOf(path, params = {}) {
  const url = new URL(path, document.baseURI);
  for (const [key, value] of Object.entries(params)) {
    if (value !== undefined && value !== null && value !== "") url.searchParams.set(key, value);
  }
  return url;
}

async function get(path, params, accept, timeoutMs = TIMEOUT_MS) {
  const url = urlOf(path, params);
  const shown = `/${path}${url.search}`;
  let response;
  try {
    response = await fetch(url, {
      headers: { Accept: accept, ...authorization() },
      cache: "no-store",
      signal: AbortSignal.timeout(timeoutMs),
    });
  } catch (err) {
    const why = err.name === "TimeoutError" ? `no answer within ${timeoutMs / 1000} s`
      : `cannot reach the proxy (${err.message})`;
    throw new ApiError(shown, why);
  }
  if (!response.ok) {
    // The API answers errors as JSON {"error": "..."}; anything else came from somewhere else
    // (a reverse proxy, say), so show its status line.
    let message = `HTTP ${response.status} ${response.statusText}`;
    try {
      const body = await response.json();
      if (body && typeof body.error === "string") message = `${body.error} (HTTP ${response.status})`;
    } catch { /* not JSON: keep the status line */ }
    throw new ApiError(shown, message, response.status);
  }
  return response;
}

/** GET a JSON endpoint: resolves to {body, headers}; rejects with an ApiError. `timeoutMs`:
 *  how long to wait for the answer (30 s unless given). */
export async function getJson(path, params = {}, { timeoutMs = TIMEOUT_MS } = {}) {
  const response = await get(path, params, "application/json", timeoutMs);
  try {
    return { body: await response.json(), headers: response.headers };
  } catch (err) {
    throw new ApiError(`/${path}`, `the answer is not valid JSON (${err.message})`);
  }
}

/** The fan-out headers of /metrics, /metrics-windows and /status (README "HTTP API"). */
export function collectHeaders(headers) {
  const num = (name) => {
    const v = headers.get(name);
    return v === null ? null : Number(v);
  };
  const missed = headers.get("X-Fodc-Agents-Missed");
  return {
    asked: num("X-Fodc-Agents-Asked"),
    answered: num("X-Fodc-Agents-Answered"),
    seconds: num("X-Fodc-Collect-Duration-Seconds"),
    missed: missed ? missed.split(",").filter((id) => id && id !== "...") : [],
    missedTruncated: missed ? missed.endsWith(",...") : false,
  };
}

const RFC3339 = /^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-]\d\d:\d\d)$/i;

/** An RFC 3339 time from the API in ms since the epoch; NaN if it is not one. Done by hand
 *  because the API sends up to nine fraction digits and Date.parse promises only three. */
export function parseTime(text) {
  const match = RFC3339.exec(text ?? "");
  if (!match) return NaN;
  const [, base, fraction = "", zone] = match;
  return Date.parse(`${base}${zone.toUpperCase()}`) + Number(`0${fraction || ".0"}`) * 1000;
}

/** A /metrics-windows value: a number, or null for "NaN", "+Inf" and "-Inf". */
export function pointValue(value) {
  return typeof value === "number" && Number.isFinite(value) ? value : null;
}
